"""One definition of every simulated task: env id, robot, camera, image size, control mode,
control rate, step limit and instruction. Demonstration recording (`stvla_core.sim.expert`,
`python -m stvla_core.data generate`) and closed-loop evaluation both build their envs with
`make_env`, so the two cannot drift apart.

Panda table-top tasks (ManiSkill3's own assets): one fixed 224x224 camera looking at the table
from the front-right (eye (0.46, -0.46, 0.56) m, target (0, 0, 0.10) m, vertical fov 0.65 rad),
framed as tightly as the whole workspace allows: every cube spawn, PickCube goal, pull target and
the gripper's start stay at least 12 px inside the picture (checked over 100 seeds per task), and
a cube is ~20 px wide (the earlier, wider camera of round 1 gave ~15 px: ST-VLA-S then placed the
gripper a patch beside the cube); `pd_ee_target_delta_pose` at 10 Hz (one
policy action per env step, ManiSkill's 20 Hz default halved so a step moves visibly and renders
once). PickCube's goal marker is shown to the camera: ManiSkill hides it from sensors, and a
policy that sees only images could not know where to take the cube.

Bridge (WidowX) tasks keep SimplerEnv's camera and 5 Hz rate; they need ManiSkill's real-to-sim
assets (`assets`), which must be downloaded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CameraSetup:
    """A fixed camera by where it is and what it looks at (world metres, vertical fov radians)."""

    eye: tuple[float, float, float]
    target: tuple[float, float, float]
    fov: float


@dataclass(frozen=True)
class TaskSpec:
    env_id: str
    robot: str
    obs_mode: str
    camera: str  # the sensor the policy sees
    control_mode: str
    instruction: str | None = None  # None: the env's own get_language_instruction()
    assets: tuple[str, ...] = ()  # ManiSkill data source ids that must be downloaded
    camera_setup: CameraSetup | None = None  # None: the env's own camera pose
    image_size: int = 224
    control_freq: int | None = None  # env steps (= policy actions) per second; None: the env's own
    max_steps: int | None = None  # policy steps per episode; None: the env's registered limit
    shown: tuple[str, ...] = ()  # objects the env hides from sensors that this setup shows


# Seeds: demonstrations are recorded from TRAIN_SEED_START up, closed-loop evaluation runs from
# EVAL_SEED_START up; a dataset never holds an evaluation seed.
TRAIN_SEED_START = 0
EVAL_SEED_START = 100_000

PANDA_CAMERA = CameraSetup(eye=(0.46, -0.46, 0.56), target=(0.0, 0.0, 0.10), fov=0.65)
_PANDA = {
    "robot": "panda",
    "obs_mode": "rgb+depth",
    "camera": "base_camera",
    "control_mode": "pd_ee_target_delta_pose",
    "camera_setup": PANDA_CAMERA,
    "control_freq": 10,
}
_BRIDGE = {
    "robot": "widowx",
    "obs_mode": "rgb+segmentation",
    "camera": "3rd_view_camera",
    "control_mode": "arm_pd_ee_target_delta_pose_align2_gripper_pd_joint_pos",
    "assets": ("bridge_v2_real2sim", "widowx250s"),
}
TASKS: dict[str, TaskSpec] = {
    t.env_id: t
    for t in (
        TaskSpec(
            "PickCube-v1",
            instruction="pick up the red cube and move it to the green goal",
            max_steps=80,
            shown=("goal_site",),
            **_PANDA,
        ),
        TaskSpec(
            "PushCube-v1", instruction="push the cube to the red and white target", max_steps=80, **_PANDA
        ),
        TaskSpec(
            "PullCube-v1",
            instruction="pull the cube back to the red and white target",
            max_steps=80,
            **_PANDA,
        ),
        TaskSpec("StackCube-v1", instruction="stack the red cube on the green cube", max_steps=100, **_PANDA),
        TaskSpec("PutSpoonOnTableClothInScene-v1", **_BRIDGE),
        TaskSpec("PutCarrotOnPlateInScene-v1", **_BRIDGE),
        TaskSpec("StackGreenCubeOnYellowCubeBakedTexInScene-v1", **_BRIDGE),
        TaskSpec("PutEggplantInBasketScene-v1", **_BRIDGE),
    )
}
BRIDGE_TASKS = tuple(k for k, t in TASKS.items() if t.robot == "widowx")
PANDA_TASKS = tuple(k for k, t in TASKS.items() if t.robot == "panda")


def task_spec(task: str) -> TaskSpec:
    try:
        return TASKS[task]
    except KeyError:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}") from None


def step_limit(spec: TaskSpec) -> int:
    """Policy steps per episode: the setup's own, else the limit ManiSkill registers."""
    if spec.max_steps is not None:
        return spec.max_steps
    from mani_skill.utils.registration import REGISTERED_ENVS

    return int(REGISTERED_ENVS[spec.env_id].max_episode_steps)


def _show_objects(env: Any, names: tuple[str, ...]) -> Any:
    """`env` wrapped so that the named objects are visible to sensors after every reset (ManiSkill
    hides them again whenever it rebuilds the scene); the reset observation is rendered again."""
    import gymnasium as gym

    class ShowObjects(gym.Wrapper):
        def reset(self, **kwargs: Any) -> Any:
            _, info = self.env.reset(**kwargs)
            base = self.env.unwrapped
            for obj in base._hidden_objects:
                if obj.name in names:
                    obj.show_visual()
            base._hidden_objects = [o for o in base._hidden_objects if o.name not in names]
            return base.get_obs(info), info

    return ShowObjects(env)


def make_env(
    spec: TaskSpec | str,
    *,
    obs_mode: str | None = None,
    image_size: int | None = None,
    max_steps: int | None = None,
    render_backend: str = "gpu",
) -> Any:
    """The gymnasium env of a task, set up as `spec` says. `obs_mode` adds to what the policy
    needs (recording asks for segmentation too); `max_steps` overrides the step limit; `image_size`
    overrides the camera size (evaluation of a model trained at another size)."""
    import gymnasium as gym
    import mani_skill.envs  # noqa: F401  (registers the tasks)

    spec = task_spec(spec) if isinstance(spec, str) else spec
    size = image_size or spec.image_size
    sensor: dict[str, Any] = {"width": size, "height": size}
    if spec.camera_setup is not None:
        from mani_skill.utils import sapien_utils

        cam = spec.camera_setup
        sensor = {
            spec.camera: {
                "pose": sapien_utils.look_at(eye=list(cam.eye), target=list(cam.target)),
                "width": size,
                "height": size,
                "fov": cam.fov,
            }
        }
    kwargs: dict[str, Any] = {}
    if spec.control_freq is not None:
        kwargs["sim_config"] = {"control_freq": spec.control_freq}
    env = gym.make(
        spec.env_id,
        num_envs=1,
        obs_mode=obs_mode or spec.obs_mode,
        control_mode=spec.control_mode,
        sensor_configs=sensor,
        render_backend=render_backend,
        sim_backend="cpu",
        max_episode_steps=max_steps or step_limit(spec),
        **kwargs,
    )
    return _show_objects(env, spec.shown) if spec.shown else env
