"""Per-control-step cost of CoTracker3 on a rolling buffer of b frames, three ways in one run:

- full:    the naive re-track: encode all b frames, run the transformer over b frames;
- cached:  `cotracker3` with per-frame feature maps cached: encode 1 frame, transformer over b;
- chained: `cotracker3_chained`: encode 1 frame, transformer over hop + 1 frames, older frames by
           interpolating stored hops (stvla_core/tracking/cotracker3/chain.py).

Random weights of the full-size model (the cost does not depend on the weights; the agreement of
the paths does, and is measured in tests/test_cotracker3_chain.py where the tracks are known).
A chained step runs the model back to the last anchor frame, 2 to hop + 1 frames depending on t,
so use --steps hop for its mean cost (the online model pads every run to its 16-frame window, so
there the cost does not vary).

python benchmarks/bench_cotracker3_chain.py [--device cuda] [--amp bf16] [--resolution 384 512]
    [--buffers 7 15 30] [--points 100 400] [--hops 7] [--steps 3] [--offline]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import stvla_core.tracking.cotracker3.chain  # noqa: E402, F401  (registers cotracker3_chained)
from stvla_core.tracking import TRACKERS, Clip, Tracker  # noqa: E402


def moving_texture(t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """(t, h, w, 3) uint8 frames of a random texture moving 1 px right per frame."""
    tex = np.random.default_rng(seed).integers(0, 256, (h, w + t, 3), dtype=np.uint8)
    return np.stack([tex[:, t - k : t - k + w] for k in range(t)])


def ms_per_step(tracker: Tracker, frames: np.ndarray, b: int, steps: int, device: str) -> float:
    """Mean ms of steps t = b .. b+steps-1, after a warm-up step at t = b-1 (which fills the
    caches: feature maps, and for the chained tracker the hops of the window's anchors)."""
    times = []
    for t in range(b - 1, b + steps):
        clip = Clip(frames[t - b + 1 : t + 1], np.arange(t - b + 1, t + 1), key="bench")
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        s = time.perf_counter()
        tracker.track(clip)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if t >= b:
            times.append((time.perf_counter() - s) * 1000)
    return float(np.mean(times))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none")
    ap.add_argument("--resolution", type=int, nargs=2, default=[384, 512])
    ap.add_argument("--frame-size", type=int, nargs=2, default=[224, 224])
    ap.add_argument("--buffers", type=int, nargs="+", default=[7, 15, 30])
    ap.add_argument("--points", type=int, nargs="+", default=[100, 400])
    ap.add_argument("--hops", type=int, nargs="+", default=[7])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--iters", type=int, default=6)
    ap.add_argument("--offline", action="store_true", help="offline model (window 60) instead of online")
    ap.add_argument("--skip-full", action="store_true", help="leave out the naive column (slow on a CPU)")
    args = ap.parse_args()
    h, w = args.frame_size
    frames = moving_texture(max(args.buffers) + args.steps + 1, h, w)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.amp)
    amp = torch.autocast(args.device.split(":")[0], dtype=dtype) if dtype else contextlib.nullcontext()
    dev = (
        torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else f"CPU, {torch.get_num_threads()} threads"
    )
    print(
        f"cotracker3 {'offline' if args.offline else 'online'} | model resolution {tuple(args.resolution)} | "
        f"frames {w}x{h} | iters {args.iters} | {dev} | amp {args.amp} | random weights | ms per control step"
    )
    cols = ["full", "cached"] + [f"chained h{hop}" for hop in args.hops]
    print(f"{'b':>3} {'N':>4} | " + " | ".join(f"{c:>11}" for c in cols) + " | speed-up full/chained")
    for b in args.buffers:
        for n in args.points:
            grid = round(n**0.5)
            opts = dict(
                pretrained=False,
                online=not args.offline,
                device=args.device,
                model_resolution=tuple(args.resolution),
                iters=args.iters,
            )
            row = []
            with amp, torch.inference_mode():
                if args.skip_full:
                    row.append(float("nan"))
                else:
                    full = TRACKERS.create("cotracker3", grid=grid, incremental=False, **opts)
                    row.append(ms_per_step(full, frames, b, args.steps, args.device))
                cached = TRACKERS.create("cotracker3", grid=grid, **opts)
                row.append(ms_per_step(cached, frames, b, args.steps, args.device))
                for hop in args.hops:
                    chained = TRACKERS.create("cotracker3_chained", hop=hop, grid=grid, **opts)
                    row.append(ms_per_step(chained, frames, b, args.steps, args.device))
            best = min(row[2:])
            print(
                f"{b:>3} {grid * grid:>4} | "
                + " | ".join(f"{v:>11.1f}" for v in row)
                + f" | {row[0] / best:.1f}x (cached {row[1] / best:.1f}x)",
                flush=True,
            )


if __name__ == "__main__":
    main()
