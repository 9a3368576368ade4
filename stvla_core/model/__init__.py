"""The ST-VLA model: SpatialVLA (PaliGemma2 + ZoeDepth + Ego3D + spatial action tokens) with an
optional traced-depth input, its processor and action tokenizer, and the tiny default."""

from stvla_core.model.action_tokenizer import (
    ActionGrid,
    ActionStatistics,
    ActionTokenError,
    DecodedToken,
    SpatialActionTokenizer,
)
from stvla_core.model.configuration_spatialvla import SpatialVLAConfig, spatialvla_4b, tiny_config
from stvla_core.model.ego3d import Ego3DPositionEmbedding, backproject_patches
from stvla_core.model.modeling_spatialvla import (
    Generation,
    SpatialVLAForConditionalGeneration,
    VisualEmbedding,
    resolve_checkpoint,
)
from stvla_core.model.processing_spatialvla import DecodedActions, ModelInputs, SpatialVLAProcessor
from stvla_core.model.tiny import processor_for, tiny_model, tiny_processor

__all__ = [
    "ActionGrid",
    "ActionStatistics",
    "ActionTokenError",
    "DecodedActions",
    "DecodedToken",
    "Ego3DPositionEmbedding",
    "Generation",
    "ModelInputs",
    "SpatialActionTokenizer",
    "SpatialVLAConfig",
    "SpatialVLAForConditionalGeneration",
    "SpatialVLAProcessor",
    "VisualEmbedding",
    "backproject_patches",
    "processor_for",
    "resolve_checkpoint",
    "spatialvla_4b",
    "tiny_config",
    "tiny_model",
    "tiny_processor",
]
