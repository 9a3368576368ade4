"""The ST-VLA policy: trace pipeline + SpatialVLA model + action decoding.

Closed loop (`reset`, then `step` per frame) keeps the rolling frame buffer inside the trace
pipeline, feeds the newest frame's traced depth to the model in place of its own depth estimate,
and executes action chunks as SpatialVLA does in SimplerEnv: the model is queried every step for
a chunk of 4 actions and the actions predicted for the current step by the last 4 chunks are
averaged with weights exp(-temp * age index), temp = -0.8 (newer chunks weigh more).

`predict(episode, t)` is the stateless inspection path for the app: the chunk for step t with its
token ids, per-token probabilities, top alternatives and decoded grid cells."""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from stvla_core.depth.policy_depth import PolicyDepth
from stvla_core.episodes import Episode
from stvla_core.model.action_tokenizer import DecodedToken
from stvla_core.model.fast_generation import FastGenerator
from stvla_core.model.modeling_spatialvla import Generation, SpatialVLAForConditionalGeneration
from stvla_core.model.processing_spatialvla import ModelInputs, SpatialVLAProcessor, check_rgb
from stvla_core.model.shipped import STVLA_S_DIR, STVLA_S_NAME, stvla_s_available
from stvla_core.model.tiny import processor_for, tiny_model
from stvla_core.traces import VARIANTS, TraceConfig, TracedFrame, TracePipeline
from stvla_core.tracking import Tracker, track_clips

# traced = the trace config's variant; none = zeros through Ego3D (a model trained without depth)
DEPTH_MODES = ("traced", *VARIANTS, "raw", "none", "model")
TRACE_FILE = "trace_config.json"  # the trace settings a checkpoint was trained with
DEPTH_INPUT_FILE = "depth_input.json"  # the depth input a checkpoint was trained on: {"depth": mode}


@dataclass
class PolicyConfig:
    unnorm_key: str | None = None  # None: the checkpoint's own (Bridge's when it has several)
    depth: str = "traced"  # one of DEPTH_MODES; "model" is plain SpatialVLA (its own ZoeDepth)
    action_ensemble: bool = True
    ensemble_temp: float = -0.8  # SimplerEnv's SpatialVLA setting
    constrain_tokens: bool = True  # argmax over the action tokens valid at each position
    top_k: int = 5
    # the fast path (stvla_core/model/fast_generation.py): a static KV cache and, on a GPU, one
    # CUDA graph per query; same tokens as the reference path (fast=False)
    fast: bool = False
    zoe_cache_frames: int = 64  # fast path, depth "model": ZoeDepth maps kept per frame
    trace: TraceConfig = field(default_factory=TraceConfig)

    def validate(self) -> None:
        if self.depth not in DEPTH_MODES:
            raise ValueError(f"depth mode {self.depth!r} unknown; expected one of {', '.join(DEPTH_MODES)}")
        self.trace.validate()


def _checkpoint_root(path_or_id: str | Path) -> Path:
    from stvla_core.model.modeling_spatialvla import resolve_checkpoint

    if str(path_or_id) == STVLA_S_NAME:
        if not stvla_s_available():
            raise FileNotFoundError(f"the shipped ST-VLA-S model is missing from {STVLA_S_DIR}")
        path_or_id = STVLA_S_DIR
    return resolve_checkpoint(path_or_id)


def checkpoint_trace_config(path_or_id: str | Path) -> TraceConfig:
    """The trace settings a checkpoint was trained with (its trace_config.json), else the
    defaults; "tiny" has none."""
    if str(path_or_id) == "tiny":
        return TraceConfig()
    file = _checkpoint_root(path_or_id) / TRACE_FILE
    return TraceConfig(**json.loads(file.read_text())) if file.is_file() else TraceConfig()


def checkpoint_depth_input(path_or_id: str | Path) -> str:
    """The depth mode a checkpoint was trained on (its depth_input.json), else "traced"."""
    if str(path_or_id) == "tiny":
        return "traced"
    file = _checkpoint_root(path_or_id) / DEPTH_INPUT_FILE
    if not file.is_file():
        return "traced"
    mode = json.loads(file.read_text()).get("depth", "traced")
    if mode not in DEPTH_MODES:
        raise ValueError(f"{file}: depth {mode!r} unknown; expected one of {', '.join(DEPTH_MODES)}")
    return mode


class ActionEnsembler:
    """Temporal ensembling of overlapping action chunks (Octo / SimplerEnv)."""

    def __init__(self, horizon: int, temp: float) -> None:
        self.temp = temp
        self.history: deque[np.ndarray] = deque(maxlen=horizon)

    def reset(self) -> None:
        self.history.clear()

    def __call__(self, chunk: np.ndarray) -> np.ndarray:
        """chunk (k, 7) predicted now -> (7,) action for now."""
        self.history.append(chunk)
        n = len(self.history)
        # the chunk predicted i steps ago holds the current step at position i
        preds = np.stack([c[n - 1 - j] for j, c in enumerate(self.history)])
        w = np.exp(-self.temp * np.arange(n))
        return (w[:, None] * preds).sum(0) / w.sum()


@dataclass
class Prediction:
    """One model query and everything needed to inspect it."""

    index: int  # step t
    action: np.ndarray  # (7,) float32 to execute (ensembled in closed loop, else chunk[0])
    chunk: np.ndarray  # (k, 7) float32 predicted actions, dataset units
    normalized: np.ndarray  # (k, 7) float32 in [-1, 1]
    token_ids: np.ndarray  # (3k,) int64
    token_probs: np.ndarray  # (3k,) float32, full-vocabulary probability of each token
    topk_ids: np.ndarray  # (3k, K) int64
    topk_probs: np.ndarray  # (3k, K) float32
    tokens: list[list[DecodedToken]]  # per action: translation, rotation, gripper cells
    depth: np.ndarray | None  # (S, S) float32 metres the Ego3D encoder saw
    depth_source: str  # "traced:C", "raw", "model", ...
    ego3d_norm: np.ndarray | None  # (P, P) float32 L2 norm of the Ego3D embedding E_D per patch
    traced: TracedFrame | None = None


class Policy:
    def __init__(
        self,
        model: SpatialVLAForConditionalGeneration,
        processor: SpatialVLAProcessor,
        config: PolicyConfig | None = None,
        tracker: Tracker | None = None,
    ) -> None:
        """`tracker`: one to trace with instead of building the config's (BatchedPolicy hands
        each environment a fork of one CoTracker3 network)."""
        self.model = model.eval()
        self.processor = processor
        self.config = config or PolicyConfig()
        self.config.validate()
        self.pipeline = self._make_pipeline(tracker) if self.config.depth != "model" else None
        self.ensembler = ActionEnsembler(processor.action_chunk_size, self.config.ensemble_temp)
        self.instruction: str | None = None
        self.intrinsics: np.ndarray | None = None
        self.last: Prediction | None = None
        self.timings: dict[str, float] = {}  # ms of the last step: "trace", "model", "total"
        self._t = 0
        self._generator: FastGenerator | None = None
        self._zoe: OrderedDict[bytes, torch.Tensor] = OrderedDict()

    @classmethod
    def tiny(cls, config: PolicyConfig | None = None, seed: int = 0) -> Policy:
        """The untrained tiny model with the shipped processor files: runs anywhere, instantly."""
        model = tiny_model(seed)
        return cls(model, processor_for(model), config)

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str | Path,
        config: PolicyConfig | None = None,
        device: str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Policy:
        """A checkpoint folder or hub id ("stvla-s": the shipped trained model). Without a
        config, a checkpoint that records its training trace settings (trace_config.json) and depth
        input (depth_input.json) gets those, so it sees depth as in training."""
        root = _checkpoint_root(path_or_id)
        model = SpatialVLAForConditionalGeneration.from_pretrained(root, device, dtype)
        if config is None:
            config = PolicyConfig(depth=checkpoint_depth_input(root), trace=checkpoint_trace_config(root))
        return cls(model, processor_for(model, root), config)

    @classmethod
    def default(cls, config: PolicyConfig | None = None) -> Policy:
        """ST-VLA-S when shipped, else the untrained tiny model."""
        return cls.from_pretrained(STVLA_S_NAME, config) if stvla_s_available() else cls.tiny(config)

    # -- closed loop ------------------------------------------------------------------------
    def reset(self, instruction: str, intrinsics: np.ndarray | None = None) -> None:
        """Start an episode. `intrinsics` (3, 3) are in pixels of the frames that `step` will get;
        None takes the checkpoint's default camera (see SpatialVLAProcessor.default_intrinsics)."""
        if not isinstance(instruction, str) or not instruction.strip():
            raise ValueError(f"instruction: expected a non-empty string, found {instruction!r}")
        self.instruction = instruction
        self.intrinsics = intrinsics
        self.ensembler.reset()
        if self.pipeline is not None:
            self.pipeline.reset()
        self.last = None
        self._t = 0

    def step(self, rgb: np.ndarray, depth: np.ndarray | None = None) -> np.ndarray:
        """(H, W, 3) uint8 frame (and its (H, W) float32 depth in metres, when the trace pipeline's
        depth source needs it) -> (7,) float32 action: dx, dy, dz, droll, dpitch, dyaw in dataset
        units and the gripper in [0, 1] (> 0.5 open). `self.last` holds the full Prediction,
        `self.timings` what its parts took."""
        if self.instruction is None:
            raise RuntimeError("call reset(instruction) before step()")
        check_rgb(rgb, "rgb")
        start = time.perf_counter()
        # fast path: SigLIP needs no depth, so on a GPU it runs on a side stream during tracking
        siglip = self._fast().see(self.processor.pixel_values(rgb)[None]) if self.config.fast else None
        frame = None
        if self.pipeline is not None:
            frame = self.pipeline.push(rgb, depth)
        traced = time.perf_counter()
        pred = self._infer(rgb, frame, self.instruction, self.intrinsics, self.config.depth, self._t, siglip)
        self._finish(pred)
        end = time.perf_counter()
        self.timings = {
            "trace": (traced - start) * 1e3,
            "model": (end - traced) * 1e3,
            "total": (end - start) * 1e3,
        }
        return pred.action

    def _finish(self, pred: Prediction) -> None:
        if self.config.action_ensemble:
            pred.action = self.ensembler(pred.chunk).astype(np.float32)
        self.last = pred
        self._t += 1

    # -- inspection -------------------------------------------------------------------------
    def predict(self, episode: Episode, t: int, depth: str | None = None) -> Prediction:
        """The model's prediction at step t of an episode (no ensembling: action = chunk[0]).
        `depth` overrides the configured depth mode (e.g. "A", "raw", "model") for comparison."""
        mode = depth or self.config.depth
        return self.predict_modes(episode, t, (mode,))[mode]

    def predict_modes(self, episode: Episode, t: int, modes: Sequence[str]) -> dict[str, Prediction]:
        """`predict` under each depth mode (e.g. "model", "raw", "A", "B", "C"), tracing step t
        once for all of them: what each depth input does to the policy's actions."""
        for mode in modes:
            if mode not in DEPTH_MODES:
                raise ValueError(f"depth mode {mode!r} unknown; expected one of {', '.join(DEPTH_MODES)}")
        frame = None
        if any(m != "model" for m in modes):
            self.pipeline = self.pipeline or self._make_pipeline()
            frame = self.pipeline.at(episode, t)
        rgb, text, k = episode.frames[t], episode.instruction, episode.intrinsics
        return {m: self._infer(rgb, None if m == "model" else frame, text, k, m, t) for m in modes}

    # -- shared -----------------------------------------------------------------------------
    def _make_pipeline(self, tracker: Tracker | None = None) -> TracePipeline:
        """The trace pipeline of the config (with `tracker` when given); depth source "policy" is
        this model's own estimate."""
        if self.config.trace.depth == "policy":
            return TracePipeline(self.config.trace, tracker, PolicyDepth(self.model, self.processor))
        return TracePipeline(self.config.trace, tracker)

    def _depth_for(self, frame: TracedFrame | None, mode: str) -> tuple[np.ndarray | None, str]:
        if mode == "model" or frame is None:
            return None, "model"
        if mode == "none":
            return np.zeros_like(frame.depth), "none"
        if mode == "raw":
            return frame.depth, "raw"
        variant = frame.variant if mode == "traced" else mode
        return frame.traced[variant], f"traced:{variant}"

    def _inputs(
        self,
        rgb: np.ndarray,
        frame: TracedFrame | None,
        instruction: str,
        intrinsics: np.ndarray | None,
        mode: str,
    ) -> tuple[ModelInputs, str]:
        depth, source = self._depth_for(frame, mode)
        inputs = self.processor(rgb, instruction, depth, intrinsics, self.config.unnorm_key)
        if self.config.fast and inputs.depth is None and self.model.config.use_vision_zoe:
            inputs.depth = self._zoe_depth(rgb, inputs.pixel_values)
        return inputs, source

    def _zoe_depth(self, rgb: np.ndarray, pixel_values: torch.Tensor) -> torch.Tensor:
        """ZoeDepth of a frame, computed once per frame (the app steps back and forth)."""
        key = hashlib.blake2b(rgb.tobytes(), digest_size=16).digest() + repr(rgb.shape).encode()
        if key not in self._zoe:
            self._zoe[key] = self.model.estimate_depth(pixel_values.to(self.model.device))
            while len(self._zoe) > self.config.zoe_cache_frames:
                self._zoe.popitem(last=False)
        self._zoe.move_to_end(key)
        return self._zoe[key]

    def _allowed(self) -> list[tuple[int, int]] | None:
        return self.processor.action_tokenizer.ranges() if self.config.constrain_tokens else None

    def _fast(self) -> FastGenerator:
        if self._generator is None:
            k = 3 * self.processor.action_chunk_size
            self._generator = FastGenerator(self.model, k, self._allowed(), self.config.top_k)
        return self._generator

    @torch.no_grad()
    def generate(self, inputs: ModelInputs, siglip: torch.Tensor | None = None) -> Generation:
        """The action tokens of a batch of inputs, by the fast or the reference path; `siglip`
        (fast path): the images' SigLIP embedding from `FastGenerator.see`, already under way."""
        c = self.config
        k = 3 * self.processor.action_chunk_size
        allowed = self._allowed()
        inputs = inputs.to(self.model.device)
        if c.fast:
            return self._fast()(
                inputs.input_ids,
                inputs.pixel_values,
                inputs.intrinsics,
                inputs.depth,
                inputs.attention_mask,
                siglip,
            )
        return self.model.generate(
            inputs.input_ids,
            inputs.pixel_values,
            inputs.intrinsics,
            inputs.depth,
            num_tokens=k,
            allowed=allowed,
            top_k=c.top_k,
            attention_mask=inputs.attention_mask,
        )

    def _infer(
        self,
        rgb: np.ndarray,
        frame: TracedFrame | None,
        instruction: str,
        intrinsics: np.ndarray | None,
        mode: str,
        t: int,
        siglip: torch.Tensor | None = None,
    ) -> Prediction:
        inputs, source = self._inputs(rgb, frame, instruction, intrinsics, mode)
        return self._prediction(self._host(self.generate(inputs, siglip)), 0, t, source, frame)

    def _host(self, gen: Generation) -> dict[str, np.ndarray | None]:
        """What Predictions need of a generation, copied to the host in one go (the Ego3D norms
        reduced on the device first)."""
        seen, ego3d = gen.visual.depth, gen.visual.ego3d
        side = self.model.config.image_size // self.model.config.patch_size
        return {
            "ids": gen.token_ids.cpu().numpy().astype(np.int64),
            "probs": gen.probs.float().cpu().numpy(),
            "topk_ids": gen.topk_ids.cpu().numpy().astype(np.int64),
            "topk_probs": gen.topk_probs.float().cpu().numpy(),
            "depth": None if seen is None else seen[:, 0].float().cpu().numpy(),
            "ego3d_norm": None
            if ego3d is None
            else ego3d.float().norm(dim=-1).reshape(-1, side, side).cpu().numpy(),
        }

    def _prediction(
        self, host: dict[str, np.ndarray | None], row: int, t: int, source: str, frame: TracedFrame | None
    ) -> Prediction:
        """Row `row` of a generation (see `_host`) as the Prediction of step t."""
        ids = host["ids"][row]
        decoded = self.processor.decode_actions(ids, self.config.unnorm_key)
        depth, norm = host["depth"], host["ego3d_norm"]
        return Prediction(
            index=t,
            action=decoded.actions[0].copy(),
            chunk=decoded.actions,
            normalized=decoded.normalized,
            token_ids=ids,
            token_probs=host["probs"][row],
            topk_ids=host["topk_ids"][row],
            topk_probs=host["topk_probs"][row],
            tokens=decoded.tokens,
            depth=None if depth is None else depth[row],
            depth_source=source,
            ego3d_norm=None if norm is None else norm[row],
            traced=frame,
        )


class BatchedPolicy:
    """B environments stepped together: each keeps its own frame buffer, traces and action
    ensembling (one `Policy` each), the windows of all B are tracked in one call where the tracker
    can (`track_clips`: CoTracker3 runs its network once on a batch of B windows, each environment
    keeping its own feature cache), and the model answers all B in one batched forward, prompts of
    unequal length left-padded under an attention mask. Closed-loop evaluation throughput then
    grows with B instead of paying one tracker and one model call per environment."""

    def __init__(
        self,
        model: SpatialVLAForConditionalGeneration,
        processor: SpatialVLAProcessor,
        batch: int,
        config: PolicyConfig | None = None,
    ) -> None:
        if batch < 1:
            raise ValueError(f"batch: expected >= 1 environments, found {batch}")
        lead = Policy(model, processor, config)
        fork = getattr(lead.pipeline.tracker, "fork", None) if lead.pipeline is not None else None
        others = [Policy(model, processor, config, fork() if fork else None) for _ in range(batch - 1)]
        self.policies = [lead, *others]
        self.model, self.processor = model, processor
        self.timings: dict[str, float] = {}

    @property
    def batch(self) -> int:
        return len(self.policies)

    def reset(self, instructions: list[str], intrinsics: list[np.ndarray | None] | None = None) -> None:
        """One instruction (and camera) per environment."""
        if len(instructions) != self.batch:
            raise ValueError(f"instructions: expected {self.batch}, found {len(instructions)}")
        cams = intrinsics if intrinsics is not None else [None] * self.batch
        if len(cams) != self.batch:
            raise ValueError(f"intrinsics: expected {self.batch}, found {len(cams)}")
        for policy, text, cam in zip(self.policies, instructions, cams, strict=True):
            policy.reset(text, cam)

    def step(self, frames: list[np.ndarray], depths: list[np.ndarray | None] | None = None) -> np.ndarray:
        """One (H, W, 3) uint8 frame (and depth) per environment -> (B, 7) float32 actions; each
        policy's `last` holds its Prediction."""
        if len(frames) != self.batch:
            raise ValueError(f"frames: expected {self.batch}, found {len(frames)}")
        depths = depths if depths is not None else [None] * self.batch
        if len(depths) != self.batch:
            raise ValueError(f"depths: expected {self.batch}, found {len(depths)}")
        for policy, rgb in zip(self.policies, frames, strict=True):
            if policy.instruction is None:
                raise RuntimeError("call reset(instructions) before step()")
            check_rgb(rgb, "rgb")
        start = time.perf_counter()
        lead = self.policies[0]
        siglip = None
        if lead.config.fast:  # SigLIP of all B frames under way while each environment traces
            siglip = lead._fast().see(torch.stack([self.processor.pixel_values(rgb) for rgb in frames]))
        traced = self._trace(frames, depths)
        items, sources = [], []
        for policy, rgb, frame in zip(self.policies, frames, traced, strict=True):
            inputs, source = policy._inputs(
                rgb, frame, policy.instruction, policy.intrinsics, policy.config.depth
            )
            items.append(inputs)
            sources.append(source)
        mid = time.perf_counter()
        batch = ModelInputs.stack(items, self.model.config.pad_token_id)
        host = lead._host(lead.generate(batch, siglip))
        actions = []
        for row, policy in enumerate(self.policies):
            pred = policy._prediction(host, row, policy._t, sources[row], traced[row])
            policy._finish(pred)
            actions.append(pred.action)
        end = time.perf_counter()
        self.timings = {
            "trace": (mid - start) * 1e3,
            "model": (end - mid) * 1e3,
            "total": (end - start) * 1e3,
        }
        return np.stack(actions)

    def _trace(self, frames: list[np.ndarray], depths: list[np.ndarray | None]) -> list[TracedFrame | None]:
        """Each environment's traced frame (None without a trace pipeline), the windows of all
        environments tracked together (`track_clips`)."""
        pipes = [policy.pipeline for policy in self.policies]
        if any(pipe is None for pipe in pipes):
            return [None] * self.batch
        for pipe, rgb, depth in zip(pipes, frames, depths, strict=True):
            pipe.feed(rgb, depth)
        clips = [pipe.window() for pipe in pipes]
        ready = [i for i, clip in enumerate(clips) if len(clip.frames) >= 2]  # one frame: no tracks yet
        tracks = track_clips([pipes[i].tracker for i in ready], [clips[i] for i in ready])
        made = dict(zip(ready, tracks, strict=True))
        return [
            pipe.trace(clip, made.get(i)) for i, (pipe, clip) in enumerate(zip(pipes, clips, strict=True))
        ]
