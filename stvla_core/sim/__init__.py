"""The simulated task setup shared by demonstration recording and closed-loop evaluation: which
env, camera, image size, control mode and control rate. One definition, so a policy trained on
the recorded demonstrations is evaluated on exactly what it was trained on."""

from stvla_core.sim.tasks import (
    BRIDGE_TASKS,
    PANDA_TASKS,
    TASKS,
    CameraSetup,
    TaskSpec,
    make_env,
    task_spec,
)

__all__ = ["BRIDGE_TASKS", "PANDA_TASKS", "TASKS", "CameraSetup", "TaskSpec", "make_env", "task_spec"]
