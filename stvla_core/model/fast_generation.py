"""The fast inference path: one policy query (vision, prompt prefill, the action tokens) as
fixed-shape functions over a static KV cache, captured once per input shape as CUDA graphs (SigLIP
on its own, so it can start before the traced depth is ready; the rest in one) and replayed; on
the CPU the same functions run eagerly.

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
        self.vision = GraphedCall(self._siglip, enabled=graphs)
        self.call = GraphedCall(self._run, enabled=graphs)
        self._side: torch.cuda.Stream | None = None  # where `see` runs SigLIP on a GPU

    def _siglip(self, pixel_values: torch.Tensor) -> Outputs:
        return (self.model.siglip(pixel_values),)

    @torch.no_grad()
    def see(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """SigLIP's embedding of (B, 3, S, S) images, the part of a query that needs no depth,
        started on a side CUDA stream: it runs while the caller computes the traced depth, and
        `__call__(..., siglip=...)` waits for it. On a CPU it runs here."""
        pixel_values = pixel_values.to(self.model.device)
        if pixel_values.device.type != "cuda":
            return self.vision(pixel_values)[0]
        main = torch.cuda.current_stream(pixel_values.device)
        if self._side is None:
            self._side = torch.cuda.Stream(pixel_values.device)
        self._side.wait_stream(main)  # the upload above
        with torch.cuda.stream(self._side):
            (siglip,) = self.vision(pixel_values)
        siglip.record_stream(main)  # made on the side stream, read on the main one
        return siglip

    def _run(
        self,
        input_ids: torch.Tensor,
        valid: torch.Tensor,
        pixel_values: torch.Tensor,
        intrinsics: torch.Tensor,
        siglip: torch.Tensor,
        depth: torch.Tensor | None = None,
    ) -> Outputs:
        m, t = self.model, self.model.config.text_config
        visual = m.visual_embedding(pixel_values, intrinsics, depth, siglip)
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
        siglip: torch.Tensor | None = None,
    ) -> Generation:
        """Arguments as `model.generate`; intrinsics are needed (the Ego3D encoding). Without
        `depth` the model's ZoeDepth runs first, outside the graph: it picks its metric head by a
        vote read on the host (`.item()`), which a graph cannot hold; give `depth` (e.g. cached per
        frame, as `Policy` does) to skip it. `siglip`: from `see(pixel_values)`, started earlier."""
        m = self.model
        m.check_image_tokens(input_ids, len(pixel_values))  # once, on the host: the graph never looks
        pixel_values = pixel_values.to(m.device)
        if siglip is None:
            (siglip,) = self.vision(pixel_values)
        elif self._side is not None:
            torch.cuda.current_stream(siglip.device).wait_stream(self._side)
        source = "given"
        if depth is None and m.config.use_vision_zoe:
            depth, source = m.estimate_depth(pixel_values), "zoedepth"
        valid = valid_slots(input_ids, attention_mask, self.num_tokens)
        args = (input_ids.to(m.device), valid.to(m.device), pixel_values, intrinsics.to(m.device), siglip)
        if depth is not None:
            args = (*args, depth.to(m.device))
        else:
            source = "none"
        ids, probs, tk_ids, tk_probs, siglip, ego3d, seen, points, features = self.call(*args)
        visual = VisualEmbedding(siglip, ego3d, seen, points, features, source)  # type: ignore[arg-type]
        return Generation(ids, probs, tk_ids, tk_probs, visual)
