"""The scripted Panda expert: drives ManiSkill's table-top tasks through waypoints (above the
cube, down, close, ...) with the env set up by `stvla_core.sim.tasks` (the camera, 10 Hz
`pd_ee_target_delta_pose` control and image size closed-loop evaluation uses), and records each
demonstration as an Episode: RGB, depth (metres), segmentation, the actions sent, camera
intrinsics/extrinsics and the projected positions of four gripper points as tracking ground truth.

Each action moves the controller target at most 2 cm and 0.2 rad (1 cm near contact, as a
teleoperator slows down). The recorded actions are the very commands sent, in the Episode
convention: [dx, dy, dz] metres and [droll, dpitch, dyaw] radians in the robot base frame (only
yaw turns, about the base z axis, so axis-angle and Euler angles agree), gripper in [0, 1] with
1 = open. Action t is sent after frame t as one env step of `ActionMapping.from_env(env)(action)`;
the last one holds still, so replaying the actions reproduces the demonstration.

ManiSkill's own mplib motion planner is not used: mplib 0.1.1 (the version ManiSkill 3.0.1's
planner API needs) segfaults when its planner is built under numpy 2. Needs a Vulkan device: on a
CPU-only machine Mesa's lavapipe >= 24.3. Deterministic for a given seed (CPU physics)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from stvla_core.episodes import Episode
from stvla_core.sim.tasks import TaskSpec, make_env, task_spec

MAX_STEP_M = 0.02  # per action
# near contact the script slows down, as a teleoperator would: descents onto or with a cube at
# 1 cm per action, slides of a cube at 1.5 cm
DESCENT_STEP_M = 0.01
SLIDE_STEP_M = 0.015
MAX_TURN_RAD = 0.2  # per action
CUBE_HALF = 0.02
OPEN, CLOSED = 1.0, 0.0
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
RECORD_OBS_MODE = "rgb+depth+segmentation"


@dataclass(frozen=True)
class Perturbation:
    """DART-style noise (Laskey et al., 2017): with probability `prob` an action's translation is
    executed with N(0, scale_m^2) per axis added, while the episode records the expert's clean
    action; the script re-plans from where the controller target really is, so the next recorded
    actions are the expert's corrections. A policy trained on them sees the off-course states its
    own errors lead to, and what to do there. Gripper commands are never perturbed."""

    scale_m: float = 0.0
    prob: float = 0.0

    def validate(self) -> None:
        if not 0 <= self.scale_m <= 0.05:
            raise ValueError(f"perturbation scale: expected 0..0.05 m, found {self.scale_m}")
        if not 0 <= self.prob <= 1:
            raise ValueError(f"perturbation probability: expected 0..1, found {self.prob}")

    @property
    def active(self) -> bool:
        return self.scale_m > 0 and self.prob > 0


class FrameLimit(Exception):
    """The demonstration reached its frame budget; recording stops there."""


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

    def __init__(
        self, env: Any, spec: TaskSpec, max_frames: int, perturbation: Perturbation | None = None
    ) -> None:
        from stvla_core.evaluation.closed_loop import ActionMapping

        self.env = env
        self.spec = spec
        self.base = env.unwrapped
        self.mapping = ActionMapping.from_env(env)
        self.max_frames = max_frames
        self._links = {link.name: link for link in self.base.agent.robot.get_links()}
        self.frames: list[dict[str, np.ndarray]] = []
        self.actions: list[np.ndarray] = []
        self.info: dict[str, Any] = {}
        self.perturbation = perturbation or Perturbation()
        self.rng = np.random.default_rng(0)

    def reset(self, seed: int) -> None:
        obs, self.info = self.env.reset(seed=seed)
        self.rng = np.random.default_rng(seed)  # the same seed perturbs the same way
        self.frames, self.actions = [], []
        self.root = _pose_matrix(self.base.agent.robot.pose.raw_pose)
        self.target_p = self.tcp()[:3, 3].copy()  # the controller's target, moved by every delta
        self.gripper = OPEN
        self._keep(obs)

    def tcp(self) -> np.ndarray:
        return _pose_matrix(self.base.agent.tcp.pose.raw_pose)

    def tcp_yaw(self) -> float:
        """Heading of the fingers' closing axis (TCP y) in the world xy plane."""
        y = self.tcp()[:3, 1]
        return float(np.arctan2(y[1], y[0]))

    def _keep(self, obs: dict[str, Any]) -> None:
        cam = self.spec.camera
        data, param = obs["sensor_data"][cam], obs["sensor_param"][cam]
        rec = {
            "rgb": _np(data["rgb"][0]),
            "depth_mm": _np(data["depth"][0, ..., 0]),
            "seg": _np(data["segmentation"][0, ..., 0]),
            "intrinsic_cv": _np(param["intrinsic_cv"][0]),
            "extrinsic_cv": _np(param["extrinsic_cv"][0]),
            "qpos": _np(self.base.agent.robot.get_qpos()[0]).astype(np.float32),
        }
        for name, link, offset, _ in GRIPPER_POINTS:
            rec[name] = _pose_matrix(self._links[link].pose.raw_pose) @ np.append(offset, 1.0)
        self.frames.append(rec)

    def step(self, delta_world: np.ndarray, dyaw: float = 0.0, perturb: bool = False) -> None:
        """Send one action (recorded as is); with `perturb` and an active perturbation, what is
        executed may carry the perturbation's noise on top."""
        if len(self.frames) >= self.max_frames:
            raise FrameLimit
        action = np.zeros(7, np.float32)
        action[:3] = self.root[:3, :3].T @ delta_world
        action[5] = dyaw
        action[6] = self.gripper
        sent, moved = action, np.asarray(delta_world, np.float64)
        noise = self.perturbation
        if perturb and noise.active and self.rng.random() < noise.prob:
            extra = self.rng.normal(0.0, noise.scale_m, 3)
            sent = action.copy()
            sent[:3] += (self.root[:3, :3].T @ extra).astype(np.float32)
            moved = moved + extra
        obs, _, _, _, self.info = self.env.step(self.mapping(sent))
        self.target_p = self.target_p + moved
        self.actions.append(action)
        self._keep(obs)

    def move(
        self,
        goal: np.ndarray,
        turn: float = 0.0,
        settle_m: float = 0.004,
        max_settle: int = 4,
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
            self.step(gap / n, dyaw, perturb=True)
            remaining_turn -= dyaw
        for _ in range(max_settle):
            if np.linalg.norm(self.tcp()[:3, 3] - goal) < settle_m:
                break
            # wait for the TCP; a target the perturbation moved off the goal is brought back
            gap = goal - self.target_p
            dist = float(np.linalg.norm(gap))
            self.step(np.zeros(3) if dist < 1e-6 else gap * min(1.0, step_m / dist), perturb=True)

    def set_gripper(self, value: float, steps: int = 3) -> None:
        self.gripper = value
        self.hold(steps)

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
    cam = robot.spec.camera_setup
    view = np.subtract(cam.target, cam.eye)[:2] if cam is not None else np.array([1.0, 0.0])
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
    robot.set_gripper(OPEN)
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


SCRIPTS: dict[str, Callable[[ScriptedPanda], None]] = {
    "PickCube-v1": script_pick,
    "StackCube-v1": script_stack,
    "PushCube-v1": script_push,
    "PullCube-v1": script_pull,
}
SHORT_NAMES = {"pick": "PickCube-v1", "stack": "StackCube-v1", "push": "PushCube-v1", "pull": "PullCube-v1"}


def expert_task(task: str) -> str:
    """The env id of a task the expert can demonstrate (short names pick/stack/push/pull too)."""
    env_id = SHORT_NAMES.get(task, task)
    if env_id not in SCRIPTS:
        raise ValueError(f"task: expected one of {', '.join([*SHORT_NAMES, *SCRIPTS])}, found {task!r}")
    return env_id


STATE_NAMES = [*(f"panda_joint{i}" for i in range(1, 8)), "panda_finger_joint1", "panda_finger_joint2"]


class Recorder:
    """One env per task, reused across seeds (building an env costs seconds, a reset 0.1 s)."""

    def __init__(
        self,
        task: str,
        image_size: int | None = None,
        max_frames: int = 120,
        perturbation: Perturbation | None = None,
    ) -> None:
        self.env_id = expert_task(task)
        self.spec = task_spec(self.env_id)
        self.image_size = image_size or self.spec.image_size
        self.env = make_env(
            self.spec, obs_mode=RECORD_OBS_MODE, image_size=self.image_size, max_steps=10 * max_frames
        )
        self.max_frames = max_frames
        self.perturbation = perturbation or Perturbation()
        self.perturbation.validate()

    def close(self) -> None:
        self.env.close()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def record(self, seed: int, name: str | None = None) -> Episode:
        """The scripted demonstration of one seed. metadata["success"] says whether the env
        reported success at its end; metadata["truncated"], whether the frame budget cut it."""
        return self.record_with_state(seed, name)[0]

    def record_with_state(self, seed: int, name: str | None = None) -> tuple[Episode, np.ndarray]:
        """`record`, and the robot's joint positions per frame, (T, 9) float32."""
        robot = ScriptedPanda(self.env, self.spec, self.max_frames, self.perturbation)
        robot.reset(seed)
        truncated = False
        try:
            SCRIPTS[self.env_id](robot)
        except FrameLimit:
            truncated = True
        names = {0: "background"}
        names.update({int(k): str(v.name) for k, v in self.env.unwrapped.segmentation_id_map.items()})
        episode = _build_episode(self.spec, seed, robot, names, robot.success(), truncated, name)
        return episode, np.stack([f["qpos"] for f in robot.frames])


def _build_episode(
    spec: TaskSpec,
    seed: int,
    robot: ScriptedPanda,
    segmentation_names: dict[int, str],
    success: bool,
    truncated: bool,
    name: str | None,
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
    ids = {n: i for i, n in segmentation_names.items()}
    own_ids = [{ids[link] for link in links if link in ids} for _, _, _, links in GRIPPER_POINTS]
    hold = np.zeros(7, np.float32)
    hold[6] = robot.gripper
    actions = np.stack([*robot.actions, hold]).astype(np.float32)
    cam = spec.camera_setup
    return Episode(
        frames=np.stack([f["rgb"] for f in frames]).astype(np.uint8),
        instruction=spec.instruction or "",
        fps=float(spec.control_freq or 20),
        depth=depth,
        segmentation=segmentation,
        segmentation_names=segmentation_names,
        actions=actions,
        intrinsics=intr.astype(np.float32),
        extrinsics=extr.astype(np.float32),
        gt_points=xy.astype(np.float32),
        gt_visible=visibility(xy, z, depth, segmentation, own_ids),
        gt_point_names=[n for n, _, _, _ in GRIPPER_POINTS],
        name=name or f"{spec.env_id}_seed{seed}",
        source=f"ManiSkill3 {spec.env_id}, scripted Panda demonstration",
        metadata={
            "env_id": spec.env_id,
            "seed": seed,
            "success": success,
            "truncated": truncated,
            "mani_skill_version": mani_skill.__version__,
            "controller": f"{spec.control_mode} (Panda) at {spec.control_freq} Hz, scripted waypoints, "
            f"<= {MAX_STEP_M} m and <= {MAX_TURN_RAD} rad per action",
            "actions": ("the expert's commands" if robot.perturbation.active else "the commands sent")
            + ": action t after frame t; [dx, dy, dz] m in the robot base "
            "frame, [droll, dpitch, dyaw] rad (yaw only, about the base z axis), gripper 1 = open, "
            "0 = closed; each sent as one env step of stvla_core.evaluation.closed_loop."
            "ActionMapping.from_env(env)(action); the last action holds still"
            + (
                "; with the perturbation some were executed with noise added (replay does not reproduce "
                "the demonstration)"
                if robot.perturbation.active
                else ""
            ),
            "perturbation": asdict(robot.perturbation),
            "camera": {"eye": list(cam.eye), "target": list(cam.target), "fov_rad": cam.fov}
            if cam is not None
            else None,
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
