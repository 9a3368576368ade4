"""The `finetune` job kind: the job's config is a FinetuneConfig. A relative run_dir goes inside the
job's own folder, so jobs keep their checkpoints apart; an absolute one shared by a later job makes
that job resume the run of an earlier, killed one (from its newest complete checkpoint)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stvla_core.finetune.config import FinetuneConfig
from stvla_core.finetune.trainer import train


def run(config: FinetuneConfig, ctx: Any) -> dict[str, Any]:
    """`ctx` is a stvla_core.jobs.kinds.JobContext (dir, log, progress)."""
    if not Path(config.run_dir).is_absolute():
        config.run_dir = str(Path(ctx.dir) / config.run_dir)

    def progress(fraction: float, message: str) -> None:
        ctx.log.info("%s", message)
        ctx.progress(fraction, message)

    result = train(config, progress)
    return {**result.summary, "run_dir": str(result.run_dir)}
