"""Incremental tracking by chained hops (stvla_core/tracking/cotracker3/chain.py).

The chaining is checked where the answer is known: affine fields interpolate exactly, and on a
translating texture the chained path agrees with a full re-track and with the ground truth
(built with the `lk` tracker and the texture's known shift, since random CoTracker weights
follow nothing). With the tiny CoTracker3 it is checked for cost and shape, and for reducing to
the plain tracker when one hop spans the window."""

from __future__ import annotations

import numpy as np
import pytest

from stvla_core.tracking import TRACKERS, Clip, grid_points
from stvla_core.tracking.cotracker3.chain import ChainConfig, ChainedTracker, interpolate_grid
from stvla_core.tracking.lk import LKConfig, LKTracker
from tests.conftest import translating_episode

FAST = dict(pretrained=False, model_resolution=(64, 96), iters=1, support_grid=0)


def window(ep, t: int, b: int, key: str = "ep", queries: np.ndarray | None = None) -> Clip:
    lo = max(0, t - b + 1)
    return Clip(ep.frames[lo : t + 1], np.arange(lo, t + 1), queries=queries, key=key)


def test_affine_fields_interpolate_exactly():
    size, g = (48, 64), 5
    grid = grid_points(size, g).reshape(g, g, 2)
    a = np.float32([[1.1, 0.2], [-0.3, 0.9]])
    field = np.stack([grid @ a.T + [3.0, -2.0], grid @ a.T * 0.5]).astype(np.float32)  # (2, g, g, 2)
    pts = np.float32([[4.0, 4.0], [10.5, 20.25], [33.3, 7.7], [59.0, 43.0]])  # inside the grid
    got = interpolate_grid(field, pts, size, g)
    np.testing.assert_allclose(got[0], pts @ a.T + [3.0, -2.0], atol=1e-4)
    np.testing.assert_allclose(got[1], pts @ a.T * 0.5, atol=1e-4)
    # beyond the grid: the edge values (clamped), not an extrapolation
    np.testing.assert_allclose(
        interpolate_grid(field, np.float32([[-10.0, -10.0]]), size, g)[0, 0], field[0, 0, 0]
    )


@pytest.fixture(scope="module")
def texture():
    return translating_episode(t=24, h=64, w=80, dx=1.0, dy=0.5)


def test_chained_lk_agrees_with_full_retrack_and_truth(texture):
    t, b = 22, 15
    exact = LKConfig(grid=8, incremental=False)
    full = LKTracker(exact)
    chained = ChainedTracker(LKTracker(exact), ChainConfig(hop=4, grid=8))
    for step in range(8, t + 1):  # stream, as the pipeline steps
        got = chained.track(window(texture, step, b))
    want = full.track(window(texture, t, b))
    q = want.points[-1]
    truth = (
        q[None]
        - np.float32([1.0, 0.5])[None, None] * np.arange(b - 1, -1, -1, dtype=np.float32)[:, None, None]
    )
    both = got.visible & want.visible
    assert both.sum() > 0.6 * both.size  # most points stay in view
    assert np.abs(got.points - want.points)[both].max() < 0.25  # measured 0.14 px
    # both within LK's own error of the known shift (measured 0.38 px, the same for both)
    assert np.abs(got.points - truth)[got.visible].max() < 0.5
    assert np.abs(want.points - truth)[want.visible].max() < 0.5
    assert (got.visible == want.visible).mean() > 0.95


def test_a_step_runs_the_base_over_hop_plus_one_frames(texture):
    chained = ChainedTracker(LKTracker(LKConfig(grid=6, incremental=False)), ChainConfig(hop=3, grid=6))
    chained.track(window(texture, 15, 12))  # random access: a direct run plus hops on demand
    assert chained.model_frames == 4 + 4 + 4 + 3  # frames 12..15, then anchors 12, 9, 6 -> 4
    chained.reset()
    costs = []
    for t in range(20):  # streaming: every step stores the hop its junctions will need
        before = chained.model_frames
        tracks = chained.track(window(texture, t, 12))
        costs.append(chained.model_frames - before)
        assert tracks.points.shape == (min(12, t + 1), 36, 2)
    # a run reaches back to the last anchor (multiple of 3) before t; anchors' hops are reused
    assert costs == [1, 2, 3, 4] + [2, 3, 4] * 5 + [2]


def test_one_hop_over_the_whole_window_is_the_plain_tracker(texture):
    clip = window(texture, 9, 8)
    plain = TRACKERS.create("cotracker3", grid=3, **FAST).track(clip)
    chained = ChainedTracker(TRACKERS.create("cotracker3", grid=3, **FAST), ChainConfig(hop=9, grid=3))
    got = chained.track(clip)
    np.testing.assert_array_equal(got.points, plain.points)
    np.testing.assert_array_equal(got.visible, plain.visible)


def test_chained_cotracker3_steps_cost_one_encoded_frame_and_a_short_run(texture):
    tracker = TRACKERS.create("cotracker3_chained", hop=3, grid=3, pin_queries=True, **FAST)
    assert isinstance(tracker, ChainedTracker)
    queries = np.float32([[10.0, 12.0], [40.0, 30.0]])
    for t in range(12):
        before_model, before_enc = tracker.model_frames, tracker.base.encoded
        tracks = tracker.track(window(texture, t, 10, queries=queries))
        assert tracks.points.shape == (min(10, t + 1), 2, 2)
        assert tracks.visible.shape == (min(10, t + 1), 2)
        np.testing.assert_array_equal(tracks.points[-1], queries)  # pinned: the queries, not the grid
        assert tracker.base.encoded - before_enc == 1  # frame t only: the rest are cached
        anchor = ((t - 1) // 3) * 3  # the run reaches back to the last anchor before t
        assert tracker.model_frames - before_model == min(t, t - anchor) + 1
    assert np.isfinite(tracks.points).all()


def test_bad_chain_settings_are_named(texture):
    base = LKTracker(LKConfig(grid=4))
    with pytest.raises(ValueError, match="chain hop: expected >= 1 frame, found 0"):
        ChainedTracker(base, ChainConfig(hop=0))
    with pytest.raises(ValueError, match="consecutive frame indices"):
        ChainedTracker(base).track(Clip(texture.frames[:3], np.array([0, 2, 3])))


def test_trace_pipeline_steps_cotracker3_chained_by_name(texture):
    from stvla_core.traces import TraceConfig, TracePipeline

    options = dict(hop=3, grid=3, **FAST)
    pipe = TracePipeline(TraceConfig(buffer=10, tracker="cotracker3_chained", tracker_options=options))
    frame = pipe.at(texture, 12)  # random access: hops computed on demand
    assert frame.tracks.points.shape == (10, 9, 2)
    assert frame.traced_depth.shape == texture.frames.shape[1:3]
    before = pipe.tracker.model_frames
    pipe.at(texture, 13)  # the next step: one run over frames 12..13, anchors' hops reused
    assert pipe.tracker.model_frames - before == 2
