"""CoTracker3: official weight layout, parity with official outputs, tracker mechanics.

Random weights track nothing well, so these tests check mechanics (shapes, conventions, caching,
errors), and numerical parity against outputs of the official code stored in tests/data
(made by running facebookresearch/co-tracker on the same seeded random weights and video)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import translating_episode

from stvla_core.buffer import window_indices
from stvla_core.cuda_graphs import HostTransferGuard
from stvla_core.episodes import load_episode
from stvla_core.tracking import TRACKERS, Clip, TrackerUnavailableError, Tracks
from stvla_core.tracking.cotracker3.network import CoTrackerThreeOffline, CoTrackerThreeOnline, pair
from stvla_core.tracking.cotracker3.predictor import (
    CHECKPOINT_URLS,
    CoTracker3Predictor,
    PredictorConfig,
    load_checkpoint,
    support_grid_points,
)

DATA = Path(__file__).parent / "data"
RES = (64, 96)  # tiny model resolution: same parameters, little compute
FAST = dict(pretrained=False, model_resolution=RES, iters=1, support_grid=0, grid=3)


@pytest.fixture(scope="module")
def official_keys() -> dict[str, dict[str, list[int]]]:
    return json.loads((DATA / "cotracker3_keys.json").read_text())


@pytest.fixture(scope="module")
def episode():
    return translating_episode(t=12, h=48, w=64, dx=1.0)


def clip_of(ep, start: int, stop: int, key: str = "ep") -> Clip:
    return Clip(ep.frames[start:stop], np.arange(start, stop), key=key)


@pytest.mark.parametrize(
    ("variant", "cls", "window"),
    [("offline", CoTrackerThreeOffline, 60), ("online", CoTrackerThreeOnline, 16)],
)
def test_official_key_layout_loads_strictly(official_keys, variant, cls, window):
    model = cls(window_len=window)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours == official_keys[variant]
    zeros = {k: torch.zeros(shape) for k, shape in official_keys[variant].items()}
    model.load_state_dict(zeros, strict=True)
    assert float(model.corr_mlp.fc1.weight.detach().abs().sum()) == 0.0


@pytest.mark.parametrize(
    ("variant", "cls", "window", "frames"),
    [("offline", CoTrackerThreeOffline, 60, 10), ("online", CoTrackerThreeOnline, 16, 20)],
)
def test_forward_matches_official_outputs(variant, cls, window, frames):
    ref = np.load(DATA / "cotracker3_official_tiny_outputs.npz")
    torch.manual_seed(0)
    model = cls(window_len=window, model_resolution=RES).eval()
    params = sum(p.double().sum().item() for p in model.state_dict().values())
    assert params == pytest.approx(float(ref[f"{variant}_param_sum"]), rel=1e-9)  # same weights
    video = torch.rand(1, frames, 3, *RES, generator=torch.Generator().manual_seed(1)) * 255
    with torch.inference_mode():
        xy, vis, conf = model(video, torch.from_numpy(ref[f"{variant}_queries"]), iters=2)
    np.testing.assert_allclose(xy.numpy(), ref[f"{variant}_tracks"], atol=1e-3)
    np.testing.assert_allclose(vis.numpy(), ref[f"{variant}_vis"], atol=1e-4)
    np.testing.assert_allclose(conf.numpy(), ref[f"{variant}_conf"], atol=1e-4)


def test_tracker_output_shapes_and_conventions(episode):
    tracker = TRACKERS.create("cotracker3", **FAST, pin_queries=True)
    clip = clip_of(episode, 0, 8)
    tracks = tracker.track(clip)
    assert isinstance(tracks, Tracks)
    assert tracks.points.shape == (8, 9, 2) and tracks.points.dtype == np.float32
    assert tracks.visible.shape == (8, 9) and tracks.visible.dtype == np.bool_
    assert np.isfinite(tracks.points).all()
    # pinned, the newest frame holds the queries themselves: a 3x3 grid 4 px inside a 64 x 48 frame
    np.testing.assert_array_equal(tracks.points[-1, [0, 2, 8]], [[4, 4], [59, 4], [59, 43]])
    assert tracks.visible[-1].all()


def test_network_visibility_is_a_probability():
    model = CoTrackerThreeOnline(window_len=16, model_resolution=RES).eval()
    video = torch.rand(1, 9, 3, *RES, generator=torch.Generator().manual_seed(2)) * 255
    queries = torch.tensor([[[0.0, 10.0, 10.0], [0.0, 50.0, 40.0]]])
    with torch.inference_mode():
        xy, vis, conf = model(video, queries, iters=1)
    assert xy.shape == (1, 9, 2, 2) and vis.shape == conf.shape == (1, 9, 2)
    assert ((vis >= 0) & (vis <= 1) & (conf >= 0) & (conf <= 1)).all()


def test_tracker_is_deterministic(episode):
    clip = clip_of(episode, 0, 6)
    a = TRACKERS.create("cotracker3", **FAST).track(clip)
    b = TRACKERS.create("cotracker3", **FAST).track(clip)
    np.testing.assert_array_equal(a.points, b.points)
    np.testing.assert_array_equal(a.visible, b.visible)


def test_coordinates_round_trip_through_the_model_resolution():
    pred = CoTracker3Predictor(PredictorConfig(pretrained=False, model_resolution=(384, 512)))
    s = pred.scale((64, 80))
    np.testing.assert_allclose(s, [511 / 79, 383 / 63], rtol=1e-6)  # corners map to corners
    pts = np.array([[0, 0], [79, 63], [12.5, 40.25]], np.float32)
    np.testing.assert_allclose((pts * s) / s, pts, atol=1e-5)
    video = pred.resize(np.zeros((2, 64, 80, 3), np.uint8))
    assert video.shape == (1, 2, 3, 384, 512)


def test_incremental_step_encodes_one_frame_and_matches_full_retrack(episode):
    inc = TRACKERS.create("cotracker3", **FAST)
    inc.track(clip_of(episode, 0, 8))
    assert inc.encoded == 8
    stepped = clip_of(episode, 1, 9)
    got = inc.track(stepped)
    assert inc.encoded == 9  # only the new newest frame went through the encoder
    full = TRACKERS.create("cotracker3", **FAST, incremental=False)
    want = full.track(stepped)
    assert full.encoded == 8
    np.testing.assert_allclose(got.points, want.points, atol=1e-3)
    assert (got.visible == want.visible).mean() >= 0.95


def test_cache_notices_a_changed_frame_behind_a_reused_index(episode):
    tracker = TRACKERS.create("cotracker3", **FAST)
    tracker.track(clip_of(episode, 0, 6))
    restarted = Clip(episode.frames[6:12], np.arange(0, 6), key="ep")  # same indices, new frames
    tracker.track(restarted)
    assert tracker.encoded == 12


def test_missing_checkpoint_names_the_file_and_the_download():
    with pytest.raises(TrackerUnavailableError) as err:
        TRACKERS.create("cotracker3", checkpoint="/nonexistent.pth")
    msg = str(err.value)
    assert "/nonexistent.pth" in msg and "wget" in msg and CHECKPOINT_URLS["online"] in msg


def test_no_network_for_the_official_url_says_how_to_get_it(monkeypatch, tmp_path):
    def offline(*_: object, **__: object) -> None:
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(TrackerUnavailableError) as err:
        load_checkpoint(None, online=False)
    msg = str(err.value)
    assert CHECKPOINT_URLS["offline"] in msg and str(tmp_path / "checkpoints") in msg


def test_local_checkpoint_in_official_format_loads(tmp_path):
    torch.manual_seed(3)
    state = CoTrackerThreeOnline(window_len=16).state_dict()
    path = tmp_path / "scaled_online.pth"
    torch.save({"model": state}, path)
    made = TRACKERS.create("cotracker3", checkpoint=str(path), model_resolution=RES)
    loaded = made.predictor.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_bad_options_are_named():
    with pytest.raises(TypeError, match="unknown options \\['grdi'\\]"):
        TRACKERS.create("cotracker3", pretrained=False, grdi=3)
    with pytest.raises(ValueError, match="model_resolution.*\\(30, 50\\)"):
        TRACKERS.create("cotracker3", pretrained=False, model_resolution=(30, 50))
    with pytest.raises(ValueError, match="backend.*'tf'"):
        TRACKERS.create("cotracker3", pretrained=False, backend="tf")


def test_official_backend_needs_the_official_package():
    try:
        import cotracker  # noqa: F401
    except ImportError:
        with pytest.raises(TrackerUnavailableError, match="pip install"):
            TRACKERS.create("cotracker3", pretrained=False, backend="official")
    else:
        tracker = TRACKERS.create("cotracker3", **FAST, backend="official")
        assert tracker.track(clip_of(translating_episode(t=9, h=48, w=64), 0, 9)).points.shape[0] == 9


@pytest.mark.parametrize("b", [1, 2])
def test_tracker_handles_the_first_steps_of_an_episode(episode, b):
    tracks = TRACKERS.create("cotracker3", **FAST).track(clip_of(episode, 0, b))
    assert tracks.points.shape == (b, 9, 2) and np.isfinite(tracks.points).all()


def test_trace_pipeline_runs_cotracker3_by_name(episode):
    from stvla_core.traces import TraceConfig, TracePipeline

    pipe = TracePipeline(TraceConfig(buffer=7, tracker="cotracker3", tracker_options=FAST))
    frame = pipe.at(episode, 8)
    assert frame.tracks.points.shape == (7, 9, 2)
    assert frame.traced_depth.shape == episode.frames.shape[1:3]
    pipe.at(episode, 9)
    assert pipe.tracker.encoded == 8  # the second step encoded one new frame


def test_given_queries_come_back_alone_despite_the_support_grid(episode):
    queries = np.array([[10.0, 12.0], [30.5, 20.25]], np.float32)
    clip = Clip(episode.frames[0:5], np.arange(5), queries=queries, key="ep")
    tracks = TRACKERS.create("cotracker3", **{**FAST, "online": False, "support_grid": 2}).track(clip)
    assert tracks.points.shape == (5, 2, 2)
    np.testing.assert_array_equal(tracks.points[-1], queries)  # offline pins the query frame


def test_support_grid_is_the_official_grid_at_two_resolutions():
    # margin W/64, spanning m..W-m and m..H-m, row by row
    xs, ys = [8, 107.2, 206.4, 305.6, 404.8, 504], [8, 81.6, 155.2, 228.8, 302.4, 376]
    np.testing.assert_allclose(
        support_grid_points((384, 512), 6), [[x, y] for y in ys for x in xs], atol=1e-4
    )
    xs, ys = [1.5, 20.1, 38.7, 57.3, 75.9, 94.5], [1.5, 13.7, 25.9, 38.1, 50.3, 62.5]
    np.testing.assert_allclose(support_grid_points((64, 96), 6), [[x, y] for y in ys for x in xs], atol=1e-4)
    np.testing.assert_array_equal(support_grid_points((64, 96), 1), [[48, 32]])  # the centre


def test_support_points_sit_on_frame_0_whatever_the_query_frame(episode):
    cfg = PredictorConfig(pretrained=False, online=False, model_resolution=RES, iters=1, support_grid=2)
    pred = CoTracker3Predictor(cfg)
    frames, queries = episode.frames[:5], np.float32([[10.0, 12.0], [30.5, 20.25]])
    pts, vis = pred.track((48, 64), queries, 2, frames=frames)
    s = np.float32([95 / 63, 63 / 47])  # 48 x 64 frame pixels -> 64 x 96 model pixels
    support = [[0, 1.5, 1.5], [0, 94.5, 1.5], [0, 1.5, 62.5], [0, 94.5, 62.5]]  # 2 x 2, margin 1.5
    qt = torch.tensor([[[2, *(q * s)] for q in queries] + support], dtype=torch.float32)
    with torch.inference_mode():
        xy, v, _ = pred.model(pred.resize(frames), qt, iters=1)
    others = [0, 1, 3, 4]
    np.testing.assert_allclose(pts[others], (xy[0, :, :2].numpy() / s)[others], atol=1e-5)
    np.testing.assert_array_equal(vis[others], v[0, :, :2].numpy()[others] > 0.9)
    np.testing.assert_allclose(pts[2], queries, atol=1e-5)  # offline: the query frame holds the queries
    assert vis[2].all()


@pytest.mark.parametrize(("online", "side"), [(True, 0), (False, 6)])
def test_default_support_grid_is_the_official_one(online, side):
    """The official online predictor defaults to add_support_grid=False, the offline one adds 6 x 6."""
    pred = CoTracker3Predictor(PredictorConfig(pretrained=False, online=online, model_resolution=RES))
    assert pred.support_grid == side
    asked = PredictorConfig(pretrained=False, online=online, model_resolution=RES, support_grid=2)
    assert CoTracker3Predictor(asked).support_grid == 2


def test_online_default_is_the_networks_answer_for_the_queries_alone_query_frame_included(episode):
    pred = CoTracker3Predictor(PredictorConfig(pretrained=False, model_resolution=RES, iters=1))
    frames, queries = episode.frames[:6], np.float32([[10.0, 12.0], [30.5, 20.25]])
    pts, vis = pred.track((48, 64), queries, 0, frames=frames)
    s = np.float32([95 / 63, 63 / 47])
    qt = torch.tensor([[[0, *(q * s)] for q in queries]], dtype=torch.float32)  # no support grid
    with torch.inference_mode():
        xy, v, c = pred.model(pred.resize(frames), qt, iters=1)
    np.testing.assert_allclose(pts, xy[0].numpy() / s, atol=1e-5)
    np.testing.assert_array_equal(vis, (v * c)[0].numpy() > 0.6)
    assert np.abs(pts[0] - queries).max() > 0.01  # random weights move even the query frame (0.11 px)

    pinned = CoTracker3Predictor(
        PredictorConfig(pretrained=False, model_resolution=RES, iters=1, pin_queries=True)
    )
    pts_p, vis_p = pinned.track((48, 64), queries, 0, frames=frames)
    np.testing.assert_array_equal(pts_p[0], queries)
    assert vis_p[0].all()
    np.testing.assert_array_equal(pts_p[1:], pts[1:])


@pytest.mark.parametrize("cls", [CoTrackerThreeOnline, CoTrackerThreeOffline])
def test_tracking_cached_features_is_capturable(cls):
    """What `graphs=True` captures (tracking a window of cached feature maps) must neither read
    the device on the host nor copy host data to it (an H200 capture failed on a `new_tensor`);
    on the meta device under the guard every such call raises."""
    with torch.device("meta"):
        net = cls(stride=4, corr_radius=3, window_len=16, model_resolution=(224, 224))
    with HostTransferGuard():
        xy, vis, conf = net.track(
            torch.empty(1, 30, 128, 56, 56, device="meta"), torch.empty(1, 900, 3, device="meta"), 2
        )
        fmaps = net.encode(torch.empty(1, 1, 3, 224, 224, device="meta"))
    assert xy.shape == (1, 30, 900, 2) and vis.shape == conf.shape == (1, 30, 900)
    assert fmaps.shape == (1, 1, 128, 56, 56)


def test_pair_equals_new_tensor():
    xy = torch.rand(3, 2, dtype=torch.bfloat16)
    torch.testing.assert_close(pair(xy, 2 / 55, 2 / 37), xy.new_tensor([2 / 55, 2 / 37]), rtol=0, atol=0)


def test_amp_and_graph_options(episode):
    with pytest.raises(
        ValueError, match=r"cotracker3 amp: expected one of \['bf16', 'fp16', 'none'\], found 'fp8'"
    ):
        TRACKERS.create("cotracker3", **FAST, amp="fp8")
    clip = clip_of(episode, 0, 6)
    plain = TRACKERS.create("cotracker3", **FAST).track(clip)
    graphed = TRACKERS.create("cotracker3", **FAST, graphs=True).track(clip)  # no GPU: runs directly
    np.testing.assert_array_equal(graphed.points, plain.points)
    half = TRACKERS.create("cotracker3", **FAST, amp="bf16").track(clip)
    assert half.points.dtype == np.float32 and half.points.shape == plain.points.shape
    assert np.abs(half.points - plain.points).max() < 2.0  # bf16 rounding, not another answer


def test_fast_configuration_tracks_like_the_reference_against_the_oracle():
    """The fast path's tracker (bf16, one new frame encoded per step, graphs on: eager on a CPU)
    against the reference one (float32, every frame re-encoded) on a bundled episode, both
    following the simulator's ground-truth points back through a window: the tracks lie within
    0.5 px of each other (median) and their errors against the oracle, where it sees the points,
    agree to 0.5 px. Random weights (no download in tests): this bounds what the fast
    configuration changes, not how well CoTracker3 tracks (benchmarks/bench_cotracker3_resolution.py
    measures that with the official weights)."""
    ep = load_episode(Path(__file__).parents[1] / "assets" / "episodes" / "maniskill_pick.npz")
    base = dict(pretrained=False, model_resolution=(112, 112), iters=2, support_grid=0)
    reference = TRACKERS.create("cotracker3", **base, incremental=False)
    fast = TRACKERS.create("cotracker3", **base, amp="bf16", graphs=True)
    gaps, errors = [], {"reference": [], "fast": []}
    for t in (4, 5, 6):
        idx = window_indices(t, 6)
        gt, seen = ep.gt_points[idx], ep.gt_visible[idx]
        clip = Clip(ep.frames[idx], idx, queries=gt[-1], key="pick")
        out = {"reference": reference.track(clip).points, "fast": fast.track(clip).points}
        gaps.append(np.linalg.norm(out["fast"] - out["reference"], axis=-1).ravel())
        for name, points in out.items():
            errors[name].append(np.linalg.norm(points - gt, axis=-1)[seen])
    assert fast.encoded == 5 + 2  # frames 0..4 at step 4, then one new frame a step
    assert np.median(np.concatenate(gaps)) < 0.5
    err = {name: np.median(np.concatenate(e)) for name, e in errors.items()}
    assert abs(err["fast"] - err["reference"]) < 0.5


def _bilinear_border(img: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """img (C, h, w) at points xy (M, 2) -> (M, C): bilinear, points clamped into the image."""
    _, h, w = img.shape
    x, y = xy[:, 0].clamp(0, w - 1), xy[:, 1].clamp(0, h - 1)
    x0, y0 = x.floor().clamp(max=max(w - 2, 0)), y.floor().clamp(max=max(h - 2, 0))
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    x1, y1 = (x0 + 1).clamp(max=w - 1), (y0 + 1).clamp(max=h - 1)

    def at(yy: torch.Tensor, xx: torch.Tensor) -> torch.Tensor:
        return img[:, yy.long(), xx.long()].T

    return (
        at(y0, x0) * (1 - fx) * (1 - fy)
        + at(y0, x1) * fx * (1 - fy)
        + at(y1, x0) * (1 - fx) * fy
        + at(y1, x1) * fx * fy
    )


def test_correlation_equals_the_straightforward_formula():
    """`correlate` (every level of every frame packed in one atlas, one grid_sample, the matmul on
    the samples as they lie, padded operands) against the formula written plainly: around each
    track point, on each level, the (2r+1)^2 bilinear samples (border-clamped) dotted with the
    query's (2r+1)^2 samples on its own frame, through corr_mlp as the official einsum lays them
    out (the moving point's offset first, x offset before y offset). Unit-norm features as the
    encoder's: the embeddings are ~0.1 and agree to ~3e-7 (grid_sample's coordinates round to
    ~3e-8 of the atlas' side, not of a level's)."""
    torch.manual_seed(0)
    net = CoTrackerThreeOnline(window_len=16, model_resolution=RES).eval()
    g = torch.Generator().manual_seed(1)
    b, t, n, (h, w) = 2, 5, 6, (RES[0] // 4, RES[1] // 4)
    fmaps = torch.randn(b, t, 128, h, w, generator=g)
    fmaps = fmaps / fmaps.norm(dim=2, keepdim=True)
    frames = torch.randint(0, t, (b, n, 1), generator=g).float()
    xy = torch.rand(b, n, 2, generator=g) * torch.tensor([RES[1] + 8.0, RES[0] + 8.0]) - 4
    queries = torch.cat([frames, xy], dim=-1)  # model pixels, some outside the frame
    coords = torch.rand(b, t, n, 2, generator=g) * torch.tensor([w + 6.0, h + 6.0]) - 3
    with torch.inference_mode():
        atlas = net.atlas(fmaps)
        supports = net.supports(atlas, queries)
        got = net.correlate(atlas, coords.transpose(1, 2), supports, net.corr_weight(torch.float32))
        d = torch.arange(-3, 4, dtype=torch.float32)
        offsets = torch.stack(torch.meshgrid(d, d, indexing="ij"), dim=-1).reshape(-1, 2)  # (x, y)
        for lvl, level in enumerate(net.pyramid(fmaps)):
            want = torch.zeros(b, t, n, 256)
            for i in range(b):
                support = torch.stack(
                    [
                        _bilinear_border(level[i, int(frames[i, j])], xy[i, j] / 4 / 2**lvl + offsets)
                        for j in range(n)
                    ]
                )  # (N, P, C)
                for s in range(t):
                    pts = (coords[i, s, :, None] / 2**lvl + offsets).reshape(-1, 2)
                    feats = _bilinear_border(level[i, s], pts).reshape(n, 49, 128)
                    corr = torch.einsum("npc,nqc->npq", feats, support)
                    want[i, s] = net.corr_mlp(corr.reshape(n, -1))
            torch.testing.assert_close(got[:, lvl].transpose(1, 2), want, rtol=1e-5, atol=1e-6)


def test_a_batch_of_clips_tracks_as_each_clip_alone():
    """Batched tracking (BatchedPolicy's one network call for B environments) gives each clip
    what it gets alone: the batch shares the weights, nothing else."""
    torch.manual_seed(0)
    net = CoTrackerThreeOnline(window_len=16, model_resolution=RES).eval()
    g = torch.Generator().manual_seed(2)
    fmaps = torch.randn(3, 10, 128, RES[0] // 4, RES[1] // 4, generator=g)
    fmaps = fmaps / fmaps.norm(dim=2, keepdim=True)
    queries = torch.cat(
        [torch.zeros(3, 5, 1), torch.rand(3, 5, 2, generator=g) * torch.tensor([RES[1] - 1.0, RES[0] - 1.0])],
        dim=-1,
    )
    with torch.inference_mode():
        together = net.track(fmaps, queries, iters=2)
        for i in range(3):
            alone = net.track(fmaps[i : i + 1], queries[i : i + 1], iters=2)
            for a, t in zip(alone, together, strict=True):
                torch.testing.assert_close(t[i : i + 1], a, rtol=1e-5, atol=1e-4)
