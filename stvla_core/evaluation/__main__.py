"""Command line for evaluation.

python -m stvla_core.evaluation tasks
python -m stvla_core.evaluation closed-loop --tasks PickCube-v1 PushCube-v1 --episodes 10 --out runs/zero
python -m stvla_core.evaluation offline --episodes assets/episodes/*.npz --policy zero --out runs/offline
python -m stvla_core.evaluation compare runs/zero runs/stvla-C-30 [--csv table.csv]
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from stvla_core.evaluation.closed_loop import (
    EVAL_SEED_START,
    TASKS,
    ClosedLoopConfig,
    MissingAssetsError,
    download_command,
)
from stvla_core.evaluation.offline import OfflineConfig
from stvla_core.evaluation.policies import POLICIES
from stvla_core.evaluation.results import ResultsError, compare_runs, to_markdown
from stvla_core.jobs.kinds import JobConfigError, config_from_dict


def _json(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, found {text!r}")
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
    cl.add_argument("--out", required=True, help="results folder")

    off = sub.add_parser("offline", help="action error of a policy on recorded episodes")
    off.add_argument("--episodes", nargs="+", required=True, metavar="PATH")
    off.add_argument("--policy", default="zero")
    off.add_argument("--policy-kwargs", type=_json, default={}, metavar="JSON")
    off.add_argument("--no-depth", action="store_true", help="give the policy depth=None")
    off.add_argument("--max-steps", type=int, default=None)
    off.add_argument("--out", required=True, help="results folder")

    cmp_ = sub.add_parser("compare", help="success-rate table across runs")
    cmp_.add_argument("runs", nargs="+", metavar="RUN_DIR")
    cmp_.add_argument("--csv", default=None, help="also write the table here")
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


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "tasks":
            _tasks()
        elif args.command == "closed-loop":
            from stvla_core.evaluation.closed_loop import evaluate_closed_loop

            config = config_from_dict(
                ClosedLoopConfig,
                {
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
                },
                where="closed-loop",
            )
            results = evaluate_closed_loop(
                config, args.out, progress=lambda f, m: print(f"[{100 * f:5.1f}%] {m}", flush=True)
            )
            print(to_markdown(compare_runs([results])))
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
            table = compare_runs(args.runs)
            print(to_markdown(table))
            if args.csv:
                table.to_csv(args.csv)
    except (MissingAssetsError, JobConfigError, ResultsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
