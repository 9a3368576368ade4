"""The bundled ManiSkill3 sample episodes (assets/episodes) and the script that renders them."""

from __future__ import annotations

import functools
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stvla_core.episodes import Episode, load_episode
from stvla_core.sim.tasks import PANDA_CAMERA

REPO = Path(__file__).resolve().parents[1]
EPISODES = REPO / "assets" / "episodes"
SCRIPT = REPO / "scripts" / "make_sample_episodes.py"
FILES = sorted(EPISODES.glob("*.npz"))
POINTS = ["hand", "tcp", "left_finger_tip", "right_finger_tip"]


@functools.cache
def _script():
    """scripts/ is no package: load the script as a module (registered first, as dataclasses need)."""
    spec = importlib.util.spec_from_file_location("make_sample_episodes", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module", params=FILES, ids=[f.stem for f in FILES])
def episode(request) -> Episode:
    return load_episode(request.param)


def _camera(ep: Episode) -> tuple[np.ndarray, np.ndarray]:
    """(T, N, 3) gripper points in camera coordinates (metres) and (T, N, 2) their pixels,
    projected here from the stored world points with the stored intrinsics/extrinsics."""
    world = np.asarray(ep.metadata["gt_points_world"], np.float64)
    e, k = ep.extrinsics.astype(np.float64), ep.intrinsics.astype(np.float64)
    cam = world @ e[:3, :3].T + e[:3, 3]
    uv = cam @ k.T
    return cam, uv[..., :2] / uv[..., 2:3]


def _pixel(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.rint(xy[..., 0]).astype(int), np.rint(xy[..., 1]).astype(int)


def _window_min_gap(depth: np.ndarray, x: int, y: int, z: float, r: int) -> float:
    """Smallest |depth - z| in the (2r+1)^2 window around pixel (x, y)."""
    win = depth[max(0, y - r) : y + r + 1, max(0, x - r) : x + r + 1]
    return float(np.abs(win - z).min())


def test_four_tasks_bundled_and_small() -> None:
    assert [f.name for f in FILES] == [
        "maniskill_pick.npz",
        "maniskill_pull.npz",
        "maniskill_push.npz",
        "maniskill_stack.npz",
    ]
    total = sum(f.stat().st_size for f in FILES)
    assert total < 17e6, f"bundled episodes take {total / 1e6:.1f} MB"  # the brief: ~15 MB in all


def test_episode_complete(episode: Episode) -> None:
    ep = episode
    ep.validate()
    assert 30 <= ep.num_frames <= 120
    assert ep.size == (224, 224)
    for name in ("depth", "segmentation", "actions", "intrinsics", "extrinsics", "gt_points", "gt_visible"):
        assert getattr(ep, name) is not None, name
    assert ep.extrinsics.shape == (4, 4)
    assert ep.instruction and "cube" in ep.instruction
    assert ep.gt_point_names == POINTS
    assert ep.metadata["success"] is True and ep.metadata["truncated"] is False
    assert ep.metadata["env_id"] in {"PickCube-v1", "StackCube-v1", "PushCube-v1", "PullCube-v1"}
    assert ep.fps == 10.0
    # every id in the images has a name; the gripper and the cube are in view
    names = {ep.segmentation_names[int(i)] for i in np.unique(ep.segmentation)}
    assert {"panda_leftfinger", "panda_rightfinger", "table-workspace"} <= names
    assert any(n.startswith("cube") for n in names)


def test_intrinsics_look_like_a_centred_pinhole(episode: Episode) -> None:
    k = episode.intrinsics
    assert k[0, 0] == pytest.approx(k[1, 1]) and k[0, 0] > 100
    # the task setup's vertical fov: fy = (H / 2) / tan(fov / 2)
    assert k[1, 1] == pytest.approx(112 / np.tan(PANDA_CAMERA.fov / 2), rel=1e-4)
    assert (k[0, 2], k[1, 2]) == pytest.approx((111.5, 111.5))
    r = episode.extrinsics[:3, :3]
    assert np.allclose(r @ r.T, np.eye(3), atol=1e-5) and np.linalg.det(r) == pytest.approx(1, abs=1e-5)


def test_gt_points_are_the_projection_of_the_gripper(episode: Episode) -> None:
    cam, xy = _camera(episode)
    assert np.abs(xy - episode.gt_points).max() < 0.01
    assert (cam[..., 2] > 0.2).all()


def test_tcp_in_frame_and_gripper_moves(episode: Episode) -> None:
    x, y = _pixel(episode.gt_points[:, POINTS.index("tcp")])
    inside = (x >= 0) & (x < 224) & (y >= 0) & (y < 224)
    assert inside.mean() >= 0.9
    tcp = episode.gt_points[:, POINTS.index("tcp")]
    assert np.linalg.norm(tcp - tcp[0], axis=1).max() > 30  # pixels


def test_gt_depth_matches_depth_map(episode: Episode) -> None:
    ep = episode
    cam, _ = _camera(ep)
    x, y = _pixel(ep.gt_points)
    # the finger-tip points lie ~1.5 cm inside the fingers: the surface right around them is
    # within 3 cm in most frames (a turning hand can hide one for a few); a wrong camera model lands
    # on the table or background
    # in the frames where the point is marked visible (a turning hand, or PickCube's goal marker
    # that the cube is carried into, can hide a finger)
    for n in (POINTS.index("left_finger_tip"), POINTS.index("right_finger_tip")):
        seen = np.flatnonzero(ep.gt_visible[:, n])
        gaps = [_window_min_gap(ep.depth[t], x[t, n], y[t, n], cam[t, n, 2], 1) for t in seen]
        assert len(seen) >= 0.2 * len(ep) and np.mean(np.array(gaps) < 0.03) >= 0.95, (n, np.round(gaps, 3))
    # the TCP floats between the fingers: some surface (finger, grasped cube) near its pixel
    # is at its depth in most frames
    # (a window of ~2 cm at the gripper: 7 px at the round-1 camera's focal length of 205 px)
    n = POINTS.index("tcp")
    r = round(7 * ep.intrinsics[1, 1] / 205.0)
    gaps = [_window_min_gap(ep.depth[t], x[t, n], y[t, n], cam[t, n, 2], r) for t in range(len(ep))]
    assert np.mean(np.array(gaps) < 0.03) >= 0.6, np.round(gaps, 3)


def test_visible_finger_tips_lie_on_the_rendered_surface(episode: Episode) -> None:
    """Where a finger tip is marked visible, the depth map at its own pixel is the finger's surface
    (the point sits ~1.5 cm inside it); only silhouette pixels may see past the thin finger."""
    ep = episode
    cam, _ = _camera(ep)
    x, y = _pixel(ep.gt_points)
    t = np.arange(len(ep))[:, None]
    gap = np.abs(ep.depth[t, y.clip(0, 223), x.clip(0, 223)] - cam[..., 2])
    for n in (POINTS.index("left_finger_tip"), POINTS.index("right_finger_tip")):
        visible = np.flatnonzero(ep.gt_visible[:, n])
        assert len(visible) >= 10
        missed = [i for i in visible if gap[i, n] >= 0.03]
        silhouette = [_window_min_gap(ep.depth[i], x[i, n], y[i, n], cam[i, n, 2], 1) < 0.03 for i in missed]
        assert all(silhouette), (n, missed, np.round(gap[missed, n], 3))
        assert len(missed) <= 0.3 * len(visible) and np.median(gap[visible, n]) < 0.02


def test_visible_points_are_not_behind_a_nearer_surface(episode: Episode) -> None:
    ep = episode
    cam, _ = _camera(ep)
    x, y = _pixel(ep.gt_points)
    t = np.arange(len(ep))[:, None]
    d = ep.depth[t, y.clip(0, 223), x.clip(0, 223)]
    seg = ep.segmentation[t, y.clip(0, 223), x.clip(0, 223)]
    names = np.vectorize(lambda i: ep.segmentation_names[int(i)])(seg)
    in_front = d >= cam[..., 2] - 0.02
    on_gripper = np.char.startswith(names.astype(str), "panda")
    assert (~ep.gt_visible | in_front | on_gripper).all()
    assert ep.gt_visible[:, POINTS.index("tcp")].any()
    # points marked hidden really are behind something nearer (not merely off the gripper)
    hidden = ~ep.gt_visible
    assert (d[hidden] < cam[..., 2][hidden] - 0.02).all()


def test_depth_in_metres(episode: Episode) -> None:
    d, seg = episode.depth, episode.segmentation
    valid = d[d > 0]
    assert valid.min() >= 0.1 and 0.1 < np.median(valid) < 5.0
    near = ~np.isin(seg, [i for i, n in episode.segmentation_names.items() if n in ("ground", "background")])
    assert 0.1 <= d[near].min() and d[near].max() < 5.0  # table, robot and cubes
    table = [i for i, n in episode.segmentation_names.items() if n == "table-workspace"][0]
    assert np.median(d[seg == table]) == pytest.approx(0.7, abs=0.3)


def test_actions_are_bounded_deltas_that_add_up_to_the_tcp_path(episode: Episode) -> None:
    a = episode.actions
    assert np.linalg.norm(a[:, :3], axis=1).max() <= 0.02 + 1e-6
    assert np.abs(a[:, 3:5]).max() == 0 and np.abs(a[:, 5]).max() <= 0.2 + 1e-6
    assert set(np.unique(a[:, 6])) <= {0.0, 1.0}
    assert (a[-1, :6] == 0).all()
    world = np.asarray(episode.metadata["gt_points_world"])[:, POINTS.index("tcp")]
    # the controller follows its target to within a few mm by the end of each move
    assert np.linalg.norm(a[:-1, :3].sum(0) - (world[-1] - world[0])) < 0.01
    assert np.linalg.norm(world[-1] - world[0]) > 0.05


def test_gripper_closes_when_it_should(episode: Episode) -> None:
    grip = episode.actions[:, 6]
    env = episode.metadata["env_id"]
    if env in ("PickCube-v1", "StackCube-v1"):
        assert grip[0] == 1 and (grip == 0).any()
        assert grip[-1] == (1 if env == "StackCube-v1" else 0)
    else:
        assert (grip == 0).all()  # pushes and pulls with a closed gripper


# -- the pure helpers of the expert (stvla_core.sim.expert) --------------------------------------


def test_project_hand_computed() -> None:
    from stvla_core.sim import expert as m

    k = np.array([[100.0, 0, 50], [0, 100, 40], [0, 0, 1]])
    e = np.eye(4)
    e[:3, 3] = [0, 0, 1]  # camera 1 m behind the world origin, looking along +z
    xy, z = m.project(np.array([[0.1, -0.2, 1.0], [0.0, 0.0, 0.0]]), k, e)
    assert np.allclose(xy, [[55.0, 30.0], [50.0, 40.0]]) and np.allclose(z, [2.0, 1.0])


def test_visibility_depth_and_own_link() -> None:
    from stvla_core.sim import expert as m

    depth = np.full((1, 4, 5), 1.0, np.float32)
    depth[0, 1, 2] = 0.5  # something nearer at pixel (x=2, y=1)
    seg = np.zeros((1, 4, 5), np.int32)
    seg[0, 1, 2] = 7
    xy = np.array([[[0.2, 0.1], [2.0, 1.2], [2.0, 1.0], [5.0, 1.0], [1.0, 1.0]]])
    z = np.array([[0.99, 0.9, 0.9, 0.5, -1.0]])
    vis = m.visibility(xy, z, depth)
    assert vis.tolist() == [[True, False, False, False, False]]
    own = [set(), set(), {7}, set(), set()]
    assert m.visibility(xy, z, depth, seg, own).tolist() == [[True, False, True, False, False]]


def test_wrap_quarter() -> None:
    from stvla_core.sim import expert as m

    for angle, expected in [
        (0.1, 0.1),
        (np.pi / 2 + 0.1, 0.1),
        (-np.pi / 2 - 0.1, -0.1),
        (np.pi / 4 + 0.1, 0.1 - np.pi / 4),
    ]:
        assert m._wrap_quarter(angle) == pytest.approx(expected)


def test_unknown_task_is_named() -> None:
    with pytest.raises(ValueError, match=r"task: expected one of pick, stack, push, pull, found 'fly'"):
        _script().record("fly")


# -- regenerating with ManiSkill3 -------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.sim
def test_script_regenerates_the_push_episode(tmp_path: Path, vulkan: None) -> None:
    cmd = [sys.executable, str(SCRIPT), "--out", str(tmp_path), "--tasks", "push", "--max-frames", "6"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"wrote {tmp_path / 'maniskill_push.npz'}" in r.stdout and "(cut short)" in r.stdout
    ep = load_episode(tmp_path / "maniskill_push.npz")
    assert ep.num_frames == 6 and ep.metadata["truncated"] is True
    bundled = load_episode(EPISODES / "maniskill_push.npz")
    # same seed, same script: the same physics (rendering may differ across Vulkan drivers)
    assert np.allclose(ep.actions[:5], bundled.actions[:5], atol=1e-6)
    assert np.allclose(ep.gt_points, bundled.gt_points[:6], atol=0.05)
    assert np.abs(ep.frames.astype(int) - bundled.frames[:6]).mean() < 3
    assert np.allclose(ep.depth, bundled.depth[:6], atol=0.01)
