"""Command line for evaluation.

python -m stvla_core.evaluation tasks
python -m stvla_core.evaluation closed-loop --tasks PickCube-v1 PushCube-v1 --episodes 10 --out runs/zero [--workers 2]
python -m stvla_core.evaluation closed-loop --tasks PushCube-v1 --episodes 20 --settings settings.json --out runs/ablation
python -m stvla_core.evaluation offline --episodes assets/episodes/*.npz --policy zero --out runs/offline
python -m stvla_core.evaluation compare runs/ablation/*/ [--label none raw A B C] [--out runs/ablation]

`closed-loop` runs its episodes in parallel shards (`--workers`, default the CPU count; `--executor
ray` for a Ray cluster) and, run again with the same --out, keeps the episodes already there. With
`--settings` (a JSON list, or @FILE holding one, of {"label", "policy", "policy_kwargs"}) it
evaluates every setting on the same seeds and writes one comparison table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from stvla_core.evaluation.closed_loop import (
    EVAL_SEED_START,
    TASKS,
    ClosedLoopConfig,
    MissingAssetsError,
    download_command,
)
from stvla_core.evaluation.executors import SHARD_EXECUTORS, ExecutorUnavailableError
from stvla_core.evaluation.offline import OfflineConfig
from stvla_core.evaluation.policies import POLICIES
from stvla_core.evaluation.results import (
    ResultsError,
    comparison_cells,
    comparison_table,
    to_markdown,
    write_comparison,
)
from stvla_core.jobs.kinds import JobConfigError, config_from_dict


def _json(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, found {text!r}")
    return value


def _settings(text: str) -> list[Any]:
    """--settings: a JSON list, or @FILE holding one."""
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as e:
            raise argparse.ArgumentTypeError(f"cannot read {text[1:]}: {e.strerror}") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(
            f"expected a JSON list of settings, found {text!r} ({e.msg})"
        ) from None
    if not isinstance(value, list):
        raise argparse.ArgumentTypeError(f"expected a JSON list of settings, found {type(value).__name__}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m stvla_core.evaluation", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("tasks", help="list the tasks and whether their assets are present")

    cl = sub.add_parser("closed-loop", help="success rate of a policy in ManiSkill3 tasks")
    cl.add_argument("--tasks", nargs="+", default=["PickCube-v1"], metavar="TASK")
    cl.add_argument("--policy", default="zero", help=f"one of {', '.join(POLICIES.names())}")
    cl.add_argument("--policy-kwargs", type=_json, default={}, metavar="JSON")
    cl.add_argument("--episodes", type=int, default=10, help="episodes per task")
    cl.add_argument("--max-steps", type=int, default=None, help="default: the task's own limit")
    cl.add_argument(
        "--seed",
        type=int,
        default=EVAL_SEED_START,
        help="first episode seed (default: the held-out evaluation range)",
    )
    cl.add_argument("--image-size", type=int, default=None, help="default: the task setup's camera size")
    cl.add_argument("--action-scale", type=float, default=1.0)
    cl.add_argument("--no-video", action="store_true")
    cl.add_argument("--run-name", default="")
    cl.add_argument("--variant", default="")
    cl.add_argument("--buffer", type=int, default=None)
    cl.add_argument("--checkpoint", default="")
    cl.add_argument("--workers", type=int, default=0, help="shards run at once (default: the CPU count)")
    cl.add_argument("--executor", default="local", help=f"one of {', '.join(SHARD_EXECUTORS.names())}")
    cl.add_argument("--shard-episodes", type=int, default=1, help="episodes per shard")
    cl.add_argument("--shard-cpus", type=float, default=1.0, help="CPUs each shard reserves on Ray")
    cl.add_argument("--shard-gpus", type=float, default=0.0, help="GPUs each shard reserves on Ray")
    cl.add_argument(
        "--settings",
        type=_settings,
        default=None,
        metavar="JSON|@FILE",
        help="policy settings to compare on the same seeds: a list of "
        '{"label": ..., "policy": ..., "policy_kwargs": {...}}',
    )
    cl.add_argument("--out", required=True, help="results folder")

    off = sub.add_parser("offline", help="action error of a policy on recorded episodes")
    off.add_argument("--episodes", nargs="+", required=True, metavar="PATH")
    off.add_argument("--policy", default="zero")
    off.add_argument("--policy-kwargs", type=_json, default={}, metavar="JSON")
    off.add_argument("--no-depth", action="store_true", help="give the policy depth=None")
    off.add_argument("--max-steps", type=int, default=None)
    off.add_argument("--out", required=True, help="results folder")

    cmp_ = sub.add_parser("compare", help="success rates with 95%% intervals across finished runs")
    cmp_.add_argument("runs", nargs="+", metavar="RUN_DIR")
    cmp_.add_argument(
        "--label",
        nargs="+",
        default=None,
        help="row labels, one per run (default: run names); runs with one label are one row",
    )
    cmp_.add_argument(
        "--first", type=int, default=None, help="each row's first N episodes per task by seed (same seeds)"
    )
    cmp_.add_argument("--out", default=None, help="write comparison.md/.csv/.json into this folder")
    return p


def _tasks() -> None:
    from stvla_core.evaluation.closed_loop import missing_assets

    for name, spec in TASKS.items():
        missing = missing_assets(name)
        state = (
            "ready"
            if not missing
            else "missing assets: " + " && ".join(download_command(a) for a, _ in missing)
        )
        print(f"{name:48s} {spec.robot:7s} {state}")


def _closed_loop(fields: dict[str, Any], settings: list[Any] | None, out: str) -> None:
    def progress(fraction: float, message: str) -> None:
        print(f"[{100 * fraction:5.1f}%] {message}", flush=True)

    if settings is None:
        from stvla_core.evaluation.closed_loop import evaluate_closed_loop

        config = config_from_dict(ClosedLoopConfig, fields, where="closed-loop")
        results = evaluate_closed_loop(config, out, progress=progress)
        print(to_markdown(comparison_cells(comparison_table([results]))))
        return
    from stvla_core.evaluation.comparison import ComparisonConfig, run_comparison

    config = config_from_dict(
        ComparisonConfig, {**fields, "settings": settings}, where="closed-loop --settings"
    )
    run_comparison(config, out, progress=progress)
    print(Path(out, "comparison.md").read_text(), end="")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "tasks":
            _tasks()
        elif args.command == "closed-loop":
            fields = {
                "tasks": args.tasks,
                "policy": args.policy,
                "policy_kwargs": args.policy_kwargs,
                "episodes_per_task": args.episodes,
                "max_steps": args.max_steps,
                "seed": args.seed,
                "image_size": args.image_size,
                "action_scale": args.action_scale,
                "record_video": not args.no_video,
                "run_name": args.run_name,
                "variant": args.variant,
                "buffer": args.buffer,
                "checkpoint": args.checkpoint,
                "workers": args.workers,
                "executor": args.executor,
                "shard_episodes": args.shard_episodes,
                "shard_cpus": args.shard_cpus,
                "shard_gpus": args.shard_gpus,
            }
            _closed_loop(fields, args.settings, args.out)
        elif args.command == "offline":
            from stvla_core.evaluation.offline import evaluate_offline_to

            config = config_from_dict(
                OfflineConfig,
                {
                    "episodes": args.episodes,
                    "policy": args.policy,
                    "policy_kwargs": args.policy_kwargs,
                    "use_depth": not args.no_depth,
                    "max_steps": args.max_steps,
                },
                where="offline",
            )
            summary = evaluate_offline_to(config, args.out)
            print(json.dumps(summary, indent=2))
        else:
            table = comparison_table(args.runs, args.label, args.first)
            print(to_markdown(comparison_cells(table)))
            if args.out:
                write_comparison(args.out, table)
    except (MissingAssetsError, JobConfigError, ResultsError, ExecutorUnavailableError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
