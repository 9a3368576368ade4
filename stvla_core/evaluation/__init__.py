"""Evaluation of policies: offline action error on held-out episodes, closed-loop success in
ManiSkill3 tasks (sharded over local processes or Ray actors), comparison runs and the tables
comparing runs. The simulator is imported only when a run starts."""

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
from stvla_core.evaluation.comparison import ComparisonConfig, run_comparison
from stvla_core.evaluation.executors import SHARD_EXECUTORS, ShardExecutor
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
    comparison_cells,
    comparison_table,
    episodes_table,
    load_results,
    plot_success,
    to_markdown,
    wilson_interval,
    write_comparison,
)

__all__ = [
    "BRIDGE_TASKS",
    "PANDA_TASKS",
    "POLICIES",
    "SHARD_EXECUTORS",
    "TASKS",
    "ActionMapping",
    "ClosedLoopConfig",
    "ComparisonConfig",
    "MissingAssetsError",
    "OfflineConfig",
    "Policy",
    "PolicyOutputError",
    "ShardExecutor",
    "action_errors",
    "check_task_assets",
    "compare_runs",
    "comparison_cells",
    "comparison_table",
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
    "run_comparison",
    "to_markdown",
    "wilson_interval",
    "write_comparison",
]
