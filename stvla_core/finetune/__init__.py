"""LoRA fine-tuning of the ST-VLA model on episodes (traced depth in, spatial action tokens out)."""

from stvla_core.finetune.adapter import load_adapter, save_adapter
from stvla_core.finetune.config import FinetuneConfig, FinetuneConfigError
from stvla_core.finetune.samples import Samples, action_chunks, build_samples
from stvla_core.finetune.trainer import RunResult, complete_checkpoints, train

__all__ = [
    "FinetuneConfig",
    "FinetuneConfigError",
    "RunResult",
    "Samples",
    "action_chunks",
    "build_samples",
    "complete_checkpoints",
    "load_adapter",
    "save_adapter",
    "train",
]
