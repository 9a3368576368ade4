"""The fast inference path: one policy query (vision, prompt prefill, the action tokens) as a
fixed-shape function over a static KV cache, captured once per input shape as a CUDA graph and
replayed; on the CPU the same function runs eagerly.

Why it is fast: the reference `generate` is free of host syncs already, but it launches each of
the ~20 kernels of each of the 26 Gemma2 layers from Python, per token, so a 4B model decodes at
~25 ms a token where the weights take ~2 ms to read. A replayed graph launches them all at once.

Why its tokens equal the reference's: it runs the same code (`SpatialVLAForConditionalGeneration
.decode`) with a `StaticKVCache` that hands each layer the keys of exactly the slots written so
far, so every kernel sees the shapes it sees on the reference path. Gemma2 soft-caps its attention
logits, which SDPA and flash kernels do not do (transformers marks SDPA unsupported for Gemma2), so
both paths run the eager attention of the official model."""

from __future__ import annotations

import torch

from stvla_core.cuda_graphs import GraphedCall, Outputs
from stvla_core.model.modeling_spatialvla import (
    Generation,
    SpatialVLAForConditionalGeneration,
    StaticKVCache,
    VisualEmbedding,
    valid_slots,
)


class FastGenerator:
    """Greedy decoding of `num_tokens` (constrained) tokens for a batch of prompts, as
    `model.generate` computes them, from one CUDA graph per (batch, prompt length)."""

    def __init__(
        self,
        model: SpatialVLAForConditionalGeneration,
        num_tokens: int,
        allowed: list[tuple[int, int]] | None = None,
        top_k: int = 5,
        graphs: bool = True,
    ) -> None:
        if num_tokens < 1:
            raise ValueError(f"num_tokens: expected >= 1, found {num_tokens}")
        self.model = model
        self.num_tokens = num_tokens
        self.allowed = allowed
        self.top_k = top_k
        self.call = GraphedCall(self._run, enabled=graphs)

    def _run(
        self,
        input_ids: torch.Tensor,
        valid: torch.Tensor,
        pixel_values: torch.Tensor,
        intrinsics: torch.Tensor,
        depth: torch.Tensor | None = None,
    ) -> Outputs:
        m, t = self.model, self.model.config.text_config
        visual = m.visual_embedding(pixel_values, intrinsics, depth)
        embeds = m.merge_embeddings(input_ids, visual)
        b, n = input_ids.shape
        cache = StaticKVCache(
            t.num_hidden_layers,
            b,
            t.num_key_value_heads,
            n + self.num_tokens,
            t.head_dim,
            embeds.dtype,
            embeds.device,
        )
        gen = m.decode(visual, embeds, cache, valid, self.num_tokens, self.allowed, self.top_k)
        v = gen.visual
        return (
            gen.token_ids,
            gen.probs,
            gen.topk_ids,
            gen.topk_probs,
            v.siglip,
            v.ego3d,
            v.depth,
            v.points,
            v.features,
        )

    @torch.no_grad()
    def __call__(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor,
        intrinsics: torch.Tensor,
        depth: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> Generation:
        """Arguments as `model.generate`; intrinsics are needed (the Ego3D encoding). Without
        `depth` the model's ZoeDepth runs first, outside the graph: it picks its metric head by a
        vote read on the host (`.item()`), which a graph cannot hold; give `depth` (e.g. cached per
        frame, as `Policy` does) to skip it."""
        m = self.model
        m.check_image_tokens(input_ids, len(pixel_values))  # once, on the host: the graph never looks
        pixel_values = pixel_values.to(m.device)
        source = "given"
        if depth is None and m.config.use_vision_zoe:
            depth, source = m.estimate_depth(pixel_values), "zoedepth"
        valid = valid_slots(input_ids, attention_mask, self.num_tokens)
        args = (input_ids.to(m.device), valid.to(m.device), pixel_values, intrinsics.to(m.device))
        if depth is not None:
            args = (*args, depth.to(m.device))
        else:
            source = "none"
        ids, probs, tk_ids, tk_probs, siglip, ego3d, seen, points, features = self.call(*args)
        visual = VisualEmbedding(siglip, ego3d, seen, points, features, source)  # type: ignore[arg-type]
        return Generation(ids, probs, tk_ids, tk_probs, visual)
