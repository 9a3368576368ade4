"""Command line for full training of ST-VLA-S.

python -m stvla_core.train prepare --dataset data/stvla-sim --out data/stvla-sim-pack --modes C
python -m stvla_core.train run --pack data/stvla-sim-pack --run-dir runs/stvla-s [--steps 6000 ...]
python -m stvla_core.train run --config runs/stvla-s/config.json     (resume, or rerun a config)
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields

from stvla_core.traces import TraceConfig
from stvla_core.train.config import TrainConfig
from stvla_core.train.pack import DEPTH_MODES, PackConfig, prepare_pack


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m stvla_core.train", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    pr = sub.add_parser("prepare", help="traced depth of every step of a LeRobot dataset, as a training pack")
    pr.add_argument("--dataset", required=True)
    pr.add_argument("--out", required=True)
    pr.add_argument("--modes", nargs="+", default=["C"], choices=DEPTH_MODES)
    pr.add_argument("--buffer", type=int, default=30)
    pr.add_argument("--tracker", default="lk")
    pr.add_argument(
        "--tracker-options", type=json.loads, default={}, metavar="JSON", help="e.g. '{\"dense_stride\": 8}'"
    )
    pr.add_argument("--val-fraction", type=float, default=0.05)
    pr.add_argument("--workers", type=int, default=2)
    run = sub.add_parser("run", help="train (or resume) a run")
    run.add_argument("--config", help="a TrainConfig JSON file; flags below override it")
    for f in fields(TrainConfig):
        kind = {bool: None, int: int, float: float}.get(type(f.default), str)
        flag = "--" + f.name.replace("_", "-")
        if kind is None:
            run.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes"), default=None)
        else:
            run.add_argument(flag, type=kind, default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "prepare":
            trace = TraceConfig(
                buffer=args.buffer, tracker=args.tracker, tracker_options=args.tracker_options
            )
            out = prepare_pack(
                PackConfig(
                    args.dataset, args.out, trace, list(args.modes), args.val_fraction, workers=args.workers
                )
            )
            print(f"wrote {out}")
            return 0
        base = TrainConfig.from_json(args.config).to_dict() if args.config else {}
        base.update(
            {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name) is not None}
        )
        config = TrainConfig.from_dict(base)
        from stvla_core.runs import RunInUseError
        from stvla_core.train.trainer import train

        summary = train(config)
    except (ValueError, FileExistsError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RunInUseError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
