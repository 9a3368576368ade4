"""Command line for full training of ST-VLA-S.

python -m stvla_core.train prepare --dataset data/stvla-sim --out data/stvla-sim-pack --modes none raw A B C C@7
python -m stvla_core.train decode --pack data/stvla-sim-pack     (frames.npy, shared by parallel runs)
python -m stvla_core.train merge data/clean-pack data/perturbed-pack --out data/both-pack
python -m stvla_core.train run --pack data/stvla-sim-pack --run-dir runs/stvla-s [--steps 6000 ...]
python -m stvla_core.train run --config runs/stvla-s/config.json     (resume, or rerun a config)
python -m stvla_core.train rows --config recipe.json --modes none raw C --runs-root runs/ablation
    [--time-budget-s 480 | --steps 2000] [--bundle OUT]    (one run per depth input, in parallel)
python -m stvla_core.train unbundle OUT/part-*.bin --dest runs/ablation
python -m stvla_core.train record runs/ablation/* --dest results/ablation
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

from stvla_core.traces import TraceConfig
from stvla_core.train.config import TrainConfig
from stvla_core.train.pack import DEPTH_MODES, PackConfig, decode_frames, merge_packs, prepare_pack


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m stvla_core.train", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    pr = sub.add_parser("prepare", help="traced depth of every step of a LeRobot dataset, as a training pack")
    pr.add_argument("--dataset", required=True)
    pr.add_argument("--out", required=True)
    pr.add_argument(
        "--modes",
        nargs="+",
        default=["C"],
        metavar="MODE",
        help=f"depth inputs: {', '.join(DEPTH_MODES)}; a variant over another buffer as C@7",
    )
    pr.add_argument("--buffer", type=int, default=30)
    pr.add_argument("--tracker", default="lk")
    pr.add_argument(
        "--tracker-options", type=json.loads, default={}, metavar="JSON", help="e.g. '{\"dense_stride\": 8}'"
    )
    pr.add_argument("--val-fraction", type=float, default=0.05)
    pr.add_argument("--workers", type=int, default=2)
    de = sub.add_parser("decode", help="decode a pack's videos once into frames.npy, for parallel runs")
    de.add_argument("--pack", required=True)
    de.add_argument("--workers", type=int, default=None)
    me = sub.add_parser("merge", help="one pack from several packs of one camera and trace setup")
    me.add_argument("packs", nargs="+")
    me.add_argument("--out", required=True)
    me.add_argument("--modes", nargs="+", default=None, help="default: the depth modes every pack holds")
    ro = sub.add_parser("rows", help="one run per depth input at equal budget, in parallel on one GPU")
    ro.add_argument("--config", required=True, help="the recipe: a TrainConfig JSON file")
    ro.add_argument("--modes", nargs="+", required=True, metavar="MODE")
    ro.add_argument("--runs-root", required=True)
    ro.add_argument("--pack", help="overrides the recipe's pack")
    ro.add_argument("--steps", type=int, help="fixed steps (drops the recipe's time budget)")
    ro.add_argument("--time-budget-s", type=float, help="overrides the recipe's time budget")
    ro.add_argument("--bundle", help="also write the runs as compressed parts of <= 16 MB to this folder")
    rec = sub.add_parser("record", help="a run's configs, metrics, log and a model card, without weights")
    rec.add_argument("runs", nargs="+")
    rec.add_argument("--dest", required=True, help="one folder per run is made in it")
    un = sub.add_parser("unbundle", help="restore runs from the parts `rows --bundle` wrote")
    un.add_argument("parts", nargs="+")
    un.add_argument("--dest", required=True)
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


def _rows(args: argparse.Namespace) -> int:
    from stvla_core.train import rows

    if args.command == "record":
        for run in args.runs:
            print(f"wrote {rows.record(run, Path(args.dest) / Path(run).name)}")
        return 0
    if args.command == "unbundle":
        print("restored " + ", ".join(rows.unbundle([Path(p) for p in args.parts], args.dest)))
        return 0
    recipe = TrainConfig.from_json(args.config)
    if args.pack:
        recipe.pack = args.pack
    if args.steps:
        recipe.steps, recipe.time_budget_s = args.steps, 0.0
    if args.time_budget_s:
        recipe.time_budget_s = args.time_budget_s
    summaries = rows.train_rows(recipe, list(args.modes), args.runs_root)
    print(rows.table(summaries))
    if args.bundle:
        parts = rows.bundle([rows.row_dir(args.runs_root, m) for m in args.modes], args.bundle)
        print(f"bundled {len(parts)} parts into {args.bundle}")
    return 0


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
        if args.command in ("rows", "unbundle", "record"):
            return _rows(args)
        if args.command == "merge":
            print(f"wrote {merge_packs(args.packs, args.out, args.modes)}")
            return 0
        if args.command == "decode":
            print(f"wrote {decode_frames(args.pack, args.workers)}")
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
