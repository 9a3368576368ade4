"""One ST-VLA policy step, the reference path against the fast path in the same run, per stage,
with the action tokens of both compared on every step.

python benchmarks/bench_model_step.py --quick                                   # CPU, tiny model, seconds
python benchmarks/bench_model_step.py --size full --device cuda --json out.json  # 4B random weights, bf16
    [--tracker cotracker3 --tracker-options '{"model_resolution": [224, 224], "amp": "bf16", "graphs": true}'] [--batch 16]

Reference: the model as written (one kernel launch after another from Python, a fresh dynamic KV
cache per query). Fast (`PolicyConfig(fast=True)`): the same computation over a static KV cache,
captured once per input shape as one CUDA graph (vision, prefill and the 12 action tokens) and
replayed; on the CPU it runs eagerly. The full-size model is built on the device in bf16 (no fp32
copy on the CPU), with random weights: timings do not depend on the weights.

Stages of one query on the newest frame of a bundled episode (traced depth): vision (SigLIP +
Ego3D + projector), prefill (the prompt through Gemma2 and the first token, measured as vision +
prefill minus vision), decode (the other 11 tokens, the query minus vision + prefill), query (all
of it); depth (the model's own ZoeDepth, per new frame, run outside the graph on both paths);
then the closed loop, `Policy.step` with the tracker on a full b-frame buffer (filled through
the trace pipeline before timing) and Variant C: trace (tracking + traced depth), model, total;
the reference path tracks as the official CoTracker3 predictor does (384 x 512, float32, every
frame re-encoded every step), the fast path with --tracker-options (the frames' resolution,
bf16, one new frame encoded per step, the tracking replayed from a CUDA graph), and the tokens
are compared on the same traced input. Then `BatchedPolicy` with B environments (bundled
episodes, unequal prompts) in one forward: policy steps per second; and where batched tokens
could part (batched numerics). p50 / p95 over --steps steps
after --warmup; CUDA peak memory per path. Results go to --json (benchmarks/bench_table.py turns
that into the README table); the run fails if any fast token differs from the reference one."""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stvla_core.buffer import window_indices  # noqa: E402
from stvla_core.cuda_graphs import GraphedCall  # noqa: E402
from stvla_core.episodes import Episode, load_episode  # noqa: E402
from stvla_core.model import (  # noqa: E402
    SpatialVLAForConditionalGeneration,
    processor_for,
    spatialvla_4b,
    tiny_model,
)
from stvla_core.model.fast_generation import FastGenerator  # noqa: E402
from stvla_core.model.processing_spatialvla import ModelInputs, SpatialVLAProcessor  # noqa: E402
from stvla_core.model.shipped import STVLA_S_DIR, stvla_s_available  # noqa: E402
from stvla_core.policy import BatchedPolicy, Policy, PolicyConfig  # noqa: E402
from stvla_core.traces import TraceConfig  # noqa: E402
from stvla_core.tracking import TRACKERS, Clip, track_clips  # noqa: E402

EPISODES = ROOT / "assets" / "episodes"
PATHS = ("reference", "fast")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _stats(ms: list[float]) -> dict[str, float]:
    return {"p50": round(float(np.percentile(ms, 50)), 2), "p95": round(float(np.percentile(ms, 95)), 2)}


def _timed(fn: Callable[[], object], device: torch.device, warmup: int, steps: int) -> list[float]:
    for _ in range(warmup):
        fn()
    _sync(device)
    out = []
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        _sync(device)
        out.append((time.perf_counter() - t) * 1e3)
    return out


def _episodes() -> list[Episode]:
    files = sorted(EPISODES.glob("*.npz"))
    if not files:
        raise SystemExit(f"error: no bundled episodes (*.npz) in {EPISODES}")
    return [load_episode(f) for f in files]


def _fill(policy: Policy, ep: Episode, start: int, buffer: int) -> None:
    """Buffer the b - 1 frames before the first step in the policy's trace pipeline (untraced:
    the warm-up steps encode them), so every step tracks a full window of b frames."""
    if policy.pipeline is not None:
        for t in range(start, start + buffer - 1):
            policy.pipeline.feed(ep.frames[t % ep.num_frames], ep.depth[t % ep.num_frames])


def _build(size: str, device: torch.device) -> tuple[SpatialVLAForConditionalGeneration, SpatialVLAProcessor]:
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if size == "tiny":
        model = tiny_model(0, device)
    elif size == "small":
        if not stvla_s_available():
            raise SystemExit(f"error: --size small needs the shipped ST-VLA-S in {STVLA_S_DIR}")
        model = SpatialVLAForConditionalGeneration.from_pretrained(STVLA_S_DIR, device, dtype)
        return model, processor_for(model, STVLA_S_DIR)
    else:
        model = SpatialVLAForConditionalGeneration.build(spatialvla_4b(), device, dtype, seed=0)
    return model, processor_for(model)


def _before(path: Path) -> dict:
    """What of an earlier run this one is compared with: its fast stages, tracker-alone lines
    and batched closed loop."""
    try:
        earlier = json.loads(path.read_text())
        return {
            "file": str(path),
            "stages": {"fast": earlier["stages"]["fast"]},
            "tracker_variants": earlier.get("tracker_variants", {}),
            "batched": earlier.get("batched"),
        }
    except (OSError, json.JSONDecodeError, KeyError) as e:
        raise SystemExit(
            f"error: --before {path}: not a JSON of this benchmark ({type(e).__name__}: {e})"
        ) from None


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.device = torch.device(args.device)
        t = time.perf_counter()
        self.model, self.processor = _build(args.size, self.device)
        _sync(self.device)
        self.build_s = time.perf_counter() - t
        self.episodes = _episodes()
        self.k = 3 * self.processor.action_chunk_size
        self.ranges = self.processor.action_tokenizer.ranges()
        self.result: dict = {"stages": {p: {} for p in PATHS}, "errors": [], "cuda_peak_gib": {}}

    def _peak_reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def _peak(self, name: str) -> None:
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device) / 2**30
            self.result["cuda_peak_gib"][name] = round(
                max(peak, self.result["cuda_peak_gib"].get(name, 0)), 2
            )

    def _record(self, path: str, stage: str, ms: list[float]) -> None:
        self.result["stages"][path][stage] = _stats(ms)

    def _derive(self, path: str, stage: str, total: str, part: str) -> None:
        s = self.result["stages"][path]
        if total in s and part in s:
            s[stage] = {q: round(s[total][q] - s[part][q], 2) for q in ("p50", "p95")} | {"derived": True}

    # -- one query ---------------------------------------------------------------------------
    def query_stages(self) -> None:
        a, ep = self.args, self.episodes[0]
        t = ep.num_frames - 1
        inp = self.processor(ep.frames[t], ep.instruction, ep.depth[t], ep.intrinsics).to(self.device)
        plain = self.processor(ep.frames[t], ep.instruction, None, ep.intrinsics).to(self.device)
        m = self.model
        args = (inp.input_ids, inp.pixel_values, inp.intrinsics, inp.depth)
        with torch.no_grad():
            self._peak_reset()
            ref = {
                "vision": lambda: m.visual_embedding(inp.pixel_values, inp.intrinsics, inp.depth),
                "vision+prefill": lambda: m.generate(*args, num_tokens=1, allowed=self.ranges),
                "query": lambda: m.generate(*args, num_tokens=self.k, allowed=self.ranges),
                "depth (ZoeDepth)": lambda: m.estimate_depth(plain.pixel_values),
            }
            for stage, fn in ref.items():
                self._record("reference", stage, _timed(fn, self.device, a.warmup, a.steps))
            self._peak("reference")

            def vision_only(pv, k, d):
                v = m.visual_embedding(pv, k, d)
                return (v.features,)

            graphs = not a.no_graphs
            vision_graph = GraphedCall(vision_only, graphs)
            first = FastGenerator(m, 1, self.ranges, graphs=graphs)
            full = FastGenerator(m, self.k, self.ranges, graphs=graphs)
            self._peak_reset()
            fast = {
                "vision": lambda: vision_graph(inp.pixel_values, inp.intrinsics, inp.depth),
                "vision+prefill": lambda: first(*args),
                "query": lambda: full(*args),
                "depth (ZoeDepth)": lambda: m.estimate_depth(plain.pixel_values),
            }
            for stage, fn in fast.items():
                self._record("fast", stage, _timed(fn, self.device, a.warmup, a.steps))
            self._peak("fast")
            same = torch.equal(
                m.generate(*args, num_tokens=self.k, allowed=self.ranges).token_ids,
                full(*args).token_ids,
            )
            self.result["query_tokens_equal"] = bool(same)
        for p in PATHS:
            self._derive(p, "prefill", "vision+prefill", "vision")
            self._derive(p, "decode", "query", "vision+prefill")

    # -- closed loop -------------------------------------------------------------------------
    def _config(self, fast: bool, tracker_options: str | None = None) -> PolicyConfig:
        a = self.args
        options = a.tracker_options if tracker_options is None else tracker_options
        trace = TraceConfig(
            buffer=a.buffer,
            tracker=a.tracker,
            depth="episode",
            variant="C",
            tracker_options=json.loads(options) if options else {},
        )
        return PolicyConfig(trace=trace, fast=fast)

    def closed_loop(self) -> None:
        """Each path with its own tracker (the reference's: --reference-tracker-options). Tokens
        are compared on the same input: the reference model also answers (untimed) on the fast
        path's traced frame; how far the two trackers' tracks lie apart is reported beside."""
        a, ep = self.args, self.episodes[0]
        options = {"reference": a.reference_tracker_options, "fast": a.tracker_options}
        policies = {
            p: Policy(self.model, self.processor, self._config(p == "fast", options[p])) for p in PATHS
        }
        for pol in policies.values():
            pol.reset(ep.instruction, ep.intrinsics)
            _fill(pol, ep, 0, a.buffer)
        times: dict[str, dict[str, list[float]]] = {p: {"trace": [], "model": [], "total": []} for p in PATHS}
        mismatched, gaps = 0, []
        ref, fast = policies["reference"], policies["fast"]
        for i in range(a.warmup + a.steps):
            t = (a.buffer - 1 + i) % ep.num_frames
            for p, pol in policies.items():
                pol.step(ep.frames[t], ep.depth[t])
                if i >= a.warmup:
                    for key, ms in pol.timings.items():
                        times[p][key].append(ms)
            frame = fast.last.traced
            same_input = ref._infer(ep.frames[t], frame, ep.instruction, ep.intrinsics, "traced", t)
            mismatched += int(not np.array_equal(same_input.token_ids, fast.last.token_ids))
            gaps.append(np.linalg.norm(ref.last.traced.tracks.points - frame.tracks.points, axis=-1).ravel())
        for p in PATHS:
            for key, ms in times[p].items():
                self._record(p, f"Policy.step: {key}", ms)
        self.result["closed_loop_steps"] = a.warmup + a.steps
        self.result["closed_loop_mismatched_steps"] = mismatched
        self.result["closed_loop_track_gap_px"] = round(float(np.median(np.concatenate(gaps))), 3)

    # -- batched -----------------------------------------------------------------------------
    def batched(self) -> None:
        a, b = self.args, self.args.batch
        eps = [self.episodes[i % len(self.episodes)] for i in range(b)]
        texts = [
            f"{e.instruction} (robot {i})" if i >= len(self.episodes) else e.instruction
            for i, e in enumerate(eps)
        ]
        out: dict = {"batch": b}
        # both paths track with --tracker-options: this section measures the batched model
        runs = {p: BatchedPolicy(self.model, self.processor, b, self._config(p == "fast")) for p in PATHS}
        for bp in runs.values():
            bp.reset(texts, [e.intrinsics for e in eps])
            for j, (pol, e) in enumerate(zip(bp.policies, eps, strict=True)):
                _fill(pol, e, j, a.buffer)
        times: dict[str, dict[str, list[float]]] = {p: {"trace": [], "model": [], "total": []} for p in PATHS}
        mismatched = 0
        for i in range(a.warmup + a.batch_steps):
            at = [(j + a.buffer - 1 + i) % e.num_frames for j, e in enumerate(eps)]
            frames = [e.frames[t] for t, e in zip(at, eps, strict=True)]
            depths = [e.depth[t] for t, e in zip(at, eps, strict=True)]
            tokens = {}
            for p, bp in runs.items():
                self._peak_reset()
                bp.step(frames, depths)
                self._peak(f"batched {p}")
                tokens[p] = np.stack([pol.last.token_ids for pol in bp.policies])
                if i >= a.warmup:
                    for key, ms in bp.timings.items():
                        times[p][key].append(ms)
            mismatched += int(not np.array_equal(tokens["reference"], tokens["fast"]))
        for p in PATHS:
            out[p] = {key: _stats(ms) for key, ms in times[p].items()}
            out[p]["model_steps_per_s"] = round(b * 1e3 / out[p]["model"]["p50"], 1)
            out[p]["steps_per_s"] = round(b * 1e3 / out[p]["total"]["p50"], 1)
        out["mismatched_steps"] = mismatched
        out["steps"] = a.warmup + a.batch_steps
        self.result["batched"] = out

    def tracker_variants(self) -> None:
        """The tracker alone, stepped over the episode's b-frame windows, in the configurations a
        user can pick: the reference's, the fast path's, the fast path's with CoTracker3's
        offline network, which covers b <= 60 frames in one window (the online one needs 3
        overlapping windows of 16 for b = 30, so 3x the transformer updates), and with a quarter
        of the grid points (selection keeps K moving ones of them); then the fast one on the
        windows of --batch environments in one call (`track_clips`, as BatchedPolicy tracks).
        Timings only: with random weights the tracks mean nothing (bench_cotracker3_resolution.py
        judges them)."""
        a, ep = self.args, self.episodes[0]
        fast = json.loads(a.tracker_options or "{}")
        variants = {
            "reference": json.loads(a.reference_tracker_options or "{}"),
            "fast": fast,
            "fast, offline network (one window)": fast | {"online": False},
            "fast, 15 x 15 grid": fast | {"grid": 15},  # what fewer points save
        }
        out = {}
        for name, options in variants.items():
            tracker = TRACKERS.create(a.tracker, **options)
            steps = iter(range(a.buffer - 1, a.buffer - 1 + a.warmup + a.steps))

            def step(tracker=tracker, steps=steps) -> None:
                t = next(steps)
                idx = window_indices(t, a.buffer) % ep.num_frames
                tracker.track(Clip(ep.frames[idx], window_indices(t, a.buffer), key="variants"))

            out[name] = {"options": options, **_stats(_timed(step, self.device, a.warmup, a.steps))}
        if a.batch > 1:
            lead = TRACKERS.create(a.tracker, **fast)
            fork = getattr(lead, "fork", None)
            trackers = [lead] + [
                fork() if fork else TRACKERS.create(a.tracker, **fast) for _ in range(a.batch - 1)
            ]
            eps = [self.episodes[i % len(self.episodes)] for i in range(a.batch)]
            steps = iter(range(a.buffer - 1, a.buffer - 1 + a.warmup + a.steps))

            def step_all(steps=steps) -> None:
                t = next(steps)
                clips = []
                for j, e in enumerate(eps):  # each environment j frames further on
                    idx = window_indices(t + j, a.buffer)
                    clips.append(Clip(e.frames[idx % e.num_frames], idx, key=f"variants {j}"))
                track_clips(trackers, clips)

            stats = _stats(_timed(step_all, self.device, a.warmup, a.steps))
            name = f"fast, B = {a.batch} windows in one call"
            out[name] = {"options": fast | {"batch": a.batch}, **stats}
        self.result["tracker_variants"] = out

    def batched_numerics(self) -> None:
        """Where batched fast tokens may part from the reference's: one batch of B prompts (the
        first frame of each environment's episode) through the reference twice (is it
        deterministic?), the fast path without CUDA graphs (the static cache alone) and with them
        (the captured kernels), and each prompt alone through the reference. Per pair: equal
        token ids, and the largest gap in the chosen tokens' probabilities."""
        b = self.args.batch
        eps = [self.episodes[i % len(self.episodes)] for i in range(b)]
        items = [
            self.processor(e.frames[0], f"{e.instruction} (robot {i})", e.depth[0], e.intrinsics)
            for i, e in enumerate(eps)
        ]
        batch = ModelInputs.stack(items, self.model.config.pad_token_id).to(self.device)
        args = (batch.input_ids, batch.pixel_values, batch.intrinsics, batch.depth)
        m, k = self.model, self.k
        mask = batch.attention_mask
        with torch.no_grad():
            gens = {
                "reference": m.generate(*args, k, self.ranges, attention_mask=mask),
                "reference again": m.generate(*args, k, self.ranges, attention_mask=mask),
                "fast, no graphs": FastGenerator(m, k, self.ranges, graphs=False)(*args, attention_mask=mask),
                "fast": FastGenerator(m, k, self.ranges, graphs=not self.args.no_graphs)(
                    *args, attention_mask=mask
                ),
            }
            runs = {name: (g.token_ids, g.probs) for name, g in gens.items()}
            alone = []
            for x in items:
                x = x.to(self.device)
                alone.append(m.generate(x.input_ids, x.pixel_values, x.intrinsics, x.depth, k, self.ranges))
        runs["reference, one prompt at a time"] = (
            torch.cat([g.token_ids for g in alone]),
            torch.cat([g.probs for g in alone]),
        )
        ref_ids, ref_probs = runs.pop("reference")
        out = {}
        for name, (ids, probs) in runs.items():
            differ = int((ids != ref_ids).sum().item())
            gap = (probs.float() - ref_probs.float()).abs().max().item()
            out[name] = {"tokens_differing": differ, "max_prob_gap": round(gap, 6)}
        self.result["batched_numerics"] = out

    def run(self) -> dict:
        sections = [("query", self.query_stages), ("closed loop", self.closed_loop)]
        if self.args.tracker.startswith("cotracker3"):
            sections.append(("tracker variants", self.tracker_variants))
        if self.args.batch:
            sections += [("batched", self.batched), ("batched numerics", self.batched_numerics)]
        for name, fn in sections:
            try:
                fn()
            except Exception as e:  # record and go on: one GPU run should report all it can
                traceback.print_exc()
                self.result["errors"].append(f"{name}: {type(e).__name__}: {e}")
        m = self.model
        self.result.update(
            size=self.args.size,
            device=torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu",
            params=sum(p.numel() for p in m.parameters()),
            dtype=str(m.dtype).removeprefix("torch."),
            weights="ST-VLA-S" if self.args.size == "small" else "random",
            build_s=round(self.build_s, 1),
            prompt_tokens=int(
                self.processor(self.episodes[0].frames[0], self.episodes[0].instruction).input_ids.shape[1]
            ),
            action_tokens=self.k,
            tracker=self.args.tracker,
            tracker_options=json.loads(self.args.tracker_options or "{}"),
            reference_tracker_options=json.loads(self.args.reference_tracker_options or "{}"),
            buffer=self.args.buffer,
            steps=self.args.steps,
            graphs=not self.args.no_graphs and self.device.type == "cuda",
            torch=torch.__version__,
            transformers=__import__("transformers").__version__,
            command=" ".join(["python", "benchmarks/bench_model_step.py", *sys.argv[1:]]),
        )
        return self.result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--size",
        choices=("tiny", "small", "full"),
        default="tiny",
        help="small: the shipped ST-VLA-S (weights)",
    )
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per measure")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--buffer", type=int, default=30, help="b, frames in the trace buffer")
    ap.add_argument(
        "--tracker",
        help="lk (CPU), cotracker3, cotracker3_chained, oracle; default cotracker3 on a GPU, lk on the CPU",
    )
    ap.add_argument(
        "--tracker-options", default="", help='JSON, e.g. \'{"device": "cuda", "pretrained": false}\''
    )
    ap.add_argument(
        "--reference-tracker-options",
        help="JSON for the reference path's tracker in the closed loop; default for cotracker3: the "
        "official predictor's way (384 x 512, float32, every frame re-encoded, no graphs)",
    )
    ap.add_argument("--batch", type=int, default=16, help="environments for BatchedPolicy (0: skip)")
    ap.add_argument("--batch-steps", type=int, default=8)
    ap.add_argument("--no-graphs", action="store_true", help="fast path without CUDA graphs (debugging)")
    ap.add_argument("--quick", action="store_true", help="tiny model on the CPU, 3 steps, batch 2, b = 8")
    ap.add_argument("--json", help="write the results to this file")
    ap.add_argument(
        "--before",
        type=Path,
        help="JSON of an earlier run (e.g. results/bench/h200_round2.json): its fast-path and "
        "tracker-alone timings are printed beside this run's",
    )
    args = ap.parse_args()
    if args.quick:
        args.size, args.device, args.steps, args.warmup = "tiny", "cpu", 3, 1
        args.batch, args.batch_steps, args.buffer = 2, 2, 8
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but torch sees no GPU")
    if args.tracker is None:
        args.tracker = "cotracker3" if args.device.startswith("cuda") else "lk"
    if args.tracker.startswith("cotracker3") and not args.tracker_options:
        # random weights (timings only) on the model's device at the input's resolution; on a GPU
        # in bf16 with the tracking replayed from CUDA graphs
        dev = torch.device(args.device)
        opts = {"pretrained": False, "device": str(dev), "model_resolution": [224, 224]}
        if dev.type == "cuda":
            opts.update(amp="bf16", graphs=True)
        args.tracker_options = json.dumps(opts)
    if args.reference_tracker_options is None:
        args.reference_tracker_options = args.tracker_options
        if args.tracker.startswith("cotracker3"):
            opts = json.loads(args.tracker_options)
            opts.update(model_resolution=[384, 512], amp="none", graphs=False, incremental=False)
            args.reference_tracker_options = json.dumps(opts)

    before = _before(args.before) if args.before else None  # fail early on a bad file
    result = Bench(args).run()
    if before:
        result["before"] = before
    from bench_table import markdown  # noqa: PLC0415 (a sibling script)

    print(markdown(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    bad = []
    if result["errors"]:
        bad.append(f"{len(result['errors'])} section(s) failed: {'; '.join(result['errors'])}")
    if not result.get("query_tokens_equal", True):
        bad.append("the fast query's tokens differ from the reference's")
    if result.get("closed_loop_mismatched_steps"):
        bad.append(f"fast tokens differ on {result['closed_loop_mismatched_steps']} closed-loop steps")
    if result.get("batched", {}).get("mismatched_steps"):
        bad.append(f"batched fast tokens differ on {result['batched']['mismatched_steps']} steps")
    if bad:
        raise SystemExit("error: " + " | ".join(bad))


if __name__ == "__main__":
    main()
