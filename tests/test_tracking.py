"""Trackers and active-point selection."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import translating_episode

from stvla_core.registry import UnknownNameError
from stvla_core.tracking import (
    TRACKERS,
    Clip,
    SelectionConfig,
    TrackerUnavailableError,
    Tracks,
    select_active,
)
from stvla_core.tracking.lk import LKConfig, LKTracker
from stvla_core.tracking.selection import mean_step_displacement


def clip_of(ep, t: int, b: int, queries=None) -> Clip:  # type: ignore[no-untyped-def]
    idx = np.arange(max(0, t - b + 1), t + 1)
    return Clip(ep.frames[idx], idx, ep.gt_points[idx], ep.gt_visible[idx], queries=queries, key=ep.name)


@pytest.mark.parametrize("incremental", [False, True])
def test_lk_recovers_subpixel_translation(incremental: bool) -> None:
    ep = translating_episode(t=8, dx=0.6, dy=-0.35)
    q = np.array([[30.0, 30.0], [50.0, 25.0], [25.0, 40.0], [44.0, 44.0]], np.float32)
    tr = LKTracker(LKConfig(incremental=incremental)).track(clip_of(ep, 7, 8, q))
    assert tr.points.shape == (8, 4, 2) and tr.visible.all()
    for k in range(8):  # frame k is 7-k steps before the query frame: content was (dx, dy)*(7-k) back
        expected = q - np.float32([0.6, -0.35]) * (7 - k)
        assert np.abs(tr.points[k] - expected).max() < 0.5


def test_lk_incremental_agrees_with_exact_and_reuses_hops() -> None:
    ep = translating_episode(t=20, dx=1.0, dy=0.5)
    exact = LKTracker(LKConfig(incremental=False, grid=8))
    inc = LKTracker(LKConfig(incremental=True, grid=8))
    for t in range(9, 20):
        a, b = exact.track(clip_of(ep, t, 10)), inc.track(clip_of(ep, t, 10))
        both = a.visible & b.visible
        assert both.mean() > 0.8
        assert np.abs(a.points - b.points)[both].max() < 0.5
    assert inc.hops_computed == 19  # one dense hop per new frame pair, never recomputed


def test_lk_loses_points_that_leave_the_frame() -> None:
    ep = translating_episode(t=10, dx=3.0)
    q = np.array([[2.0, 30.0], [40.0, 30.0]], np.float32)  # the first one exits on the left going back
    tr = LKTracker().track(clip_of(ep, 9, 10, q))
    assert tr.visible[:, 1].all()
    assert tr.visible[-1, 0] and not tr.visible[0, 0]
    lost = np.flatnonzero(~tr.visible[:, 0]).max()
    assert (tr.points[: lost + 1, 0] == tr.points[lost + 1, 0]).all()  # a lost point freezes


def test_oracle_returns_ground_truth_and_needs_it() -> None:
    ep = translating_episode(t=6)
    tr = TRACKERS.create("oracle").track(clip_of(ep, 5, 4))
    np.testing.assert_array_equal(tr.points, ep.gt_points[2:6])
    no_gt = Clip(ep.frames[:3], np.arange(3))
    with pytest.raises(TrackerUnavailableError, match="ground-truth"):
        TRACKERS.create("oracle").track(no_gt)


def test_unknown_tracker_lists_choices() -> None:
    with pytest.raises(UnknownNameError, match="unknown tracker 'sift'; expected one of .*lk.*oracle"):
        TRACKERS.create("sift")


def synthetic_tracks() -> Tracks:
    """4 points over 5 frames: still, 2 px/step right, 0.5 px/step, and 3 px/step but lost at t."""
    b = 5
    pts = np.zeros((b, 4, 2), np.float32)
    steps = np.arange(b, dtype=np.float32)
    pts[:, 1, 0] = 2 * steps
    pts[:, 2, 0] = 0.5 * steps
    pts[:, 3, 1] = 3 * steps
    vis = np.ones((b, 4), bool)
    vis[-1, 3] = False
    return Tracks(pts, vis)


def test_selection_keeps_movers_visible_on_frame_t() -> None:
    tr = synthetic_tracks()
    np.testing.assert_allclose(mean_step_displacement(tr), [0.0, 2.0, 0.5, 3.0])
    np.testing.assert_array_equal(select_active(tr, SelectionConfig(max_traces=5)), [1])
    np.testing.assert_array_equal(select_active(tr, SelectionConfig(min_displacement=0.25)), [1, 2])


def test_selection_samples_k_deterministically() -> None:
    b, n = 4, 50
    pts = np.cumsum(np.ones((b, n, 2), np.float32) * 2, axis=0)
    tr = Tracks(pts, np.ones((b, n), bool))
    a = select_active(tr, SelectionConfig(max_traces=5, seed=3))
    assert len(a) == 5 and len(set(a)) == 5 and (np.diff(a) > 0).all()
    np.testing.assert_array_equal(a, select_active(tr, SelectionConfig(max_traces=5, seed=3)))
    assert not np.array_equal(a, select_active(tr, SelectionConfig(max_traces=5, seed=4)))


def test_cotracker3_is_registered() -> None:
    assert "cotracker3" in TRACKERS.names()
