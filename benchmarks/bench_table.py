"""The README's benchmark table from the JSON of benchmarks/bench_model_step.py.

python benchmarks/bench_table.py out.json     # prints Markdown"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

STAGE_ORDER = (
    "vision",
    "prefill",
    "decode",
    "query",
    "depth (ZoeDepth)",
    "Policy.step: trace",
    "Policy.step: model",
    "Policy.step: total",
)


def _ms(stage: dict | None, q: str) -> str:
    return "–" if stage is None else f"{stage[q]:.1f}"


def markdown(result: dict) -> str:
    """Markdown: a line naming the run, the per-stage table (reference vs fast), tokens, batched."""
    ref, fast = result["stages"]["reference"], result["stages"]["fast"]
    before = result.get("before")  # an earlier run (--before): its numbers beside this run's
    params = result.get("params", 0) / 1e9
    lines = [
        f"{result.get('device', '?')}, ST-VLA {result.get('size', '?')} ({params:.2f} B parameters, "
        f"{result.get('dtype', '?')}, {result.get('weights', 'random')} weights), prompt {result.get('prompt_tokens', '?')} + "
        f"{result.get('action_tokens', '?')} action tokens, tracker `{result.get('tracker', '?')}` "
        f"{json.dumps(result.get('tracker_options', {}))}, b = {result.get('buffer', '?')}, Variant C, "
        f"{result.get('steps', '?')} steps, CUDA graphs: {'yes' if result.get('graphs') else 'no'}; "
        f"`{result.get('command', '')}`",
        *([] if before is None else ["", f'Column "before": the fast path of `{before["file"]}`.']),
        "",
        "| stage | reference p50 ms | reference p95 ms | fast p50 ms | fast p95 ms | speed-up (p50) |"
        + (" fast p50 ms before |" if before else ""),
        "|---|---:|---:|---:|---:|---:|" + ("---:|" if before else ""),
    ]
    for stage in STAGE_ORDER:
        r, f = ref.get(stage), fast.get(stage)
        if r is None and f is None:
            continue
        speed = f"{r['p50'] / f['p50']:.1f}x" if r and f and f["p50"] > 0 else "–"
        name = f"{stage} (derived)" if (r or f or {}).get("derived") else stage
        lines.append(
            f"| {name} | {_ms(r, 'p50')} | {_ms(r, 'p95')} | {_ms(f, 'p50')} | {_ms(f, 'p95')} | {speed} |"
            + (f" {_ms(before['stages']['fast'].get(stage), 'p50')} |" if before else "")
        )
    peak = result.get("cuda_peak_gib", {})
    if peak:
        lines += ["", "CUDA peak memory: " + ", ".join(f"{k} {v:.2f} GiB" for k, v in peak.items())]
    steps = result.get("closed_loop_steps")
    if steps is not None:
        lines += [
            "",
            f"Action tokens, fast vs reference: single query {'equal' if result.get('query_tokens_equal') else 'DIFFERENT'}; "
            f"closed loop {steps - result.get('closed_loop_mismatched_steps', 0)} of {steps} steps equal "
            "(the reference model on the fast path's traced frame).",
        ]
        if "closed_loop_track_gap_px" in result:
            lines.append(
                f"Reference tracker {json.dumps(result.get('reference_tracker_options', {}))}: its tracks lie "
                f"a median {result['closed_loop_track_gap_px']:.2f} px from the fast tracker's."
            )
    b = result.get("batched")
    if b:
        lines += [
            "",
            f"| B = {b['batch']} environments | model p50 ms | policy steps/s (model) | step p50 ms (with tracking) | policy steps/s (closed loop) |",
            "|---|---:|---:|---:|---:|",
        ]
        rows = [(p, b[p]) for p in ("reference", "fast")]
        if before and before.get("batched") and before["batched"].get("batch") == b["batch"]:
            rows.append(("fast, before", before["batched"]["fast"]))
        for p, r in rows:
            lines.append(
                f"| {p} | {r['model']['p50']:.1f} | {r['model_steps_per_s']:.1f} | {r['total']['p50']:.1f} | {r['steps_per_s']:.1f} |"
            )
        lines.append(
            f"\nBatched tokens, fast vs reference: {b['steps'] - b['mismatched_steps']} of {b['steps']} steps equal."
        )
    variants = result.get("tracker_variants")
    if variants:
        earlier = before["tracker_variants"] if before else {}
        lines += [
            "",
            "| tracker alone, b-frame window | p50 ms | p95 ms | options |"
            + (" p50 ms before |" if before else ""),
            "|---|---:|---:|---|" + ("---:|" if before else ""),
        ]
        lines += [
            f"| {name} | {r['p50']:.1f} | {r['p95']:.1f} | `{json.dumps(r['options'])}` |"
            + (f" {_ms(earlier.get(name), 'p50')} |" if before else "")
            for name, r in variants.items()
        ]
    numerics = result.get("batched_numerics")
    if numerics:
        lines += [
            "",
            "Batched numerics (one batch, tokens differing from the batched reference; largest gap in their probabilities):",
        ]
        lines += [
            f"- {name}: {r['tokens_differing']} tokens, {r['max_prob_gap']:.2g}"
            for name, r in numerics.items()
        ]
    if result.get("errors"):
        lines += ["", "Errors: " + "; ".join(result["errors"])]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json", type=Path)
    args = ap.parse_args()
    if not args.json.is_file():
        raise SystemExit(f"error: {args.json} is not a file")
    try:
        result = json.loads(args.json.read_text())
    except json.JSONDecodeError as e:
        raise SystemExit(f"error: {args.json} is not JSON ({e})") from None
    if "stages" not in result:
        raise SystemExit(f"error: {args.json} is not an output of bench_model_step.py (no 'stages')")
    print(markdown(result))


if __name__ == "__main__":
    main()
