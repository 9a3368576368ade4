"""Evaluation as job kinds (registered in stvla_core/jobs/kinds.py): each writes into its job
folder and returns a small JSON summary as the job's result."""

from __future__ import annotations

from typing import Any

from stvla_core.evaluation.closed_loop import ClosedLoopConfig, evaluate_closed_loop
from stvla_core.evaluation.comparison import ComparisonConfig, run_comparison
from stvla_core.evaluation.offline import OfflineConfig, evaluate_offline_to
from stvla_core.jobs.kinds import JobContext


def run_offline(config: OfflineConfig, ctx: JobContext) -> dict[str, Any]:
    ctx.log.info("offline evaluation of policy %r on %d episode(s)", config.policy, len(config.episodes))
    return evaluate_offline_to(config, ctx.dir, progress=ctx.progress)


def run_closed_loop(config: ClosedLoopConfig, ctx: JobContext) -> dict[str, Any]:
    ctx.log.info(
        "closed-loop evaluation of policy %r: %s x %d episode(s)",
        config.policy,
        ", ".join(config.tasks),
        config.episodes_per_task,
    )
    results = evaluate_closed_loop(config, ctx.dir, progress=ctx.progress)
    for task, s in results["summary"].items():
        ctx.log.info("%s: success %.0f%% over %d episode(s)", task, 100 * s["success_rate"], s["episodes"])
    return {"labels": results["labels"], "summary": results["summary"], "results": "results.json"}


def run_comparison_job(config: ComparisonConfig, ctx: JobContext) -> dict[str, Any]:
    ctx.log.info(
        "comparison of %d policy setting(s) (%s): %s x %d episode(s)",
        len(config.settings),
        ", ".join(str(s.get("label")) for s in config.settings),
        ", ".join(config.tasks),
        config.episodes_per_task,
    )
    result = run_comparison(config, ctx.dir, progress=ctx.progress)
    for row in result["table"]:
        ctx.log.info(
            "%s: %s", row["setting"], "; ".join(f"{k} {v}" for k, v in row.items() if k != "setting")
        )
    return result
