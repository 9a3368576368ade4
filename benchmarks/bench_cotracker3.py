"""Per-control-step cost of the `cotracker3` tracker on a rolling buffer: the naive full re-track
(encode every frame of the window, then track) against the incremental path (per-frame feature
maps cached, so a step encodes one new frame, then track), for several buffer lengths b and point
counts N. Random weights of the full-size model (timings do not depend on the weights); the answer
of both paths is compared on every step.

python benchmarks/bench_cotracker3.py [--device cuda] [--amp bf16] [--resolution 384 512]
    [--buffers 7 15 30] [--points 100 400] [--steps 4] [--offline]

On a CPU use a smaller --resolution to keep the run short (the model resolution sets the encoder's
cost and the size of the correlation pyramid, not the transformer's)."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stvla_core.tracking import TRACKERS, Clip  # noqa: E402


def _video(t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """(t, h, w, 3) uint8 frames of a smooth random texture moving 1 px right per frame."""
    rng = np.random.default_rng(seed)
    tex = rng.random((h, w + t, 3))
    for axis in (0, 1):  # box-blur twice so the texture is smooth enough to track
        for _ in range(2):
            tex = (tex + np.roll(tex, 1, axis) + np.roll(tex, -1, axis)) / 3
    tex = (255 * (tex - tex.min()) / (tex.max() - tex.min())).astype(np.uint8)
    return np.stack([tex[:, t - k : t - k + w] for k in range(t)])


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _steps(tracker, frames: np.ndarray, b: int, steps: int, device: str) -> tuple[np.ndarray, list]:
    """ms per step for steps t = b .. b+steps-1, after one warm-up step at t = b-1."""
    times, outs = [], []
    for t in range(b - 1, b + steps):
        clip = Clip(frames[t - b + 1 : t + 1], np.arange(t - b + 1, t + 1), key="bench")
        _sync(device)
        s = time.perf_counter()
        out = tracker.track(clip)
        _sync(device)
        if t >= b:
            times.append((time.perf_counter() - s) * 1000)
            outs.append(out)
    return np.array(times), outs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none")
    ap.add_argument("--resolution", type=int, nargs=2, default=[384, 512])
    ap.add_argument("--buffers", type=int, nargs="+", default=[7, 15, 30])
    ap.add_argument("--points", type=int, nargs="+", default=[100, 400])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--iters", type=int, default=6)
    ap.add_argument("--frame-size", type=int, nargs=2, default=[224, 224])
    ap.add_argument("--offline", action="store_true", help="offline model (window 60) instead of online")
    args = ap.parse_args()
    h, w = args.frame_size
    frames = _video(max(args.buffers) + args.steps + 1, h, w)
    amp = (
        torch.autocast(
            args.device.split(":")[0], dtype=getattr(torch, {"bf16": "bfloat16"}.get(args.amp, "float16"))
        )
        if args.amp != "none"
        else contextlib.nullcontext()
    )
    dev = (
        torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else f"CPU x{torch.get_num_threads()} threads"
    )
    print(
        f"cotracker3 {'offline' if args.offline else 'online'}, model resolution {tuple(args.resolution)}, "
        f"frames {w}x{h}, iters {args.iters}, device {dev}, amp {args.amp}, random weights"
    )
    print(
        f"{'b':>3} {'N':>4} | {'full ms/step':>12} | {'incremental ms/step':>19} | {'speed-up':>8} | max |d| px"
    )
    for b in args.buffers:
        for n in args.points:
            grid = round(n**0.5)
            opts = dict(
                pretrained=False,
                online=not args.offline,
                grid=grid,
                device=args.device,
                model_resolution=tuple(args.resolution),
                iters=args.iters,
            )
            with amp:
                full_t, full_o = _steps(
                    TRACKERS.create("cotracker3", **opts, incremental=False),
                    frames,
                    b,
                    args.steps,
                    args.device,
                )
                inc_t, inc_o = _steps(
                    TRACKERS.create("cotracker3", **opts), frames, b, args.steps, args.device
                )
            diff = max(float(np.abs(a.points - c.points).max()) for a, c in zip(full_o, inc_o, strict=True))
            f, i = np.median(full_t), np.median(inc_t)
            print(
                f"{b:>3} {grid * grid:>4} | {f:>12.1f} | {i:>19.1f} | {f / i:>7.2f}x | {diff:.2e}", flush=True
            )


if __name__ == "__main__":
    main()
