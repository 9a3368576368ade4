"""Closed-loop evaluation in ManiSkill3: run a policy for N episodes per task, record success,
episode length and one mp4 per episode, and write `results.json` / `results.csv` to a folder.

Action mapping (policy -> ManiSkill end-effector delta-pose controllers). The policy speaks the
Episode convention: [dx, dy, dz] metres and [droll, dpitch, dyaw] radians per step in the robot
base frame, gripper in [0, 1] with 1 = open. `ActionMapping` reads the limits of the env's own
controller, so the physical motion equals the policy's (times `action_scale`):
- normalised arm (Panda, limits +-0.1 m / +-0.1 rad): position a = 2 (p - low) / (high - low) - 1,
  clipped to [-1, 1]; rotation a = r / rot_lower, because ManiSkill 3.0.1 multiplies the
  normalised rotation by `rot_lower` (negative, so the sign flips); a rotation of norm > 1 is
  rescaled to norm 1 by the controller.
- unnormalised arm (WidowX Bridge): metres and radians pass through unchanged.
- gripper: normalised [-1, 1] -> [closed, open] joint targets, so a = 2 g - 1.
Panda tasks use `pd_ee_target_delta_pose` (same 7-D action as `pd_ee_delta_pose`, but each delta
moves the previous *target*, as Bridge's WidowX controller does): measured on PickCube-v1, five
steps of dx = 0.01 m move the TCP 0.049 m with it, but only 0.020 m with `pd_ee_delta_pose`,
whose delta starts from the lagging measured pose.
The task setup (camera, image size, control rate: Panda tasks at 10 Hz, one policy action per env
step) comes from `stvla_core.sim.tasks`, the same definition the demonstrations were recorded
with. `action_scale` rescales pose deltas for a policy trained at another rate.

Depth: ManiSkill gives int16 millimetres; the policy gets float32 metres (0 = invalid). The Bridge
tasks render RGB only (ManiSkill supports no depth there), so the policy gets depth=None and
estimates depth itself, as on the real robot."""

from __future__ import annotations

import importlib.util
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stvla_core.evaluation.executors import SHARD_EXECUTORS
from stvla_core.evaluation.policies import POLICIES, Policy, check_action, reset_policy
from stvla_core.sim.tasks import (  # noqa: F401  (re-exported: the task table lives in stvla_core.sim)
    BRIDGE_TASKS,
    EVAL_SEED_START,
    PANDA_TASKS,
    TASKS,
    TaskSpec,
    step_limit,
    task_spec,
)
from stvla_core.sim.tasks import make_env as make_task_env


class SimulatorUnavailableError(RuntimeError):
    """ManiSkill3 is not installed (the app's own requirements leave it out: it is large and
    needs a Vulkan driver); the message says how to install it."""


def require_maniskill() -> None:
    if importlib.util.find_spec("mani_skill") is None:
        raise SimulatorUnavailableError(
            "closed-loop evaluation needs ManiSkill3, which is not installed here: "
            "`.venv/bin/pip install mani-skill==3.0.1`, plus a Vulkan driver "
            "(`bash scripts/install_system.sh` installs Mesa's lavapipe on Debian 12)"
        )


class MissingAssetsError(RuntimeError):
    """A task's simulation assets are not downloaded; the message names the folders and the
    command that downloads them (needs internet)."""


def download_command(asset_id: str) -> str:
    return f"python -m mani_skill.utils.download_asset {asset_id}"


def missing_assets(task: str) -> list[tuple[str, Path]]:
    """(asset id, expected folder) of every asset the task needs that is not on disk. Reads
    ManiSkill's asset table only; builds no environment."""
    from mani_skill.utils.assets import data

    if not data.DATA_SOURCES:
        data.initialize_data_sources()
    missing = []
    for asset_id in task_spec(task).assets:
        source = data.DATA_SOURCES[asset_id]
        folder = Path(source.output_dir) / source.target_path
        if not folder.exists():
            missing.append((asset_id, folder))
    return missing


def check_task_assets(task: str) -> None:
    missing = missing_assets(task)
    if missing:
        lines = [f"  {a}: expected in {folder}" for a, folder in missing]
        commands = " && ".join(download_command(a) for a, _ in missing)
        raise MissingAssetsError(
            f"task {task!r} cannot run: its ManiSkill assets are not downloaded\n"
            + "\n".join(lines)
            + f"\ndownload them (needs internet, MS_ASSET_DIR picks the folder) with:\n  {commands}"
        )


@dataclass(frozen=True)
class ActionMapping:
    """Policy action (7,) -> env action (7,), from the env's controller limits (module docstring)."""

    arm_normalized: bool
    pos_low: float
    pos_high: float
    rot_lower: float
    gripper_normalized: bool
    gripper_low: float
    gripper_high: float
    scale: float = 1.0

    @classmethod
    def from_env(cls, env: Any, scale: float = 1.0) -> ActionMapping:
        configs = env.unwrapped.agent.controller.configs
        arm, gripper = configs["arm"], configs["gripper"]
        return cls(
            arm_normalized=bool(arm.normalize_action),
            pos_low=float(np.min(arm.pos_lower)),
            pos_high=float(np.max(arm.pos_upper)),
            rot_lower=float(np.min(arm.rot_lower)),
            gripper_normalized=bool(gripper.normalize_action),
            gripper_low=float(np.min(gripper.lower)),
            gripper_high=float(np.max(gripper.upper)),
            scale=scale,
        )

    def __call__(self, action: np.ndarray) -> np.ndarray:
        a = np.asarray(action, np.float64)
        pos, rot, g = a[:3] * self.scale, a[3:6] * self.scale, float(np.clip(a[6], 0.0, 1.0))
        if self.arm_normalized:
            pos = np.clip(2 * (pos - self.pos_low) / (self.pos_high - self.pos_low) - 1, -1, 1)
            rot = rot / self.rot_lower
        if self.gripper_normalized:
            grip = 2 * g - 1
        else:
            grip = self.gripper_low + g * (self.gripper_high - self.gripper_low)
        return np.concatenate([pos, rot, [grip]]).astype(np.float32)


@dataclass
class ClosedLoopConfig:
    """One evaluation run. `variant`, `buffer`, `checkpoint` label the run in comparison tables
    (taken from `policy_kwargs` when left empty). `max_steps` replaces the task setup's step limit
    (Panda tasks: 80 policy steps at 10 Hz; Bridge tasks: ManiSkill's 60) when given;
    `image_size` its camera size (None: the setup's 224). Episode k runs seed `seed + k`; the
    default seed starts the held-out evaluation range, which no training dataset holds.

    Parallel runs (`stvla_core.evaluation.sharding`): the episodes split into shards of at most
    `shard_episodes` episodes of one task, run by `workers` processes at once (0: the CPU count
    with the `local` executor, the cluster's CPUs with `ray`), each shard reserving `shard_cpus`
    CPUs and `shard_gpus` GPUs on a Ray cluster. These settings change the wall time only: the
    same seeds give the same episodes."""

    tasks: list[str] = field(default_factory=lambda: ["PickCube-v1"])
    policy: str = "zero"
    policy_kwargs: dict[str, Any] = field(default_factory=dict)
    episodes_per_task: int = 10
    max_steps: int | None = None
    seed: int = EVAL_SEED_START
    image_size: int | None = None
    action_scale: float = 1.0
    record_video: bool = True
    render_backend: str = "gpu"
    run_name: str = ""
    variant: str = ""
    buffer: int | None = None
    checkpoint: str = ""
    workers: int = 0
    executor: str = "local"
    shard_episodes: int = 1
    shard_cpus: float = 1.0
    shard_gpus: float = 0.0

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ValueError("tasks: expected at least one task, found none")
        for t in self.tasks:
            task_spec(t)
        if self.policy not in POLICIES:
            raise ValueError(f"policy: expected one of {', '.join(POLICIES.names())}, found {self.policy!r}")
        if self.episodes_per_task < 1:
            raise ValueError(f"episodes_per_task: expected >= 1, found {self.episodes_per_task}")
        if self.image_size is not None and self.image_size < 1:
            raise ValueError(f"image_size: expected >= 1 or None, found {self.image_size}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps: expected >= 1 or None, found {self.max_steps}")
        if self.workers < 0:
            raise ValueError(f"workers: expected >= 0 (0 = as many as there are CPUs), found {self.workers}")
        if self.executor not in SHARD_EXECUTORS:
            raise ValueError(
                f"executor: expected one of {', '.join(SHARD_EXECUTORS.names())}, found {self.executor!r}"
            )
        if self.shard_episodes < 1:
            raise ValueError(f"shard_episodes: expected >= 1, found {self.shard_episodes}")
        if self.shard_cpus <= 0 or self.shard_gpus < 0:
            raise ValueError(
                f"shard_cpus, shard_gpus: expected > 0 and >= 0, found {self.shard_cpus}, {self.shard_gpus}"
            )

    def labels(self) -> dict[str, Any]:
        kw = self.policy_kwargs
        return {
            "run": self.run_name or self.policy,
            "policy": self.policy,
            "variant": self.variant or str(kw.get("variant", "")),
            "buffer": self.buffer if self.buffer is not None else kw.get("buffer"),
            "checkpoint": self.checkpoint or str(kw.get("checkpoint", "")),
        }


@dataclass
class EpisodeResult:
    task: str
    episode: int
    seed: int
    instruction: str
    success: bool  # succeeded at any step (tasks end on success)
    success_at_end: bool
    length: int  # env steps taken
    seconds: float
    video: str  # path relative to the results folder, "" when not recorded


def make_env(spec: TaskSpec, config: ClosedLoopConfig) -> Any:
    """The task's env as `stvla_core.sim.tasks` sets it up (the demonstrations' camera, image size
    and control rate), with the run's step limit and, if given, another image size."""
    return make_task_env(
        spec,
        image_size=config.image_size,
        max_steps=config.max_steps,
        render_backend=config.render_backend,
    )


def default_step_limit(task: str) -> int:
    """Policy steps per episode of the task's setup (else ManiSkill's registered limit)."""
    return step_limit(task_spec(task))


def observation(obs: dict, camera: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(H, W, 3) uint8 RGB and (H, W) float32 metres (or None) of env 0's camera."""
    data = obs["sensor_data"][camera]
    rgb = np.ascontiguousarray(_numpy(data["rgb"])[0, ..., :3]).astype(np.uint8)
    if "depth" not in data:
        return rgb, None
    depth = _numpy(data["depth"])[0, ..., 0].astype(np.float32) / 1000.0
    return rgb, np.maximum(depth, 0.0)


def camera_intrinsics(obs: dict, camera: str) -> np.ndarray:
    """(3, 3) float32 pinhole matrix of env 0's camera, in pixels of its images."""
    return _numpy(obs["sensor_param"][camera]["intrinsic_cv"])[0].astype(np.float32)


def _numpy(x: Any) -> np.ndarray:
    return x.cpu().numpy() if hasattr(x, "cpu") else np.asarray(x)


def _first_bool(v: Any) -> bool:
    """Env 0's value of a flag that ManiSkill returns as a (num_envs,) tensor."""
    return bool(_numpy(v).reshape(-1)[0])


def write_video(path: Path, frames: list[np.ndarray], fps: float) -> Path:
    """H.264 mp4 via PyAV, written to a temporary name and renamed when complete."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial.mp4")
    h, w = frames[0].shape[:2]
    try:
        with av.open(str(tmp), mode="w") as container:
            stream = container.add_stream("libx264", rate=int(round(fps)))
            stream.width, stream.height = w - w % 2, h - h % 2  # yuv420p needs even sizes
            stream.pix_fmt = "yuv420p"
            for f in frames:
                frame = av.VideoFrame.from_ndarray(
                    np.ascontiguousarray(f[: h - h % 2, : w - w % 2]), format="rgb24"
                )
                container.mux(stream.encode(frame))
            container.mux(stream.encode())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)
    return path


def run_episode(
    env: Any,
    spec: TaskSpec,
    policy: Policy,
    mapping: ActionMapping,
    *,
    seed: int,
    max_steps: int,
    policy_name: str,
    frames: list[np.ndarray] | None = None,
    on_step: Callable[[int], None] | None = None,
) -> tuple[str, bool, bool, int]:
    """One episode; returns (instruction, success, success_at_end, length). Appends the camera
    frames the policy saw to `frames` when given; calls `on_step(steps_done)` after each step."""
    obs, info = env.reset(seed=seed)
    instruction = spec.instruction or env.unwrapped.get_language_instruction()
    if not isinstance(instruction, str):  # one per parallel env
        instruction = instruction[0]
    reset_policy(policy, instruction, camera_intrinsics(obs, spec.camera))
    rgb, depth = observation(obs, spec.camera)
    if frames is not None:
        frames.append(rgb)
    success = success_at_end = False
    steps = 0
    for steps in range(1, max_steps + 1):
        action = check_action(policy.step(rgb, depth), policy_name, steps - 1)
        with warnings.catch_warnings():
            # ManiSkill 3.0.1 calls np.isnan on a torch tensor each step (NumPy 2 deprecation noise)
            warnings.filterwarnings("ignore", "__array_wrap__ must accept context", DeprecationWarning)
            obs, _, terminated, truncated, info = env.step(mapping(action))
        rgb, depth = observation(obs, spec.camera)
        if frames is not None:
            frames.append(rgb)
        success_at_end = _first_bool(info.get("success", False))
        success = success or success_at_end
        if on_step is not None:
            on_step(steps)
        if _first_bool(terminated) or _first_bool(truncated):
            break
    return instruction, success, success_at_end, steps


def play_episode(
    env: Any,
    task: str,
    policy: Policy,
    config: ClosedLoopConfig,
    k: int,
    out_dir: Path,
    on_step: Callable[[int], None] | None = None,
) -> EpisodeResult:
    """Episode k of `task` (seed `config.seed + k`) with its video written to `out_dir`."""
    spec, seed = task_spec(task), config.seed + k
    frames: list[np.ndarray] | None = [] if config.record_video else None
    start = time.perf_counter()
    instruction, success, at_end, length = run_episode(
        env,
        spec,
        policy,
        ActionMapping.from_env(env, config.action_scale),
        seed=seed,
        max_steps=config.max_steps or default_step_limit(task),
        policy_name=config.policy,
        frames=frames,
        on_step=on_step,
    )
    seconds = time.perf_counter() - start
    video = ""
    if frames:
        video = f"videos/{task}_ep{k:03d}_seed{seed}.mp4"
        fps = float(spec.control_freq or getattr(env.unwrapped, "control_freq", 20))
        write_video(out_dir / video, frames, fps)
    return EpisodeResult(task, k, seed, instruction, success, at_end, length, seconds, video)


def evaluate_closed_loop(
    config: ClosedLoopConfig,
    out_dir: str | Path,
    policy: Policy | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> dict[str, Any]:
    """Runs every task (assets checked for all tasks before any env is built), writes videos and
    results to `out_dir`, returns the results dict (also in results.json). Episodes already in
    `out_dir` from an earlier run of the same settings are kept, not run again; the others run
    in parallel shards (`config.workers`), or in this process when one worker suffices or a
    `policy` object is given."""
    from stvla_core.evaluation.sharding import evaluate_runs

    return evaluate_runs([(config, Path(out_dir))], policy=policy, progress=progress)[0]
