"""Render the bundled sample episodes (assets/episodes/*.npz) with ManiSkill3.

Each episode is a scripted Panda demonstration on a ManiSkill table-top task whose assets ship with
the `mani_skill` package, seen by one fixed 224x224 camera looking at the table from the
front-right so that the gripper and the cubes are large and move visibly. Per frame it keeps RGB,
ground-truth depth (metres), segmentation (actor/link ids with their names), and the 3D positions
of four gripper points (hand, TCP, the two finger pads, from the robot links' poses), projected
into the camera with its intrinsics/extrinsics and marked visible by a depth/segmentation test.

The script drives ManiSkill's `pd_ee_target_delta_pose` controller (the one closed-loop
evaluation uses) through waypoints (above the cube, down, close, ...). One frame is recorded every
two 20 Hz controller steps, so episodes run at 10 Hz; each frame's action moves the controller
target at most 2 cm and 0.2 rad, split evenly over its two controller steps. The recorded actions
are the very commands sent, in the Episode convention: [dx, dy, dz] metres and [droll, dpitch,
dyaw] radians in the robot base frame (only yaw turns, about the base z axis, so axis-angle and
Euler angles agree exactly), gripper in [0, 1] with 1 = open. Action t is sent after frame t; the
last one holds still. Replaying action t as two env steps of
`closed_loop.ActionMapping.from_env(env, scale=0.5)(action)` reproduces the demonstration.

ManiSkill's own mplib motion-planning solutions are not used: mplib 0.1.1 (the version ManiSkill
3.0.1's planner API needs) segfaults when its planner is built under numpy 2.

Needs a Vulkan device: on a CPU-only machine Mesa's lavapipe >= 24.3 (bookworm-backports
`mesa-vulkan-drivers`); `VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.json` picks it when
several drivers are installed. Deterministic for given seeds (CPU physics, fixed script).

    python scripts/make_sample_episodes.py --out assets/episodes --tasks pick stack push pull
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from stvla_core.episodes import Episode, save_episode  # noqa: E402

CAMERA = "base_camera"
CAMERA_EYE = (0.35, -0.35, 0.45)
CAMERA_TARGET = (-0.05, 0.0, 0.12)
CAMERA_FOV = 1.0  # radians, vertical
SIM_FPS = 20.0  # Panda table-top tasks step the controller at 20 Hz
SIM_STEPS_PER_FRAME = 2  # frames (and actions) at 10 Hz keep the files small and the motion visible
CONTROL_MODE = "pd_ee_target_delta_pose"
MAX_STEP_M = 0.02  # per frame
# near contact the script slows down, as a teleoperator would: descents onto or with a cube at
# 1 cm per frame, slides of a cube at 1.5 cm; this also gives every episode ~40 frames
DESCENT_STEP_M = 0.01
SLIDE_STEP_M = 0.015
MAX_TURN_RAD = 0.2  # per frame
CUBE_HALF = 0.02
OPEN, CLOSED = 1.0, 0.0
# (name in the episode, robot link whose origin it is)
# (name in the episode, robot link, offset in that link's frame (m), links whose pixels show it).
# The finger tips are where panda_v2.urdf puts its finger pads (0.0455 m along the finger); other
# Panda variants (StackCube's wrist-camera Panda) have no pad links, so offset from the finger.
# The hand is fixed to link7, and the renderer labels its pixels panda_link7.
FINGER_PAD = (0.0, 0.0, 0.0455)
GRIPPER_POINTS = (
    ("hand", "panda_hand", (0.0, 0.0, 0.0), ("panda_hand", "panda_link8", "panda_link7")),
    ("tcp", "panda_hand_tcp", (0.0, 0.0, 0.0), ()),
    ("left_finger_tip", "panda_leftfinger", FINGER_PAD, ("panda_leftfinger", "panda_leftfinger_pad")),
    ("right_finger_tip", "panda_rightfinger", FINGER_PAD, ("panda_rightfinger", "panda_rightfinger_pad")),
)
# A point counts as visible when the rendered surface at its pixel is not more than this much
# nearer than the point: the finger pads sit ~1 cm inside the finger surface.
VISIBILITY_TOLERANCE_M = 0.02


@dataclass(frozen=True)
class TaskSpec:
    """One sample episode: which env, what to say, which seed."""

    env_id: str
    instruction: str
    seed: int


TASKS: dict[str, TaskSpec] = {
    "pick": TaskSpec("PickCube-v1", "pick up the red cube and lift it", 1),
    "stack": TaskSpec("StackCube-v1", "stack the red cube on the green cube", 2),
    "push": TaskSpec("PushCube-v1", "push the blue cube to the red and white target", 3),
    "pull": TaskSpec("PullCube-v1", "pull the blue cube back to the red and white target", 4),
}


class _FrameLimit(Exception):
    """The demonstration reached --max-frames; recording stops there."""


def _np(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def _pose_matrix(raw_pose: Any) -> np.ndarray:
    """(7,) position + wxyz quaternion -> (4, 4) float64."""
    from transforms3d.quaternions import quat2mat

    raw = _np(raw_pose).astype(np.float64).reshape(-1)
    m = np.eye(4)
    m[:3, :3] = quat2mat(raw[3:7])
    m[:3, 3] = raw[:3]
    return m


def _wrap_quarter(angle: float) -> float:
    """An angle folded into [-pi/4, pi/4): a cube looks the same every quarter turn."""
    return float((angle + np.pi / 4) % (np.pi / 2) - np.pi / 4)


def project(
    points_world: np.ndarray, intrinsics: np.ndarray, extrinsics: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(..., 3) world points -> ((..., 2) pixel (x, y), (...,) camera depth z in metres), with a
    (3, 3) pinhole matrix and a (4, 4) world -> camera (OpenCV axes) transform."""
    cam = points_world @ extrinsics[:3, :3].T + extrinsics[:3, 3]
    uv = cam @ intrinsics.T
    return uv[..., :2] / uv[..., 2:3], cam[..., 2]


def visibility(
    xy: np.ndarray,
    z: np.ndarray,
    depth: np.ndarray,
    segmentation: np.ndarray | None = None,
    own_ids: list[set[int]] | None = None,
    tolerance: float = VISIBILITY_TOLERANCE_M,
) -> np.ndarray:
    """(T, N) bool: inside the frame, in front of the camera, and either not hidden behind a
    rendered surface more than `tolerance` metres nearer than the point, or showing the point's
    own body (segmentation id in own_ids[n]: a link origin inside its housing counts as seen when
    the housing is). depth and segmentation are (T, H, W)."""
    t, h, w = depth.shape
    xi, yi = np.rint(xy[..., 0]).astype(int), np.rint(xy[..., 1]).astype(int)
    inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h) & (z > 0)
    rows, ys, xs = np.arange(t)[:, None], yi.clip(0, h - 1), xi.clip(0, w - 1)
    d = depth[rows, ys, xs]
    seen = (d == 0) | (d >= z - tolerance)
    if segmentation is not None and own_ids is not None:
        s = segmentation[rows, ys, xs]
        seen |= np.stack([np.isin(s[:, n], sorted(ids)) for n, ids in enumerate(own_ids)], axis=1)
    return inside & seen


class ScriptedPanda:
    """Steps the env towards TCP waypoints with bounded deltas and records every frame."""

    def __init__(self, env: Any, max_frames: int) -> None:
        from stvla_core.evaluation.closed_loop import ActionMapping

        self.env = env
        self.base = env.unwrapped
        self.mapping = ActionMapping.from_env(env)
        self.max_frames = max_frames
        self._links = {link.name: link for link in self.base.agent.robot.get_links()}
        self.frames: list[dict[str, np.ndarray]] = []
        self.actions: list[np.ndarray] = []
        self.info: dict[str, Any] = {}

    def reset(self, seed: int) -> None:
        obs, self.info = self.env.reset(seed=seed)
        self.frames, self.actions = [], []
        self.root = _pose_matrix(self.base.agent.robot.pose.raw_pose)
        tcp = self.tcp()
        self.target_p = tcp[:3, 3].copy()  # the controller's target, moved by every delta
        self.gripper = OPEN
        self._keep(obs)

    def tcp(self) -> np.ndarray:
        return _pose_matrix(self.base.agent.tcp.pose.raw_pose)

    def tcp_yaw(self) -> float:
        """Heading of the fingers' closing axis (TCP y) in the world xy plane."""
        y = self.tcp()[:3, 1]
        return float(np.arctan2(y[1], y[0]))

    def _keep(self, obs: dict[str, Any]) -> None:
        data, param = obs["sensor_data"][CAMERA], obs["sensor_param"][CAMERA]
        rec = {
            "rgb": _np(data["rgb"][0]),
            "depth_mm": _np(data["depth"][0, ..., 0]),
            "seg": _np(data["segmentation"][0, ..., 0]),
            "intrinsic_cv": _np(param["intrinsic_cv"][0]),
            "extrinsic_cv": _np(param["extrinsic_cv"][0]),
        }
        for name, link, offset, _ in GRIPPER_POINTS:
            rec[name] = _pose_matrix(self._links[link].pose.raw_pose) @ np.append(offset, 1.0)
        self.frames.append(rec)

    def step(self, delta_world: np.ndarray, dyaw: float = 0.0) -> None:
        if len(self.frames) >= self.max_frames:
            raise _FrameLimit
        rot = self.root[:3, :3].T
        action = np.zeros(7, np.float32)
        action[:3] = rot @ delta_world
        action[5] = dyaw
        action[6] = self.gripper
        # one frame = SIM_STEPS_PER_FRAME controller steps, each moving an equal share
        share = action.copy()
        share[:6] /= SIM_STEPS_PER_FRAME
        for _ in range(SIM_STEPS_PER_FRAME):
            obs, _, _, _, self.info = self.env.step(self.mapping(share))
        self.target_p = self.target_p + delta_world
        self.actions.append(action)
        self._keep(obs)

    def move(
        self,
        goal: np.ndarray,
        turn: float = 0.0,
        settle_m: float = 0.004,
        max_settle: int = 6,
        step_m: float = MAX_STEP_M,
    ) -> None:
        """Move the target in straight steps of at most `step_m` to `goal` (world, metres) while
        turning `turn` rad about z, then wait until the TCP is within `settle_m` of it."""
        goal = np.asarray(goal, np.float64)
        remaining_turn = turn
        while True:
            gap = goal - self.target_p
            dist = float(np.linalg.norm(gap))
            if dist < 1e-6 and abs(remaining_turn) < 1e-6:
                break
            n = max(1, int(np.ceil(dist / step_m)), int(np.ceil(abs(remaining_turn) / MAX_TURN_RAD)))
            dyaw = remaining_turn / n
            self.step(gap / n, dyaw)
            remaining_turn -= dyaw
        for _ in range(max_settle):
            if np.linalg.norm(self.tcp()[:3, 3] - goal) < settle_m:
                break
            self.step(np.zeros(3))

    def set_gripper(self, value: float, steps: int = 4) -> None:
        self.gripper = value
        for _ in range(steps):
            self.step(np.zeros(3))

    def hold(self, steps: int) -> None:
        for _ in range(steps):
            self.step(np.zeros(3))

    def success(self) -> bool:
        return bool(_np(self.info.get("success", False)).any())


def _pose_p(actor: Any) -> np.ndarray:
    return _np(actor.pose.p[0]).astype(np.float64)


def _cube_turn(robot: ScriptedPanda, cube: Any) -> float:
    """Yaw that lines the fingers' closing axis up with one of the cube's side normals, choosing
    among the four the one most across the camera's line of sight, so both fingers stay in view."""
    x_axis = _pose_matrix(cube.pose.raw_pose)[:3, 0]
    base = _wrap_quarter(float(np.arctan2(x_axis[1], x_axis[0])) - robot.tcp_yaw())
    view = np.subtract(CAMERA_TARGET, CAMERA_EYE)[:2]
    across = float(np.arctan2(view[0], -view[1]))  # perpendicular to the view in the xy plane

    def misalignment(turn: float) -> float:
        diff = (robot.tcp_yaw() + turn - across) % np.pi
        return min(diff, np.pi - diff)

    return min((base + k * np.pi / 2 for k in (-1, 0, 1)), key=lambda turn: (misalignment(turn), abs(turn)))


def _grasp(robot: ScriptedPanda, cube: Any) -> None:
    c = _pose_p(cube)
    robot.move(c + [0, 0, 0.08], turn=_cube_turn(robot, cube))
    robot.move(c + [0, 0, 0.002], settle_m=0.003, step_m=DESCENT_STEP_M)
    robot.set_gripper(CLOSED)


def script_pick(robot: ScriptedPanda) -> None:
    env = robot.base
    _grasp(robot, env.cube)
    goal = _pose_p(env.goal_site)
    robot.move(_pose_p(env.cube) + [0, 0, 0.06])
    robot.move(goal)
    robot.hold(2)


def script_stack(robot: ScriptedPanda) -> None:
    env = robot.base
    _grasp(robot, env.cubeA)
    b = _pose_p(env.cubeB)
    robot.move(_pose_p(env.cubeA) + [0, 0, 0.08])
    robot.move(b + [0, 0, 0.08])
    robot.move(b + [0, 0, 2 * CUBE_HALF + 0.005], settle_m=0.003, step_m=DESCENT_STEP_M)
    robot.set_gripper(OPEN, steps=3)
    robot.move(robot.target_p + [0, 0, 0.06])
    robot.hold(2)


def _slide(robot: ScriptedPanda, start_offset: float, end_x: float) -> None:
    """Closed gripper lowered on the far side of the cube (start_offset along x), then moved along
    x to end_x: a push when start_offset < 0, a pull when > 0."""
    env = robot.base
    c = _pose_p(env.obj)
    robot.set_gripper(CLOSED, steps=2)
    start = c + [start_offset, 0, 0]
    start[2] = CUBE_HALF
    robot.move(start + [0, 0, 0.08])
    robot.move(start, settle_m=0.003, step_m=DESCENT_STEP_M)
    robot.move(np.array([end_x, start[1], start[2]]), step_m=SLIDE_STEP_M)
    robot.hold(2)


def script_push(robot: ScriptedPanda) -> None:
    goal = _pose_p(robot.base.goal_region)
    _slide(robot, -0.05, goal[0] - 0.05)


def script_pull(robot: ScriptedPanda) -> None:
    goal = _pose_p(robot.base.goal_region)
    _slide(robot, 0.05, goal[0] + 0.05)


SCRIPTS = {"pick": script_pick, "stack": script_stack, "push": script_push, "pull": script_pull}


def make_env(spec: TaskSpec, size: int) -> Any:
    import gymnasium as gym
    import mani_skill.envs  # noqa: F401  (registers the envs)
    from mani_skill.utils import sapien_utils

    pose = sapien_utils.look_at(eye=list(CAMERA_EYE), target=list(CAMERA_TARGET))
    return gym.make(
        spec.env_id,
        obs_mode="rgb+depth+segmentation",
        control_mode=CONTROL_MODE,
        render_backend="gpu",
        sim_backend="cpu",
        num_envs=1,
        max_episode_steps=10_000,  # the script decides when it is done
        sensor_configs={CAMERA: dict(pose=pose, width=size, height=size, fov=CAMERA_FOV)},
    )


def record(task: str, seed: int | None = None, size: int = 224, max_frames: int = 120) -> Episode:
    """Run the task's scripted demonstration and build the Episode. With the full frame budget
    the demonstration must succeed; a smaller `max_frames` cuts it short (metadata says so)."""
    if task not in TASKS:
        raise ValueError(f"task: expected one of {', '.join(TASKS)}, found {task!r}")
    spec = TASKS[task]
    seed = spec.seed if seed is None else seed
    env = make_env(spec, size)
    try:
        robot = ScriptedPanda(env, max_frames)
        robot.reset(seed)
        truncated = False
        try:
            SCRIPTS[task](robot)
        except _FrameLimit:
            truncated = True
        success = robot.success()
        if not truncated and not success:
            raise RuntimeError(f"{spec.env_id} seed {seed}: the scripted demonstration did not succeed")
        names = {0: "background"}
        names.update({int(k): str(v.name) for k, v in env.unwrapped.segmentation_id_map.items()})
        return _build_episode(task, spec, seed, robot, names, success, truncated)
    finally:
        env.close()


def _build_episode(
    task: str,
    spec: TaskSpec,
    seed: int,
    robot: ScriptedPanda,
    segmentation_names: dict[int, str],
    success: bool,
    truncated: bool,
) -> Episode:
    import mani_skill

    frames = robot.frames
    intr_cv = frames[0]["intrinsic_cv"].astype(np.float64)
    extr = np.eye(4)
    extr[:3] = frames[0]["extrinsic_cv"]
    # ManiSkill's intrinsic_cv puts pixel centres at i + 0.5; the Episode indexes pixels at their
    # centres (depth[y, x] is the pixel whose centre is (x, y)), so shift the principal point.
    intr = intr_cv.copy()
    intr[:2, 2] -= 0.5

    depth = np.stack([f["depth_mm"] for f in frames]).astype(np.float32) / 1000.0
    depth[depth < 0] = 0.0
    world = np.stack([[f[n][:3] for n, _, _, _ in GRIPPER_POINTS] for f in frames])  # (T, N, 3)
    xy, z = project(world, intr, extr)
    segmentation = np.stack([f["seg"] for f in frames]).astype(np.int32)
    ids = {name: i for i, name in segmentation_names.items()}
    own_ids = [{ids[link] for link in links if link in ids} for _, _, _, links in GRIPPER_POINTS]
    hold = np.zeros(7, np.float32)
    hold[6] = robot.gripper
    actions = np.stack([*robot.actions, hold]).astype(np.float32)

    return Episode(
        frames=np.stack([f["rgb"] for f in frames]).astype(np.uint8),
        instruction=spec.instruction,
        fps=SIM_FPS / SIM_STEPS_PER_FRAME,
        depth=depth,
        segmentation=segmentation,
        segmentation_names=segmentation_names,
        actions=actions,
        intrinsics=intr.astype(np.float32),
        extrinsics=extr.astype(np.float32),
        gt_points=xy.astype(np.float32),
        gt_visible=visibility(xy, z, depth, segmentation, own_ids),
        gt_point_names=[n for n, _, _, _ in GRIPPER_POINTS],
        name=f"maniskill_{task}",
        source=f"ManiSkill3 {spec.env_id}, scripted Panda demonstration",
        metadata={
            "env_id": spec.env_id,
            "seed": seed,
            "success": success,
            "truncated": truncated,
            "mani_skill_version": mani_skill.__version__,
            "controller": f"{CONTROL_MODE} (Panda), scripted waypoints, <= {MAX_STEP_M} m and "
            f"<= {MAX_TURN_RAD} rad per frame",
            "actions": "the commands sent: action t after frame t; [dx, dy, dz] m in the robot base "
            "frame, [droll, dpitch, dyaw] rad (yaw only, about the base z axis), gripper 1 = open, "
            f"0 = closed; each sent as {SIM_STEPS_PER_FRAME} env steps of stvla_core.evaluation."
            f"closed_loop.ActionMapping.from_env(env, scale=1/{SIM_STEPS_PER_FRAME})(action); the "
            "last action holds still",
            "sim_steps_per_frame": SIM_STEPS_PER_FRAME,
            "camera": {"eye": list(CAMERA_EYE), "target": list(CAMERA_TARGET), "fov_rad": CAMERA_FOV},
            "intrinsic_cv_maniskill": intr_cv.round(6).tolist(),
            "intrinsics_note": "principal point shifted by -0.5 px from ManiSkill's intrinsic_cv so that "
            "integer pixel coordinates are pixel centres",
            "gt_points": "robot link points "
            + ", ".join(f"{n}={link}+{list(off)}" for n, link, off, _ in GRIPPER_POINTS)
            + f"; visible = in frame and (rendered depth >= point depth - {VISIBILITY_TOLERANCE_M} m "
            "or the pixel shows the point's own link: hand -> panda_hand, finger tip -> its finger)",
            "gt_points_world": world.round(5).tolist(),
        },
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=REPO / "assets" / "episodes", help="output folder")
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS), help="tasks to render")
    p.add_argument("--seed", type=int, default=None, help="env seed (default: each task's own)")
    p.add_argument("--size", type=int, default=224, help="square camera size in pixels")
    p.add_argument("--max-frames", type=int, default=120, help="cut the demonstration short here")
    args = p.parse_args(argv)
    if args.max_frames < 2:
        p.error(f"--max-frames must be >= 2, found {args.max_frames}")
    for task in args.tasks:
        t0 = time.perf_counter()
        ep = record(task, args.seed, args.size, args.max_frames)
        path = save_episode(ep, args.out / f"{ep.name}.npz")
        print(
            f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {time.perf_counter() - t0:.0f} s): "
            f"{ep.summary()}; seed {ep.metadata['seed']}, success {ep.metadata['success']}"
            f"{' (cut short)' if ep.metadata['truncated'] else ''}, TCP visible in "
            f"{int(ep.gt_visible[:, 1].sum())}/{ep.num_frames} frames"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
