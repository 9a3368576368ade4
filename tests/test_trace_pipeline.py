"""The trace pipeline end to end: buffer, caching, live stream, bad input, quality tables, CLI."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import translating_episode

from stvla_core.buffer import RollingBuffer, window_indices
from stvla_core.depth import DEPTH_ESTIMATORS, DepthUnavailableError
from stvla_core.registry import UnknownNameError
from stvla_core.traces import TraceConfig, TracePipeline
from stvla_core.traces.quality import depth_errors, depth_quality, tracker_quality


class CountingDepth:
    """The episode depth source, counting how often it is asked."""

    name = "counting"

    def __init__(self) -> None:
        self.inner = DEPTH_ESTIMATORS.create("episode")
        self.calls = 0

    def estimate(self, frame: np.ndarray, given: np.ndarray | None = None) -> np.ndarray:
        self.calls += 1
        return self.inner.estimate(frame, given)


def test_window_indices_at_start_and_steady_state() -> None:
    np.testing.assert_array_equal(window_indices(0, 30), [0])
    np.testing.assert_array_equal(window_indices(3, 30), [0, 1, 2, 3])
    np.testing.assert_array_equal(window_indices(40, 7), np.arange(34, 41))
    with pytest.raises(ValueError, match="buffer length must be >= 2 frames, found 1"):
        window_indices(5, 1)


def test_each_frames_depth_is_computed_once_while_stepping() -> None:
    ep = translating_episode(t=20)
    counting = CountingDepth()
    pipe = TracePipeline(TraceConfig(buffer=7), depth_estimator=counting)
    for t in range(ep.num_frames):
        pipe.at(ep, t)
    for t in (5, 12, 19):  # stepping back over seen frames costs no depth
        pipe.at(ep, t)
    assert counting.calls == ep.num_frames == pipe.depth_calls


def test_traced_frame_contents() -> None:
    ep = translating_episode(t=16, dx=1.5)
    f = TracePipeline(TraceConfig(buffer=7, max_traces=4)).at(ep, 12)
    np.testing.assert_array_equal(f.window, np.arange(6, 13))
    assert f.tracks.points.shape == (7, 900, 2)
    assert f.active.num_points == 4 and f.active.visible[-1].all()
    assert set(f.traced) == {"A", "B", "C"} and f.traced_depth is f.traced["C"]
    for v, m in f.traced.items():
        assert m.shape == (64, 80) and m.dtype == np.float32, v
        assert (m != f.depth).any(), f"variant {v} drew nothing"
    drawn = f.traced["C"] != f.depth
    np.testing.assert_allclose(f.traced["C"][drawn], 0.5)  # nearest depth of the ramp
    np.testing.assert_allclose(f.traced["B"][f.traced["B"] != f.depth], 2.0)
    assert f.overlay.shape == (64, 80, 3) and (f.overlay != f.rgb).any()


def test_first_frame_has_no_traces() -> None:
    f = TracePipeline(TraceConfig(buffer=30)).at(translating_episode(t=4), 0)
    assert f.active.num_points == 0
    np.testing.assert_array_equal(f.traced["A"], f.depth)


def test_live_stream_matches_offline_episode() -> None:
    ep = translating_episode(t=12)
    cfg = TraceConfig(buffer=5, tracker="lk")
    offline, live = TracePipeline(cfg), TracePipeline(cfg)
    live.reset()
    for t in range(ep.num_frames):
        a, b = offline.at(ep, t), live.push(ep.frames[t], ep.depth[t])
        for v in "ABC":
            np.testing.assert_array_equal(a.traced[v], b.traced[v])
    live.reset()
    assert live.push(ep.frames[0], ep.depth[0]).index == 0


def test_fed_frames_fill_the_window_untraced() -> None:
    """`feed` buffers without tracking; the next `push` traces the whole window, as if every
    frame had been pushed."""
    ep = translating_episode(t=8)
    cfg = TraceConfig(buffer=5, tracker="lk")
    fed, pushed = TracePipeline(cfg), TracePipeline(cfg)
    for t in range(7):
        fed.feed(ep.frames[t], ep.depth[t])
        pushed.push(ep.frames[t], ep.depth[t])
    a, b = fed.push(ep.frames[7], ep.depth[7]), pushed.push(ep.frames[7], ep.depth[7])
    assert a.index == 7 and a.window.tolist() == [3, 4, 5, 6, 7] and fed.depth_calls == 8
    np.testing.assert_array_equal(a.tracks.points, b.tracks.points)
    np.testing.assert_array_equal(a.traced["C"], b.traced["C"])
    with pytest.raises(ValueError, match=r"depth has shape \(10, 10\), frame is \(64, 80\)"):
        fed.feed(ep.frames[0], np.ones((10, 10), np.float32))


def test_bad_input_errors() -> None:
    with pytest.raises(ValueError, match="unknown variant 'D'"):
        TracePipeline(TraceConfig(variant="D"))
    with pytest.raises(UnknownNameError, match="unknown tracker 'flow'"):
        TracePipeline(TraceConfig(tracker="flow"))
    with pytest.raises(UnknownNameError, match="unknown depth estimator 'sonar'"):
        TracePipeline(TraceConfig(depth="sonar"))
    with pytest.raises(ValueError, match="buffer length must be >= 2 frames, found 1"):
        TracePipeline(TraceConfig(buffer=1))
    ep = translating_episode(t=6)
    pipe = TracePipeline(TraceConfig(buffer=4))
    with pytest.raises(IndexError, match="step 6 outside episode"):
        pipe.at(ep, 6)
    pipe.push(ep.frames[0], ep.depth[0])
    with pytest.raises(ValueError, match=r"frame has shape \(32, 32, 3\), earlier frames are \(64, 80, 3\)"):
        pipe.push(np.zeros((32, 32, 3), np.uint8), np.ones((32, 32), np.float32))
    with pytest.raises(ValueError, match=r"depth has shape \(10, 10\), frame is \(64, 80\)"):
        pipe.push(ep.frames[1], np.ones((10, 10), np.float32))
    with pytest.raises(DepthUnavailableError, match="this episode has none"):
        TracePipeline(TraceConfig(buffer=4)).at(ep.replace(depth=None), 3)
    with pytest.raises(ValueError, match="no valid pixel"):
        TracePipeline(TraceConfig(buffer=4)).at(ep.replace(depth=np.zeros_like(ep.depth)), 3)


def test_rolling_buffer_keeps_the_newest() -> None:
    buf = RollingBuffer(3)
    for k in range(5):
        buf.push(np.full((2, 2, 3), k, np.uint8))
    frames, idx = buf.window()
    np.testing.assert_array_equal(idx, [2, 3, 4])
    assert frames[:, 0, 0, 0].tolist() == [2, 3, 4]


def test_tracker_quality_oracle_is_perfect_and_lk_is_close() -> None:
    ep = translating_episode(t=20, dx=1.0, dy=0.5)
    oracle = tracker_quality(ep, TracePipeline(TraceConfig(tracker="oracle")).tracker, buffer=8)
    assert list(oracle.columns) == [
        "step",
        "points",
        "median_px",
        "within_2px",
        "within_4px",
        "within_8px",
        "visibility_agreement",
    ]
    assert oracle.iloc[-1]["step"] == "all"
    assert oracle.iloc[-1]["median_px"] == 0.0 and oracle.iloc[-1]["visibility_agreement"] == 1.0
    lk = tracker_quality(ep, TracePipeline(TraceConfig(tracker="lk")).tracker, buffer=8)
    assert lk.iloc[-1]["median_px"] < 0.5 and lk.iloc[-1]["within_2px"] > 0.95


def test_depth_errors_hand_computed() -> None:
    gt = np.array([[1.0, 2.0], [4.0, 0.0]], np.float32)
    pred = np.array([[1.1, 2.0], [6.0, 3.0]], np.float32)  # last pixel invalid in gt: ignored
    absrel, delta, n = depth_errors(pred, gt)
    assert n == 3
    assert absrel == pytest.approx((0.1 + 0 + 0.5) / 3)
    assert delta == pytest.approx(2 / 3)


def test_depth_quality_table_rows() -> None:
    ep = translating_episode(t=6)

    class Doubling:
        name = "double"

        def estimate(self, frame: np.ndarray, given: np.ndarray | None = None) -> np.ndarray:
            return ep.depth[0] * 2

    table = depth_quality(ep, Doubling(), stride=2)
    assert table["step"].tolist() == [0, 2, 4, "all"]
    np.testing.assert_allclose(table["abs_rel"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(table["delta_1.25"], 0.0)


def test_quality_tables_on_a_bundled_episode() -> None:
    from pathlib import Path

    from stvla_core.episodes import load_episode

    path = Path(__file__).resolve().parents[1] / "assets" / "episodes" / "maniskill_pick.npz"
    ep = load_episode(path)
    pipe = TracePipeline(TraceConfig(buffer=15))
    table = tracker_quality(ep, pipe.tracker, buffer=15, stride=10)
    pooled = table.iloc[-1]
    assert pooled["step"] == "all" and pooled["points"] > 0
    assert pooled["median_px"] < 4.0 and pooled["within_8px"] > 0.8  # lk follows the gripper points
    oracle = tracker_quality(ep, TracePipeline(TraceConfig(tracker="oracle")).tracker, buffer=15, stride=10)
    assert oracle.iloc[-1]["median_px"] == 0.0

    class NoisyDepth:  # the recorded depth scaled by 1.1: AbsRel 0.1, every pixel within 1.25
        name = "noisy"

        def estimate(self, frame: np.ndarray, given: np.ndarray | None = None) -> np.ndarray:
            return ep.depth[int(np.flatnonzero((ep.frames == frame).all(axis=(1, 2, 3)))[0])] * 1.1

    dq = depth_quality(ep, NoisyDepth(), stride=17)
    np.testing.assert_allclose(dq["abs_rel"], 0.1, rtol=1e-4)
    np.testing.assert_allclose(dq["delta_1.25"], 1.0)
