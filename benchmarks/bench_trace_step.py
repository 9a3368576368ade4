"""Per-step cost of one traced depth map while stepping through an episode: the naive path
(re-track the whole window with LK on the query points every step, depth recomputed) against the
cached/incremental path (each frame's depth once, each LK hop once on a dense grid, chained).

python benchmarks/bench_trace_step.py [EPISODE] [--buffers 7 15 30] [--steps 40]

Without EPISODE it uses the first bundled sample (assets/episodes), else a synthetic one."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stvla_core.episodes import Episode  # noqa: E402
from stvla_core.traces import TraceConfig, TracePipeline  # noqa: E402


def _episode(path: str | None) -> Episode:
    samples = sorted((Path(__file__).resolve().parents[1] / "assets" / "episodes").glob("*.npz"))
    if path or samples:
        from stvla_core.episodes import load_episode

        return load_episode(path or samples[0])
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import translating_episode

    return translating_episode(t=80, h=224, w=224, dx=1.0, dy=0.5)


def _time_steps(pipe: TracePipeline, ep: Episode, steps: range, naive: bool) -> np.ndarray:
    out = []
    for t in steps:
        if naive:
            pipe._depth.clear()  # the naive path keeps nothing between steps
            pipe.tracker._grey.clear()
        s = time.perf_counter()
        pipe.at(ep, t)
        out.append((time.perf_counter() - s) * 1000)
    return np.array(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("episode", nargs="?")
    ap.add_argument("--buffers", type=int, nargs="+", default=[7, 15, 30])
    ap.add_argument("--steps", type=int, default=40)
    args = ap.parse_args()
    ep = _episode(args.episode)
    print(f"episode {ep.name}: {ep.num_frames} frames {ep.size[1]}x{ep.size[0]}, tracker lk, depth episode")
    print(
        f"{'b':>3} | {'naive ms/step p50':>17} {'p95':>6} | {'cached ms/step p50':>18} {'p95':>6} | speed-up"
    )
    for b in args.buffers:
        start = min(b, ep.num_frames - 1)
        steps = range(start, min(start + args.steps, ep.num_frames))
        naive = TracePipeline(TraceConfig(buffer=b, tracker_options={"incremental": False}))
        cached = TracePipeline(TraceConfig(buffer=b))
        cached.at(ep, start - 1)  # warm: the window before the first timed step is already seen
        tn = _time_steps(naive, ep, steps, naive=True)
        tc = _time_steps(cached, ep, steps, naive=False)
        p = lambda a, q: float(np.percentile(a, q))  # noqa: E731
        print(
            f"{b:>3} | {p(tn, 50):>17.1f} {p(tn, 95):>6.1f} | {p(tc, 50):>18.1f} {p(tc, 95):>6.1f} | "
            f"{p(tn, 50) / p(tc, 50):.1f}x"
        )


if __name__ == "__main__":
    main()
