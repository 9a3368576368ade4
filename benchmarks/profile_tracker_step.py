"""Where one fast-path tracking step spends its time: CoTracker3 stepped over a bundled episode's
b-frame windows, once with CUDA graphs and once without, each timed against the other in the same
run, then one step of each under torch.profiler (kernel time per op, launches, host time).
--batch B steps B environments' windows in one call, as BatchedPolicy does.

python benchmarks/profile_tracker_step.py --device cuda --json $OUT/tracker_profile.json
python benchmarks/profile_tracker_step.py --device cuda --batch 16 --json $OUT/tracker_profile_b16.json
python benchmarks/profile_tracker_step.py --device cpu --buffer 8 --options '{"model_resolution": [112, 112]}'

Issue 12: with graphs the fast tracker took 186 ms a step on the H200, 179 ms of it in kernels,
most around the correlation's layout (results/bench/h200_tracker_profile.*); this says where the
time is after the correlation was re-laid (network.py, `correlate`)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stvla_core.buffer import window_indices  # noqa: E402
from stvla_core.episodes import load_episode  # noqa: E402
from stvla_core.tracking import TRACKERS, Clip, track_clips  # noqa: E402

FAST = {"pretrained": False, "model_resolution": [224, 224], "amp": "bf16", "graphs": True}


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--buffer", type=int, default=30)
    ap.add_argument("--episode", default=str(ROOT / "assets" / "episodes" / "maniskill_pick.npz"))
    ap.add_argument("--options", default="{}", help="JSON merged over the fast path's tracker options")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--rows", type=int, default=25, help="ops listed per profile")
    ap.add_argument("--batch", type=int, default=1, help="environments tracked in one call")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    ep = load_episode(a.episode)
    base = FAST | {"device": a.device} | json.loads(a.options)
    if a.device != "cuda":
        base |= {"graphs": False, "amp": "none"}
    rows, tables = {}, {}
    t0 = a.buffer - 1
    for name, options in {"graphs": base, "no graphs": base | {"graphs": False}}.items():
        if name == "graphs" and not base["graphs"]:
            continue
        lead = TRACKERS.create("cotracker3", **options)
        trackers = [lead] + [lead.fork() for _ in range(a.batch - 1)]

        def step(t: int, trackers=trackers) -> None:
            clips = []
            for j in range(a.batch):  # environment j is j frames further on
                idx = window_indices(t + j, a.buffer)
                clips.append(Clip(ep.frames[idx % ep.num_frames], idx, key=f"profile {j}"))
            track_clips(trackers, clips)

        t = t0
        for _ in range(a.warmup):
            step(t)
            t += 1
        _sync(a.device)
        ms = []
        for _ in range(a.steps):
            start = time.perf_counter()
            step(t)
            _sync(a.device)
            ms.append((time.perf_counter() - start) * 1e3)
            t += 1
        activities = [torch.profiler.ProfilerActivity.CPU]
        if a.device == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(activities=activities) as prof:
            step(t)
            _sync(a.device)
        events = prof.key_averages()
        sort = "cuda_time_total" if a.device == "cuda" else "cpu_time_total"
        tables[name] = events.table(sort_by=sort, row_limit=a.rows)
        kernel_us = sum(e.self_device_time_total for e in events) if a.device == "cuda" else None
        rows[name] = {
            "options": options,
            "step_ms": sorted(ms),
            "median_ms": sorted(ms)[len(ms) // 2],
            "device_kernel_ms": None if kernel_us is None else round(kernel_us / 1e3, 2),
            "ops": int(sum(e.count for e in events)),
        }
    print(
        f"CoTracker3 (random weights) on {a.device}, b = {a.buffer}, {a.batch} window(s) a call, "
        f"{a.steps} timed steps after {a.warmup}"
    )
    print("| setting | median step ms | GPU kernel time in one step ms | profiled ops |")
    print("|---|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['median_ms']:.1f} | {r['device_kernel_ms']} | {r['ops']} |")
    for name, table in tables.items():
        print(f"\n## {name}: one step\n{table}")
    if a.json:
        Path(a.json).write_text(json.dumps({"args": vars(a), "rows": rows, "tables": tables}, indent=1))


if __name__ == "__main__":
    main()
