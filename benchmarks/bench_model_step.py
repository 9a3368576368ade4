"""Cost of one ST-VLA policy step, the naive reference for later speed work: the model as written
(eager attention, a fresh KV cache per step, ZoeDepth at 384 px when no depth is given, greedy
decoding of 3 x 4 action tokens one at a time).

python benchmarks/bench_model_step.py --size tiny            # CPU, the tiny model
python benchmarks/bench_model_step.py --size full --device cuda   # 4B random weights, bf16 on the GPU

Rows: the vision side alone (SigLIP + Ego3D, with the model's ZoeDepth or a given traced depth),
prefill + 1 token, the full 12-token generation, and the closed-loop Policy.step (trace pipeline
on the CPU + model) over a synthetic 224x224 episode. Times are medians over --steps runs after
one warm-up; memory is the CUDA peak."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stvla_core.model import SpatialVLAForConditionalGeneration, processor_for, spatialvla_4b, tiny_model  # noqa: E402
from stvla_core.policy import Policy, PolicyConfig  # noqa: E402
from stvla_core.traces import TraceConfig  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_ms(fn, device: torch.device, steps: int) -> tuple[float, float]:
    """(first call ms, median ms of the next `steps` calls)."""
    _sync(device)
    t = time.perf_counter()
    fn()
    _sync(device)
    first = (time.perf_counter() - t) * 1e3
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t) * 1e3)
    return first, float(np.median(times))


def _episode():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import translating_episode

    return translating_episode(t=12, h=224, w=224, dx=1.0, dy=0.5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=("tiny", "full"), default="tiny")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--json", help="also write the rows to this JSON file")
    args = ap.parse_args()
    device = torch.device(args.device)

    t = time.perf_counter()
    if args.size == "tiny":
        model = tiny_model(0, device)
    else:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        model = SpatialVLAForConditionalGeneration.build(spatialvla_4b(), device, dtype, seed=0)
    _sync(device)
    build_s = time.perf_counter() - t
    processor = processor_for(model)
    n_params = sum(p.numel() for p in model.parameters())
    weights_gib = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**30

    ep = _episode()
    rgb, depth = ep.frames[-1], ep.depth[-1]
    plain = processor(rgb, ep.instruction).to(device)
    traced = processor(rgb, ep.instruction, depth=depth).to(device)
    ranges = processor.action_tokenizer.ranges()
    k = 3 * processor.action_chunk_size
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    rows = []

    def add(name: str, fn) -> None:
        first, med = _median_ms(fn, device, args.steps)
        rows.append({"step": name, "first_ms": round(first, 1), "median_ms": round(med, 1)})

    with torch.no_grad():
        add(
            "vision: SigLIP + ZoeDepth + Ego3D",
            lambda: model.visual_embedding(plain.pixel_values, plain.intrinsics),
        )
        add(
            "vision: SigLIP + traced depth + Ego3D",
            lambda: model.visual_embedding(traced.pixel_values, traced.intrinsics, traced.depth),
        )
        for name, inp in (("ZoeDepth", plain), ("traced depth", traced)):
            add(
                f"generate 1 token ({name})",
                lambda inp=inp: model.generate(
                    inp.input_ids, inp.pixel_values, inp.intrinsics, inp.depth, 1, ranges
                ),
            )
            add(
                f"generate {k} tokens ({name})",
                lambda inp=inp: model.generate(
                    inp.input_ids, inp.pixel_values, inp.intrinsics, inp.depth, k, ranges
                ),
            )
    policy = Policy(
        model, processor, PolicyConfig(trace=TraceConfig(buffer=30, tracker="lk", depth="episode"))
    )
    policy.reset(ep.instruction)
    frames = iter(range(10**6))

    def closed_loop_step() -> None:
        i = next(frames) % ep.num_frames
        policy.step(ep.frames[i], ep.depth[i])

    add("Policy.step (traces C + model + decode)", closed_loop_step)

    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"ST-VLA {args.size}: {n_params / 1e9:.3f} B params, {weights_gib:.2f} GiB weights "
        f"({next(model.parameters()).dtype}), built in {build_s:.1f} s on {dev_name}"
    )
    print(f"prompt {plain.input_ids.shape[1]} tokens, {k} action tokens; CUDA peak {peak:.2f} GiB")
    print(f"{'step':45s} {'first ms':>10s} {'median ms':>10s}")
    for r in rows:
        print(f"{r['step']:45s} {r['first_ms']:10.1f} {r['median_ms']:10.1f}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "size": args.size,
                    "device": dev_name,
                    "params": n_params,
                    "weights_gib": weights_gib,
                    "build_s": build_s,
                    "cuda_peak_gib": peak,
                    "rows": rows,
                    "torch": torch.__version__,
                    "transformers": __import__("transformers").__version__,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
