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

from stvla_core.depth import DEPTH_ESTIMATORS, DepthUnavailableError
from stvla_core.episodes import Episode, EpisodeError, load_episode
from stvla_core.registry import UnknownNameError
from stvla_core.traces.draw import depth_range, draw_traced
from stvla_core.traces.pipeline import IGNORED_SEGMENTS, TraceConfig, TracedFrame, TracePipeline
from stvla_core.traces.render import VARIANTS, nearest_depth, valid_mask
from stvla_core.tracking import TRACKERS, TrackerUnavailableError


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


class _UserError(Exception):
    """What was asked cannot be done with this input: reported as one `error:` line, exit 2."""


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    variants = list(VARIANTS) if args.variant == "all" else [args.variant]
    cfg = TraceConfig(
        buffer=args.buffer,
        tracker=args.tracker,
        depth=args.depth,
        variant="C" if args.variant == "all" else args.variant,  # C is the one --nearest applies to
        max_traces=args.max_traces,
        line_thickness=args.thickness,
        nearest=args.nearest,
        depth_options={"model": args.depth_model} if args.depth_model else {},
    )
    try:
        cfg.validate()
    except (ValueError, UnknownNameError) as e:  # an option out of range, an unknown name
        return _error(e, 2)
    try:
        episode = load_episode(args.episode)
        pipe = TracePipeline(cfg)
        _check_episode(episode, pipe, args, variants)
        _out_folder(args.out)
        # the unavailable errors come from the first step that needs what the episode lacks; the
        # progress bar is closed before the error is printed, so the error has a line of its own
        with tqdm(range(episode.num_frames), desc="tracing", unit="step") as steps:
            frames = [pipe.at(episode, t) for t in steps]
    except (_UserError, EpisodeError, DepthUnavailableError, TrackerUnavailableError) as e:
        return _error(e, 2)
    try:
        _write(frames, variants, args.out)
    except OSError as e:  # the folder was writable a moment ago: a full disk, a removed folder
        return _error(e, 1)
    print(f"wrote {len(frames)} steps x {len(variants)} variants to {args.out}")
    if args.quality:
        _quality(episode, pipe, args)
    return 0


def _error(e: Exception, status: int) -> int:
    print("error: " + " ".join(str(e).split()), file=sys.stderr)
    return status


def _check_episode(
    episode: Episode, pipe: TracePipeline, args: argparse.Namespace, variants: list[str]
) -> None:
    """Refuse up front what would otherwise fail part-way through tracing or after it."""
    name = repr(episode.name)
    if args.quality and episode.num_frames < 2:
        raise _UserError(
            f"--quality follows ground-truth points across frames and needs an episode of at least 2 "
            f"frames; {name} has {episode.num_frames}"
        )
    segmentation = args.nearest == "segmentation" and "C" in variants
    if segmentation and episode.segmentation is None:
        raise _UserError(f"--nearest segmentation needs an episode with segmentation; {name} has none")
    if args.depth != "episode" or episode.depth is None:
        return  # a model's depth is known only once computed; no depth at all is the source's error
    empty = np.flatnonzero(~valid_mask(episode.depth).any(axis=(1, 2)))
    if empty.size:
        raise _UserError(
            f"--depth episode: {name} has no valid depth (all 0) on {empty.size} of {episode.num_frames} "
            f"frames, first frame {empty[0]}; choose a model depth source such as --depth zoedepth"
        )
    for t in range(episode.num_frames) if segmentation else ():
        try:
            nearest_depth(episode.depth[t], *pipe._segmentation(episode, t))
        except ValueError:
            raise _UserError(
                f"--nearest segmentation: frame {t} of {name} has no segmented object with valid depth "
                f"(ids 0 and {', '.join(IGNORED_SEGMENTS)} are ignored); use --nearest min"
            ) from None


def _out_folder(out: Path) -> None:
    """Create --out and prove it writable before tracing, not after."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out).close()
    except FileExistsError:
        raise _UserError(f"--out {str(out)!r}: expected a folder, found a file") from None
    except OSError as e:
        raise _UserError(f"--out {str(out)!r} cannot be written: {e.strerror or e}") from None


def _write(frames: list[TracedFrame], variants: list[str], out: Path) -> None:
    vmin, vmax = depth_range(*[f.depth for f in frames])
    for f in frames:
        for v in variants:
            _write_png(out / f"step_{f.index:04d}_{v}.png", draw_traced(f.traced[v], f.masks[v], vmin, vmax))
        _write_png(out / f"step_{f.index:04d}_overlay.png", f.overlay)
    arrays = {f"traced_{v}": np.stack([f.traced[v] for f in frames]) for v in variants}
    arrays["depth"] = np.stack([f.depth for f in frames])
    fd, tmp = tempfile.mkstemp(suffix=".npz", dir=out)
    os.close(fd)
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, out / "traced.npz")


def _quality(episode: Episode, pipe: TracePipeline, args: argparse.Namespace) -> None:
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
