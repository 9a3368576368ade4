"""CoTracker3 at a model resolution matched to the frames against the official 384 x 512: track
error against the oracle (the simulator's ground-truth points) on the bundled episodes, the gap
between the two runs, and time per step, in one run.

python benchmarks/bench_cotracker3_resolution.py --checkpoint scaled_online.pth [--device cuda --amp bf16]
python benchmarks/bench_cotracker3_resolution.py --random-weights --buffer 8 --stride 20   # code path only

The official predictor resizes every frame to 384 x 512; the bundled episodes are 224 x 224, so the
encoder works on 3.9x the pixels it was given, stretched to another aspect. `model_resolution`
(a tracker option) set to the frame size avoids that. Errors are in frame pixels where both the
ground truth and the tracker see the point (tracker_quality in stvla_core/traces/quality.py).
With random weights the errors mean nothing; the timings and the code path still hold."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stvla_core.episodes import load_episode  # noqa: E402
from stvla_core.traces.quality import tracker_quality  # noqa: E402
from stvla_core.tracking import TRACKERS  # noqa: E402
from stvla_core.tracking.base import TrackerUnavailableError  # noqa: E402


class _Recording:
    """Wraps a tracker: keeps each answer (to compare runs) and the time each took."""

    def __init__(self, tracker, device: str) -> None:
        self.tracker, self.device = tracker, device
        self.answers: list[np.ndarray] = []
        self.ms: list[float] = []

    def track(self, clip):
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        out = self.tracker.track(clip)
        self.ms.append((time.perf_counter() - t) * 1e3)
        self.answers.append(out.points)
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", help="local scaled_online.pth (else the torch hub cache)")
    ap.add_argument("--random-weights", action="store_true", help="no weights: timings and code path only")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none")
    ap.add_argument("--buffer", type=int, default=30)
    ap.add_argument("--stride", type=int, default=5, help="judge every stride-th step")
    ap.add_argument("--full", type=int, nargs=2, default=[384, 512], help="the official model resolution")
    args = ap.parse_args()
    episodes = [load_episode(f) for f in sorted((ROOT / "assets" / "episodes").glob("*.npz"))]
    if not episodes:
        raise SystemExit("error: no bundled episodes in assets/episodes")
    matched = tuple(4 * (s // 4) for s in episodes[0].frames.shape[1:3])
    base = {"device": args.device, "amp": args.amp, "pretrained": not args.random_weights}
    if args.checkpoint:
        base["checkpoint"] = args.checkpoint
    print(
        f"cotracker3 online, b = {args.buffer}, every {args.stride}th step, {args.device}, amp {args.amp}, "
        f"{'RANDOM weights (errors meaningless)' if args.random_weights else 'official weights'}"
    )
    print(
        f"{'episode':22s} {'resolution':>10s} {'median px':>9s} {'<=2px':>6s} {'<=4px':>6s} {'vis agr':>7s} "
        f"{'ms/step':>8s} {'gap to full px':>14s}"
    )
    for ep in episodes:
        runs = {}
        for res in (tuple(args.full), matched):
            try:
                tracker = _Recording(TRACKERS.create("cotracker3", model_resolution=res, **base), args.device)
            except TrackerUnavailableError as e:
                raise SystemExit(f"error: {e} (or pass --random-weights to time the code path)") from None
            table = tracker_quality(ep, tracker, args.buffer, stride=args.stride)
            runs[res] = (table.iloc[-1], tracker)
        full_answers = runs[tuple(args.full)][1].answers
        for res, (row, tracker) in runs.items():
            gap = np.median(
                np.concatenate(
                    [
                        np.linalg.norm(a - f, axis=-1).ravel()
                        for a, f in zip(tracker.answers, full_answers, strict=True)
                    ]
                )
            )
            label = f"{res[0]}x{res[1]}"
            print(
                f"{ep.name[:22]:22s} {label:>10s} {row['median_px']:9.2f} {row['within_2px']:6.2f} "
                f"{row['within_4px']:6.2f} {row['visibility_agreement']:7.2f} {np.median(tracker.ms):8.1f} {gap:14.2f}"
            )


if __name__ == "__main__":
    main()
