"""Command line: traced depth maps and overlays for every step of an episode.

python -m stvla_core.traces EPISODE --variant C --tracker lk --depth episode --buffer 30 --out DIR

Writes DIR/step_XXXX_<variant>.png (colourised, one colour scale for the whole episode),
DIR/step_XXXX_overlay.png, and DIR/traced.npz holding `traced_<variant>` (T, H, W) float32 metres
and `depth` (T, H, W). With --quality, prints the tracker and depth tables against ground truth
and writes them as CSV."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from stvla_core.depth import DEPTH_ESTIMATORS
from stvla_core.traces.draw import colorize_depth, depth_range
from stvla_core.traces.pipeline import TraceConfig, TracePipeline
from stvla_core.traces.render import VARIANTS
from stvla_core.tracking import TRACKERS


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m stvla_core.traces", description=__doc__.split("\n")[0])
    p.add_argument("episode", help="episode file or folder (any format load_episode reads)")
    p.add_argument("--variant", default="C", choices=[*VARIANTS, "all"])
    p.add_argument("--tracker", default="lk", help=f"one of {', '.join(TRACKERS.names())}")
    p.add_argument("--depth", default="episode", help=f"one of {', '.join(DEPTH_ESTIMATORS.names())}")
    p.add_argument("--depth-model", default=None, help="local folder or hub id for a model depth source")
    p.add_argument("--buffer", type=int, default=30)
    p.add_argument("--max-traces", type=int, default=5)
    p.add_argument("--thickness", type=int, default=2)
    p.add_argument("--nearest", default="min", choices=["min", "segmentation"])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--quality", action="store_true", help="also print/write quality tables")
    return p


def _write_png(path: Path, rgb: np.ndarray) -> None:
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from stvla_core.episodes import load_episode

    variants = list(VARIANTS) if args.variant == "all" else [args.variant]
    cfg = TraceConfig(
        buffer=args.buffer,
        tracker=args.tracker,
        depth=args.depth,
        variant=variants[0],
        max_traces=args.max_traces,
        line_thickness=args.thickness,
        nearest=args.nearest,
        depth_options={"model": args.depth_model} if args.depth_model else {},
    )
    try:
        cfg.validate()
        episode = load_episode(args.episode)
        pipe = TracePipeline(cfg)
    except (ValueError, KeyError, OSError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    frames = [pipe.at(episode, t) for t in tqdm(range(episode.num_frames), desc="tracing", unit="step")]
    vmin, vmax = depth_range(*[f.depth for f in frames])
    args.out.mkdir(parents=True, exist_ok=True)
    for f in frames:
        for v in variants:
            _write_png(args.out / f"step_{f.index:04d}_{v}.png", colorize_depth(f.traced[v], vmin, vmax))
        _write_png(args.out / f"step_{f.index:04d}_overlay.png", f.overlay)
    arrays = {f"traced_{v}": np.stack([f.traced[v] for f in frames]) for v in variants}
    arrays["depth"] = np.stack([f.depth for f in frames])
    fd, tmp = tempfile.mkstemp(suffix=".npz", dir=args.out)
    os.close(fd)
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, args.out / "traced.npz")
    print(f"wrote {len(frames)} steps x {len(variants)} variants to {args.out}")
    if args.quality:
        _quality(episode, pipe, args)
    return 0


def _quality(episode, pipe: TracePipeline, args: argparse.Namespace) -> None:  # type: ignore[no-untyped-def]
    from stvla_core.traces.quality import depth_quality, tracker_quality

    if episode.gt_points is not None:
        table = tracker_quality(episode, pipe.tracker, args.buffer)
        print(f"\ntracker {args.tracker} vs ground-truth points\n{table.to_string(index=False)}")
        table.to_csv(args.out / "tracker_quality.csv", index=False)
    else:
        print("\nno ground-truth points: tracker quality skipped")
    if episode.depth is not None and args.depth != "episode":
        table = depth_quality(episode, pipe.depth_estimator)
        print(f"\ndepth {args.depth} vs recorded depth\n{table.to_string(index=False)}")
        table.to_csv(args.out / "depth_quality.csv", index=False)
    else:
        print("\ndepth quality needs recorded depth and a model depth source (--depth zoedepth)")


if __name__ == "__main__":
    raise SystemExit(main())
