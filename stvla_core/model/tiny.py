"""The tiny ST-VLA model: the official layout at 32-wide, 2-layer size, built from a seed in well
under a second on a CPU, with the shipped processor files (the real 8194-token action grid,
Bridge statistics, the default camera) from `assets/models/stvla-tiny/`. Untrained: its actions
are valid but meaningless; it exists so that tests and the app run without downloads."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from stvla_core.model import configuration_spatialvla
from stvla_core.model.modeling_spatialvla import SpatialVLAForConditionalGeneration
from stvla_core.model.processing_spatialvla import SpatialVLAProcessor

TINY_ASSETS = Path(__file__).resolve().parents[2] / "assets" / "models" / "stvla-tiny"


def tiny_model(seed: int = 0, device: str | torch.device = "cpu") -> SpatialVLAForConditionalGeneration:
    """The same seed gives the same weights. The Ego3D MLP gets full-gain weights (the official
    init is 100x smaller, so that training starts from SigLIP) so that depth visibly changes the
    untrained model's tokens."""
    model = SpatialVLAForConditionalGeneration.build(
        configuration_spatialvla.tiny_config(), device, torch.float32, seed=seed
    )
    with torch.no_grad():
        for p in model.position_embedding_3d.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p, gain=1.0)
    return model


def processor_for(
    model: SpatialVLAForConditionalGeneration, path: str | Path = TINY_ASSETS
) -> SpatialVLAProcessor:
    """The processor of the folder `path` matched to the model's token layout and input size."""
    cfg = model.config
    return SpatialVLAProcessor.from_pretrained(
        path, cfg.image_token_index, cfg.action_token_begin_idx, cfg.image_size, cfg.num_image_tokens
    )


def tiny_processor() -> SpatialVLAProcessor:
    cfg = configuration_spatialvla.tiny_config()
    return SpatialVLAProcessor.from_pretrained(
        TINY_ASSETS, cfg.image_token_index, cfg.action_token_begin_idx, cfg.image_size, cfg.num_image_tokens
    )
