"""Evaluation of policies: offline action error on held-out episodes, closed-loop success in
ManiSkill3 tasks, and tables comparing runs. The simulator is imported only when a run starts."""

from stvla_core.evaluation.closed_loop import (
    BRIDGE_TASKS,
    PANDA_TASKS,
    TASKS,
    ActionMapping,
    ClosedLoopConfig,
    MissingAssetsError,
    check_task_assets,
    evaluate_closed_loop,
)
from stvla_core.evaluation.offline import (
    OfflineConfig,
    action_errors,
    error_by_step,
    error_summary,
    plot_actions,
    plot_error_per_dim,
    plot_error_per_step,
)
from stvla_core.evaluation.policies import POLICIES, Policy, PolicyOutputError, make_policy
from stvla_core.evaluation.results import (
    compare_runs,
    episodes_table,
    load_results,
    plot_success,
    to_markdown,
)

__all__ = [
    "BRIDGE_TASKS",
    "PANDA_TASKS",
    "POLICIES",
    "TASKS",
    "ActionMapping",
    "ClosedLoopConfig",
    "MissingAssetsError",
    "OfflineConfig",
    "Policy",
    "PolicyOutputError",
    "action_errors",
    "check_task_assets",
    "compare_runs",
    "episodes_table",
    "error_by_step",
    "error_summary",
    "evaluate_closed_loop",
    "load_results",
    "make_policy",
    "plot_actions",
    "plot_error_per_dim",
    "plot_error_per_step",
    "plot_success",
    "to_markdown",
]
