"""Wall time of one closed-loop evaluation run three ways, against the naive path (one process
playing every episode in turn): N local worker processes, and N actors on a local Ray cluster.

OMP_NUM_THREADS=1 python benchmarks/bench_eval_sharding.py --episodes 10 --workers 2 --json bench.json
OMP_NUM_THREADS=1 python benchmarks/bench_eval_sharding.py --episodes 2 --max-steps 10   # a quick check

Each row starts from an empty results folder, so every episode is played; the per-episode
outcomes (success, length) of each row are compared with the one-process row. The Ray row's
cluster (`ray.init` with N CPUs on this machine) is started before its clock starts, as a
cluster would be running already. Needs a quiet machine: other load skews the ratios."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stvla_core.evaluation import ClosedLoopConfig, evaluate_closed_loop  # noqa: E402

OUTCOME = ("task", "seed", "success", "success_at_end", "length")


def _run(name: str, config: ClosedLoopConfig, out: Path) -> dict:
    start = time.perf_counter()
    results = evaluate_closed_loop(config, out / name)
    wall = time.perf_counter() - start
    return {
        "mode": name,
        "executor": config.executor,
        "workers": config.workers,
        "episodes": len(results["episodes"]),
        "wall_s": wall,
        "episodes_per_s": len(results["episodes"]) / wall,
        "outcomes": [[e[k] for k in OUTCOME] for e in results["episodes"]],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=["PickCube-v1", "PushCube-v1", "PullCube-v1"])
    ap.add_argument("--episodes", type=int, default=10, help="episodes per task")
    ap.add_argument("--max-steps", type=int, default=None, help="default: the task setup's limit")
    ap.add_argument("--policy", default="stvla")
    ap.add_argument("--policy-kwargs", type=json.loads, default={"checkpoint": "default"})
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--modes", nargs="+", default=["one", "local", "ray"], choices=["one", "local", "ray"])
    ap.add_argument("--out", default=None, help="results folders (default: a temporary folder)")
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args()

    out = Path(args.out or tempfile.mkdtemp(prefix="bench-eval-sharding-"))
    base = {
        "tasks": args.tasks,
        "episodes_per_task": args.episodes,
        "max_steps": args.max_steps,
        "policy": args.policy,
        "policy_kwargs": args.policy_kwargs,
        "record_video": False,
    }
    rows = []
    if "one" in args.modes:
        rows.append(_run("one", ClosedLoopConfig(**base, workers=1), out))
    if "local" in args.modes:
        rows.append(_run("local", ClosedLoopConfig(**base, workers=args.workers), out))
    if "ray" in args.modes:
        import ray

        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
        try:
            rows.append(_run("ray", ClosedLoopConfig(**base, workers=args.workers, executor="ray"), out))
        finally:
            ray.shutdown()

    reference = rows[0]
    names = {
        "one": "1 process",
        "local": f"{args.workers} local workers",
        "ray": f"{args.workers} Ray actors",
    }
    print(
        f"{len(args.tasks)} tasks x {args.episodes} episodes, policy {args.policy} {json.dumps(args.policy_kwargs)}"
    )
    print(f"| run | wall (s) | episodes/s | speed-up vs {names[reference['mode']]} | same outcomes |")
    print("|---|---|---|---|---|")
    for r in rows:
        r["speedup"] = reference["wall_s"] / r["wall_s"]
        r["same_outcomes"] = r["outcomes"] == reference["outcomes"]
        print(
            f"| {names[r['mode']]} | {r['wall_s']:.1f} | {r['episodes_per_s']:.3f} | {r['speedup']:.2f}x | "
            f"{'yes' if r['same_outcomes'] else 'NO'} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
