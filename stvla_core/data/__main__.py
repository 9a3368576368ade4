"""Command line for demonstration datasets.

python -m stvla_core.data generate --out data/stvla-sim --episodes 200 --workers 2
"""

from __future__ import annotations

import argparse
import json
import sys

from stvla_core.data.generate import DEFAULT_TASKS, GenerateConfig, generate


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m stvla_core.data", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="record scripted demonstrations as a LeRobot v3.0 dataset")
    g.add_argument("--out", required=True, help="dataset folder (must not hold a dataset yet)")
    g.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS), metavar="TASK")
    g.add_argument("--episodes", type=int, default=200, help="successful demonstrations per task (at least)")
    g.add_argument("--shard-size", type=int, default=25, help="seeds per shard")
    g.add_argument("--workers", type=int, default=2)
    g.add_argument("--crf", type=int, default=23, help="H.264 quality of the RGB video")
    g.add_argument("--max-frames", type=int, default=120)
    g.add_argument(
        "--seed-start", type=int, default=0, help="first training seed (below the evaluation range)"
    )
    g.add_argument(
        "--perturb-m",
        type=float,
        default=0.0,
        help="DART-style noise: std (m per axis) added to perturbed actions; the expert's corrections are recorded",
    )
    g.add_argument("--perturb-prob", type=float, default=0.0, help="fraction of actions perturbed")
    args = p.parse_args(argv)
    config = GenerateConfig(
        out=args.out,
        tasks=args.tasks,
        episodes_per_task=args.episodes,
        shard_size=args.shard_size,
        workers=args.workers,
        crf=args.crf,
        max_frames=args.max_frames,
        seed_start=args.seed_start,
        perturb_m=args.perturb_m,
        perturb_prob=args.perturb_prob,
    )
    try:
        summary = generate(config)
    except (ValueError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary["expert"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
