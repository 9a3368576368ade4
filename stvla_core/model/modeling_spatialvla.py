"""The SpatialVLA network (arXiv 2501.15830) with ST-VLA's depth input (arXiv 2508.09032).

PaliGemma2 (SigLIP vision tower, linear projector, Gemma2 language model) plus an embedded
ZoeDepth model whose metric depth is back-projected and added to the SigLIP patch embeddings as
Ego3D position encoding, and shared embeddings for the spatial action tokens. Module names follow
the official checkpoint (`vision_tower`, `multi_modal_projector`, `language_model`,
`vision_zoe_model`, `position_embedding_3d`, `spatial_embed_tokens`); where transformers 5 names
a backbone's parameters differently from transformers 4.47 (which wrote the checkpoint), keys
are renamed on load and save (`OFFICIAL_TO_LOCAL`).

ST-VLA change: `depth=` replaces the ZoeDepth estimate before the Ego3D encoder, so the visual
input is E_V = E_O + E_D(traced depth); without it the model is SpatialVLA."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    DynamicCache,
    Gemma2Config,
    Gemma2ForCausalLM,
    SiglipVisionModel,
    ZoeDepthForDepthEstimation,
)
from transformers.models.paligemma.modeling_paligemma import PaliGemmaMultiModalProjector

from stvla_core.model.configuration_spatialvla import SpatialVLAConfig
from stvla_core.model.ego3d import Ego3DPositionEmbedding, backproject_patches

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
ZOE_SIZE = 384  # ZoeDepth's BEiT-L/384 input, square as the official pre-processing makes it
ZOE_PAD = 31  # reflect padding around the 224 px image before resizing it to 384 (official value)

# (official regex, local replacement) and back; first match wins. Official = transformers 4.47.
_ZOE_LAYER = r"vision_zoe_model\.backbone\.encoder\.layer\.(\d+)\."
_ZOE_LOCAL = r"vision_zoe_model\.backbone\.beit\.layers\.(\d+)\."
OFFICIAL_TO_LOCAL: list[tuple[str, str]] = [
    (r"^vision_tower\.vision_model\.", "vision_tower."),
    (r"^vision_zoe_model\.backbone\.embeddings\.", "vision_zoe_model.backbone.beit.embeddings."),
    (
        rf"^{_ZOE_LAYER}attention\.attention\.relative_position_bias\.",
        r"vision_zoe_model.backbone.beit.layers.\1.relative_position_bias.",
    ),
    (
        rf"^{_ZOE_LAYER}attention\.attention\.query\.",
        r"vision_zoe_model.backbone.beit.layers.\1.attention.q_proj.",
    ),
    (
        rf"^{_ZOE_LAYER}attention\.attention\.key\.",
        r"vision_zoe_model.backbone.beit.layers.\1.attention.k_proj.",
    ),
    (
        rf"^{_ZOE_LAYER}attention\.attention\.value\.",
        r"vision_zoe_model.backbone.beit.layers.\1.attention.v_proj.",
    ),
    (
        rf"^{_ZOE_LAYER}attention\.output\.dense\.",
        r"vision_zoe_model.backbone.beit.layers.\1.attention.o_proj.",
    ),
    (rf"^{_ZOE_LAYER}intermediate\.dense\.", r"vision_zoe_model.backbone.beit.layers.\1.mlp.fc1."),
    (rf"^{_ZOE_LAYER}output\.dense\.", r"vision_zoe_model.backbone.beit.layers.\1.mlp.fc2."),
    (rf"^{_ZOE_LAYER}", r"vision_zoe_model.backbone.beit.layers.\1."),
]
LOCAL_TO_OFFICIAL: list[tuple[str, str]] = [
    (r"^vision_tower\.(?!vision_model\.)", "vision_tower.vision_model."),
    (r"^vision_zoe_model\.backbone\.beit\.embeddings\.", "vision_zoe_model.backbone.embeddings."),
    (
        rf"^{_ZOE_LOCAL}relative_position_bias\.",
        r"vision_zoe_model.backbone.encoder.layer.\1.attention.attention.relative_position_bias.",
    ),
    (
        rf"^{_ZOE_LOCAL}attention\.q_proj\.",
        r"vision_zoe_model.backbone.encoder.layer.\1.attention.attention.query.",
    ),
    (
        rf"^{_ZOE_LOCAL}attention\.k_proj\.",
        r"vision_zoe_model.backbone.encoder.layer.\1.attention.attention.key.",
    ),
    (
        rf"^{_ZOE_LOCAL}attention\.v_proj\.",
        r"vision_zoe_model.backbone.encoder.layer.\1.attention.attention.value.",
    ),
    (
        rf"^{_ZOE_LOCAL}attention\.o_proj\.",
        r"vision_zoe_model.backbone.encoder.layer.\1.attention.output.dense.",
    ),
    (rf"^{_ZOE_LOCAL}mlp\.fc1\.", r"vision_zoe_model.backbone.encoder.layer.\1.intermediate.dense."),
    (rf"^{_ZOE_LOCAL}mlp\.fc2\.", r"vision_zoe_model.backbone.encoder.layer.\1.output.dense."),
    (rf"^{_ZOE_LOCAL}", r"vision_zoe_model.backbone.encoder.layer.\1."),
]


def _rename(key: str, rules: list[tuple[str, str]]) -> str:
    for pattern, repl in rules:
        new, n = re.subn(pattern, repl, key, count=1)
        if n:
            return new
    return key


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


@dataclass
class VisualEmbedding:
    """What the vision side produced for one batch, kept for inspection."""

    siglip: torch.Tensor  # (B, N, Dv) E_O, SigLIP patch embeddings
    ego3d: torch.Tensor | None  # (B, N, Dv) E_D, Ego3D position embeddings
    depth: torch.Tensor | None  # (B, 1, S, S) metres fed to Ego3D (traced or estimated)
    points: torch.Tensor | None  # (B, N, 3 r^2) back-projected patch points, metres
    features: torch.Tensor  # (B, N, Dt) projected, divided by sqrt(Dt), as scattered into the prompt
    depth_source: str  # "given" or "zoedepth" or "none"


@dataclass
class Generation:
    token_ids: torch.Tensor  # (B, k) generated ids
    probs: torch.Tensor  # (B, k) softmax probability (full vocabulary) of each generated id
    topk_ids: torch.Tensor  # (B, k, K) the K most likely ids at each step
    topk_probs: torch.Tensor  # (B, k, K)
    visual: VisualEmbedding


def valid_slots(input_ids: torch.Tensor, attention_mask: torch.Tensor | None, extra: int = 0) -> torch.Tensor:
    """(B, L + extra) bool: the prompt's attention mask (all real without one), then `extra`
    generated slots."""
    b, n = input_ids.shape
    if attention_mask is None:
        return torch.ones(b, n + extra, dtype=torch.bool, device=input_ids.device)
    if attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"attention_mask: expected {tuple(input_ids.shape)} like input_ids, found {tuple(attention_mask.shape)}"
        )
    gen = torch.ones(b, extra, dtype=torch.bool, device=input_ids.device)
    return torch.cat([attention_mask.to(input_ids.device).bool(), gen], 1)


def attention_masks(
    valid: torch.Tensor, start: int, prefix: int, text_config: Gemma2Config, dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """Additive masks (B, 1, q, K) of the queries at slots [start, K) over the keys at slots [0, K),
    K = valid.shape[1], for Gemma2's full and sliding-window layers.

    Query i sees key j when j is a real token and either both lie in the prompt (slots < `prefix`,
    bidirectional as PaliGemma's prefix-LM) or j <= i. Sliding layers also need i - j < window, as
    the official model's eager path (transformers 4.47) masks them. A padding query also sees
    itself, so no row is empty (an empty row would be NaN, and NaN times a zero weight is NaN).
    Built from tensors alone: no host sync, CUDA-graph safe."""
    b, k = valid.shape
    qi = torch.arange(start, k, device=valid.device)[:, None]
    kj = torch.arange(k, device=valid.device)[None]
    base = ((qi < prefix) & (kj < prefix)) | (kj <= qi)
    seen = base[None] & valid[:, None]
    window = getattr(text_config, "sliding_window", None)
    sliding = seen & (qi - kj < window) if window else seen
    pad = ~valid[:, start:, None] & (kj == qi)[None]
    low = torch.finfo(dtype).min
    return {
        "full_attention": torch.where(seen | pad, 0.0, low).to(dtype)[:, None],
        "sliding_attention": torch.where(sliding | pad, 0.0, low).to(dtype)[:, None],
    }


class StaticKVCache:
    """Keys and values of every layer preallocated for a prompt and its generated tokens: a
    `cache` for transformers' Gemma2 whose tensors never move, so one captured CUDA graph can
    replay a whole generation. `seek(start)` sets the slot the next update writes at; an update
    returns the keys of slots [0, start + q), the same shapes the dynamic cache gives, so the
    attention kernels (and their rounding) are the same as on the reference path."""

    def __init__(
        self,
        layers: int,
        batch: int,
        kv_heads: int,
        length: int,
        head_dim: int,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        shape = (batch, kv_heads, length, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.start = 0

    def seek(self, start: int) -> None:
        self.start = start

    def get_seq_length(self, layer_idx: int = 0) -> int:
        """Slots written before the current update (transformers < 5.2x derives positions from it)."""
        return self.start

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        end = self.start + key_states.shape[2]
        k, v = self.keys[layer_idx], self.values[layer_idx]
        k[:, :, self.start : end].copy_(key_states)
        v[:, :, self.start : end].copy_(value_states)
        # contiguous, as the dynamic cache's concatenation: same strides, same matmul kernels
        return k[:, :, :end].contiguous(), v[:, :, :end].contiguous()


class SpatialVLAForConditionalGeneration(nn.Module):
    def __init__(self, config: SpatialVLAConfig) -> None:
        super().__init__()
        self.config = config
        self.vision_tower = SiglipVisionModel(config.vision_config)
        self.multi_modal_projector = PaliGemmaMultiModalProjector(
            SimpleNamespace(vision_config=config.vision_config)
        )
        self.language_model = Gemma2ForCausalLM(config.text_config)
        if config.use_vision_zoe:
            self.vision_zoe_model = ZoeDepthForDepthEstimation(config.vision_zoe_config)
            # the official model (transformers 4.47) runs BEiT's attention eagerly; transformers 5
            # picks SDPA, whose rounding differs and grows through the depth head in bf16
            self.vision_zoe_model.backbone.set_attn_implementation("eager")
            self.position_embedding_3d = Ego3DPositionEmbedding(
                3 * config.ego3d_patch_reso**2, config.vision_config.hidden_size, config.n_freqs
            )
        if config.use_spatial_token:
            self.spatial_embed_tokens = nn.Embedding(config.spatial_token_num, config.text_config.hidden_size)

    @property
    def device(self) -> torch.device:
        return self.multi_modal_projector.linear.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.multi_modal_projector.linear.weight.dtype

    # -- vision -----------------------------------------------------------------------------
    @torch.no_grad()
    def estimate_depth(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """ZoeDepth metric depth (B, 1, S, S) of [0, 1] images (B, 3, S, S): reflect-pad, resize to
        384, normalise, predict, resize back and crop, as the official model does."""
        s = pixel_values.shape[-1]
        x = F.pad(pixel_values.to(self.dtype), (ZOE_PAD,) * 4, mode="reflect")
        x = F.interpolate(x, size=(ZOE_SIZE, ZOE_SIZE), mode="bicubic", align_corners=True)
        x = (x - 0.5) / 0.5
        pred = self.vision_zoe_model(pixel_values=x).predicted_depth.unsqueeze(1)
        pred = F.interpolate(pred, size=(s + 2 * ZOE_PAD,) * 2, mode="bicubic", align_corners=True)
        return pred[..., ZOE_PAD:-ZOE_PAD, ZOE_PAD:-ZOE_PAD].float()

    def siglip(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """E_O (B, N, Dv), SigLIP's patch embeddings of [0, 1] images (B, 3, S, S): the one part of
        the query that needs no depth (the fast path runs it while the traces are computed)."""
        self._check_pixels(pixel_values)
        return self.vision_tower((pixel_values.to(self.dtype) - 0.5) / 0.5).last_hidden_state

    def _check_pixels(self, pixel_values: torch.Tensor) -> None:
        s = self.config.image_size
        if pixel_values.ndim != 4 or tuple(pixel_values.shape[1:]) != (3, s, s):
            raise ValueError(f"pixel_values: expected (B, 3, {s}, {s}), found {tuple(pixel_values.shape)}")

    def visual_embedding(
        self,
        pixel_values: torch.Tensor,
        intrinsics: torch.Tensor | None = None,
        depth: torch.Tensor | None = None,
        siglip: torch.Tensor | None = None,
    ) -> VisualEmbedding:
        """E_V = E_O + E_D(depth): `depth` (B, 1, S, S) metres replaces ZoeDepth's estimate;
        `siglip` (E_O, from `siglip`) spares running the vision tower again."""
        cfg = self.config
        self._check_pixels(pixel_values)
        siglip = self.siglip(pixel_values) if siglip is None else siglip
        b, _, h, w = pixel_values.shape
        ego3d = points = None
        source = "none"
        if cfg.use_vision_zoe:
            if intrinsics is None:
                raise ValueError(
                    "intrinsics (B, 3, 3) are needed to back-project depth for the Ego3D encoding"
                )
            if depth is None:
                depth, source = self.estimate_depth(pixel_values), "zoedepth"
            else:
                g = (h // cfg.patch_size) * cfg.ego3d_patch_reso
                if depth.shape not in ((b, 1, h, w), (b, 1, g, g)):
                    raise ValueError(
                        f"depth: expected {(b, 1, h, w)} to match the images (or {(b, 1, g, g)} pooled "
                        f"to the Ego3D grid), found {tuple(depth.shape)}"
                    )
                depth, source = depth.float(), "given"
            with torch.no_grad():
                points = backproject_patches(
                    depth, intrinsics.to(depth.device), cfg.patch_size, cfg.ego3d_patch_reso, self.dtype, h
                )
            ego3d = self.position_embedding_3d(points)
            siglip_plus = siglip + ego3d
        else:
            siglip_plus, depth = siglip, None
        features = self.multi_modal_projector(siglip_plus) / (cfg.text_config.hidden_size**0.5)
        return VisualEmbedding(siglip, ego3d, depth, points, features, source)

    # -- language ---------------------------------------------------------------------------
    def _token_embeddings(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Unscaled embeddings; spatial action tokens take the shared spatial embeddings. Chosen
        per token with `where` (no data-dependent branch), so it runs inside a CUDA graph."""
        emb = F.embedding(input_ids, self.language_model.get_input_embeddings().weight)
        if self.config.use_spatial_token:
            rel = input_ids - self.config.action_token_begin_idx
            spatial = (rel >= 0) & (rel < self.config.spatial_token_num)
            idx = rel.clamp(0, self.config.spatial_token_num - 1)
            emb = torch.where(spatial[..., None], self.spatial_embed_tokens(idx).to(emb.dtype), emb)
        return emb

    def _scale(self, embeds: torch.Tensor) -> torch.Tensor:
        # Gemma multiplies every input embedding by sqrt(hidden) (transformers 5 does it inside
        # embed_tokens only, so we do it here for all of them, in the embedding dtype as 4.47 did)
        return embeds * torch.tensor(self.config.text_config.hidden_size**0.5, dtype=embeds.dtype)

    def check_image_tokens(self, input_ids: torch.Tensor, images: int) -> None:
        """Every prompt holds one image token per patch of its image (reads the ids on the host)."""
        counts = (input_ids == self.config.image_token_index).sum(1).tolist()
        n = self.config.num_image_tokens
        if len(counts) != images:
            raise ValueError(f"{len(counts)} prompts for {images} images")
        for i, c in enumerate(counts):
            if c != n:
                which = "the prompt" if images == 1 else f"prompt {i}"
                raise ValueError(f"{which} holds {c} image tokens, the images give {n} patch features")

    def merge_embeddings(self, input_ids: torch.Tensor, visual: VisualEmbedding) -> torch.Tensor:
        """Scaled prompt embeddings with the image features in place of the image tokens, in order
        (what masked_scatter does for prompts of one image each), without a host sync."""
        embeds = self._token_embeddings(input_ids)
        mask = input_ids == self.config.image_token_index
        index = (mask.cumsum(1) - 1).clamp(min=0)
        feats = visual.features.to(embeds.dtype)
        feats = feats.gather(1, index[..., None].expand(-1, -1, feats.shape[-1]))
        return self._scale(torch.where(mask[..., None], feats, embeds))

    def input_embeddings(self, input_ids: torch.Tensor, visual: VisualEmbedding) -> torch.Tensor:
        self.check_image_tokens(input_ids, visual.features.shape[0])
        return self.merge_embeddings(input_ids, visual)

    def _lm(
        self,
        embeds: torch.Tensor,
        cache: DynamicCache | StaticKVCache | None,
        start: int,
        valid: torch.Tensor,
        prefix: int,
        logits_to_keep: int = 1,
    ) -> torch.Tensor:
        """Logits of `embeds` (B, q) placed at cache slots [start, start + q). `valid` (B, >= start
        + q) bool marks real tokens over the slots (False: padding); slots below `prefix` are the
        prompt, which attends bidirectionally (PaliGemma prefix-LM)."""
        q = embeds.shape[1]
        valid = valid[:, : start + q]
        masks = attention_masks(valid, start, prefix, self.config.text_config, embeds.dtype)
        positions = valid.long().cumsum(1)[:, start:]  # 1-indexed over real tokens (0 on padding)
        if isinstance(cache, StaticKVCache):
            cache.seek(start)
        # positional: transformers renamed `past_key_values` to `cache` in 5.2x
        out = self.language_model(
            None,
            masks,
            positions,
            cache,
            embeds,
            use_cache=cache is not None,
            logits_to_keep=logits_to_keep,
        )
        return out.logits

    def forward(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor,
        intrinsics: torch.Tensor | None = None,
        depth: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, VisualEmbedding]:
        """Logits (B, L, V) over the whole prompt, and the visual embedding. `attention_mask`
        (B, L), 1 on real tokens and 0 on (left) padding, lets prompts of unequal length share a
        batch."""
        visual = self.visual_embedding(pixel_values, intrinsics, depth)
        embeds = self.input_embeddings(input_ids, visual)
        valid = valid_slots(input_ids, attention_mask)
        logits = self._lm(embeds, None, 0, valid, input_ids.shape[1], logits_to_keep=0)
        return logits, visual

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor,
        intrinsics: torch.Tensor | None = None,
        depth: torch.Tensor | None = None,
        num_tokens: int = 12,
        allowed: list[tuple[int, int]] | None = None,
        top_k: int = 5,
        attention_mask: torch.Tensor | None = None,
    ) -> Generation:
        """Greedy decoding of `num_tokens` tokens with a KV cache. `allowed` cycles through [start,
        end) id ranges, one per position (the action tokenizer's translation/rotation/gripper
        ranges), restricting the argmax; None decodes unconstrained like the official model.
        `attention_mask` (B, L) marks left padding. This is the reference path: a fresh dynamic
        cache, one kernel launch after another (`FastGenerator` runs the same steps captured)."""
        visual = self.visual_embedding(pixel_values, intrinsics, depth)
        embeds = self.input_embeddings(input_ids, visual)
        valid = valid_slots(input_ids, attention_mask, num_tokens)
        # no config: every layer keeps all its keys; the sliding window is applied by the masks
        return self.decode(visual, embeds, DynamicCache(), valid, num_tokens, allowed, top_k)

    def decode(
        self,
        visual: VisualEmbedding,
        embeds: torch.Tensor,
        cache: DynamicCache | StaticKVCache,
        valid: torch.Tensor,
        num_tokens: int,
        allowed: list[tuple[int, int]] | None,
        top_k: int,
    ) -> Generation:
        """Prefill the prompt `embeds` (B, L) into `cache`, then greedy decoding; free of host
        syncs (constrained argmax by slicing, everything stays on the device)."""
        length = embeds.shape[1]
        logits = self._lm(embeds, cache, 0, valid, length)
        ids, probs, tk_ids, tk_probs = [], [], [], []
        for i in range(num_tokens):
            step = logits[:, -1].float()
            p = step.softmax(-1)
            if allowed is not None:
                lo, hi = allowed[i % len(allowed)]
                tok = step[:, lo:hi].argmax(-1) + lo
            else:
                tok = step.argmax(-1)
            ids.append(tok)
            probs.append(p.gather(1, tok[:, None])[:, 0])
            tp, ti = p.topk(top_k, dim=-1)
            tk_ids.append(ti)
            tk_probs.append(tp)
            if i + 1 < num_tokens:
                nxt = self._scale(self._token_embeddings(tok[:, None]))
                logits = self._lm(nxt, cache, length + i, valid, length)
        return Generation(
            torch.stack(ids, 1),
            torch.stack(probs, 1),
            torch.stack(tk_ids, 1),
            torch.stack(tk_probs, 1),
            visual,
        )

    # -- weights in the official layout -------------------------------------------------------
    def official_state_dict(self) -> dict[str, torch.Tensor]:
        """The state dict with the official checkpoint's key names."""
        return {_rename(k, LOCAL_TO_OFFICIAL): v for k, v in self.state_dict().items()}

    def load_official_state_dict(self, state_dict: dict[str, torch.Tensor], assign: bool = False) -> None:
        """Strictly load a state dict in the official key layout (or already in ours)."""
        local = self.state_dict()
        mapped: dict[str, torch.Tensor] = {}
        for key, value in state_dict.items():
            new = key if key in local else _rename(key, OFFICIAL_TO_LOCAL)
            mapped[new] = value
        missing = sorted(set(local) - set(mapped))
        unexpected = sorted(set(mapped) - set(local))
        wrong = [
            f"{k} {tuple(mapped[k].shape)} (expected {tuple(local[k].shape)})"
            for k in sorted(set(local) & set(mapped))
            if mapped[k].shape != local[k].shape
        ]
        if missing or unexpected or wrong:
            raise ValueError(
                "state dict does not match the SpatialVLA layout: "
                f"{len(missing)} missing (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}), "
                f"{len(wrong)} with wrong shape (e.g. {wrong[:3]})"
            )
        self.load_state_dict(mapped, strict=True, assign=assign)

    # -- files ------------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        config: SpatialVLAConfig,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        seed: int | None = 0,
        init: bool = True,
    ) -> SpatialVLAForConditionalGeneration:
        """A randomly initialised model built directly on `device` in `dtype` (no fp32 copy on the
        CPU first); init=False skips initialisation when weights are loaded next."""
        from transformers.initialization import no_init_weights

        if seed is not None:
            torch.manual_seed(seed)
        ctx = contextlib.nullcontext() if init else no_init_weights()
        with torch.device(device), default_dtype(dtype), ctx:
            model = cls(config)
        return model.eval()

    def save_pretrained(
        self, path: str | Path, dtype: torch.dtype | None = None, max_shard_bytes: int | None = None
    ) -> None:
        """config.json + model.safetensors with the official key names, in `dtype` (default: the
        model's). With `max_shard_bytes`, weights over that size are split into
        model-0000k-of-0000n.safetensors files with transformers' index file, so each file stays
        under a transfer or hosting limit. Files are written under temporary names and renamed."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tensors = {
            k: v.detach().to(dtype or v.dtype).contiguous().cpu()
            for k, v in self.official_state_dict().items()
        }
        shards: list[dict[str, torch.Tensor]] = [{}]
        size = 0
        for k, v in tensors.items():
            n = v.numel() * v.element_size()
            if max_shard_bytes and shards[-1] and size + n > max_shard_bytes:
                shards.append({})
                size = 0
            shards[-1][k] = v
            size += n
        names = (
            [WEIGHTS_FILE]
            if len(shards) == 1
            else [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
        )
        for stale in [path / WEIGHTS_FILE, path / WEIGHTS_INDEX, *path.glob("model-*-of-*.safetensors")]:
            stale.unlink(missing_ok=True)
        for name, shard in zip(names, shards, strict=True):
            tmp = path / f".tmp-{name}"
            save_file(shard, str(tmp), metadata={"format": "pt"})
            tmp.replace(path / name)
        if len(shards) > 1:
            index = {
                "metadata": {"total_size": sum(v.numel() * v.element_size() for v in tensors.values())},
                "weight_map": {k: name for name, shard in zip(names, shards, strict=True) for k in shard},
            }
            (path / WEIGHTS_INDEX).write_text(json.dumps(index, indent=2) + "\n")
        self.config.to_json_file(path / CONFIG_FILE)

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str | Path,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> SpatialVLAForConditionalGeneration:
        """A local checkpoint folder or a hub id (downloaded with huggingface_hub). Defaults: bf16
        on a GPU when one is present, float32 on the CPU."""
        from safetensors import safe_open

        root = resolve_checkpoint(path_or_id)
        config = SpatialVLAConfig.from_json_file(root / CONFIG_FILE)
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
        model = cls.build(config, device, dtype, seed=None, init=False)
        if (root / WEIGHTS_INDEX).is_file():
            files = sorted(set(json.loads((root / WEIGHTS_INDEX).read_text())["weight_map"].values()))
        elif (root / WEIGHTS_FILE).is_file():
            files = [WEIGHTS_FILE]
        else:
            raise FileNotFoundError(f"no {WEIGHTS_FILE} or {WEIGHTS_INDEX} in {root}")
        state: dict[str, torch.Tensor] = {}
        for name in files:
            with safe_open(str(root / name), framework="pt", device=str(device)) as f:
                for key in f.keys():
                    state[key] = f.get_tensor(key).to(dtype)
        model.load_official_state_dict(state)
        return model.eval()


def resolve_checkpoint(path_or_id: str | Path) -> Path:
    """A local folder as is; anything else is taken as a hub id and downloaded (config, weights,
    processor and tokenizer files)."""
    path = Path(path_or_id)
    if path.is_dir():
        return path
    if path.exists() or str(path_or_id).startswith((".", "/", "~")) or str(path_or_id).count("/") != 1:
        raise FileNotFoundError(
            f"checkpoint {str(path_or_id)!r} is neither a folder nor a hub id (owner/name)"
        )
    from huggingface_hub import snapshot_download

    try:
        return Path(
            snapshot_download(str(path_or_id), allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt"])
        )
    except Exception as e:  # offline, unknown repo, gated: all end the same way for the user
        raise FileNotFoundError(
            f"checkpoint {str(path_or_id)!r} is not a local folder and could not be downloaded from the hub "
            f"({type(e).__name__}: {e}). Give a local folder, or download it with internet: "
            f"`hf download {path_or_id} --local-dir DIR`"
        ) from None
