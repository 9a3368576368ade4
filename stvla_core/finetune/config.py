"""Fine-tuning config: a plain dataclass that round-trips through JSON, validated up front so a bad
value fails before any model is built."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stvla_core.model.processing_spatialvla import DEFAULT_UNNORM_KEY
from stvla_core.traces import VARIANTS

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")


class FinetuneConfigError(ValueError):
    """A fine-tuning config value is invalid; the message names the field, the expected, the found."""


@dataclass
class FinetuneConfig:
    episodes: list[str] = field(default_factory=list)  # episode files (any format load_episode reads)
    run_dir: str = "runs/finetune"
    model: str = "tiny"  # "tiny" or a SpatialVLA checkpoint folder / hub id
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"  # float32 | bfloat16 | float16
    # samples
    variant: str = "C"  # traced-depth variant fed to the model
    buffer: int = 30
    tracker: str = "lk"
    depth: str = "episode"
    every: int = 1  # take every n-th step of each episode
    unnorm_key: str = DEFAULT_UNNORM_KEY
    # LoRA
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_TARGETS))
    modules_to_save: list[str] = field(default_factory=list)  # e.g. ["spatial_embed_tokens"]
    # optimisation
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 0
    steps: int = 100
    batch_size: int = 2
    checkpoint_every: int = 50
    log_every: int = 1
    resume: bool = True  # continue from the newest complete checkpoint in run_dir

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def need(ok: bool, name: str, expected: str) -> None:
            if not ok:
                raise FinetuneConfigError(f"{name}: expected {expected}, found {getattr(self, name)!r}")

        need(
            isinstance(self.episodes, (list, tuple)) and len(self.episodes) > 0,
            "episodes",
            "a non-empty list of episode paths",
        )
        need(self.rank >= 1, "rank", "an integer >= 1")
        need(self.alpha > 0, "alpha", "> 0")
        need(0.0 <= self.dropout < 1.0, "dropout", "in [0, 1)")
        need(
            isinstance(self.target_modules, (list, tuple)) and len(self.target_modules) > 0,
            "target_modules",
            "a non-empty list of module names",
        )
        need(self.learning_rate > 0, "learning_rate", "> 0")
        need(self.weight_decay >= 0, "weight_decay", ">= 0")
        need(self.warmup_steps >= 0, "warmup_steps", ">= 0")
        need(self.steps >= 1, "steps", "an integer >= 1")
        need(self.batch_size >= 1, "batch_size", "an integer >= 1")
        need(self.checkpoint_every >= 1, "checkpoint_every", "an integer >= 1")
        need(self.log_every >= 1, "log_every", "an integer >= 1")
        need(self.every >= 1, "every", "an integer >= 1")
        need(self.buffer >= 2, "buffer", "an integer >= 2")
        need(self.variant in VARIANTS, "variant", f"one of {', '.join(VARIANTS)}")
        need(self.dtype in ("float32", "bfloat16", "float16"), "dtype", "float32, bfloat16 or float16")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FinetuneConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise FinetuneConfigError(
                f"unknown config field(s) {', '.join(unknown)}; expected some of {', '.join(sorted(names))}"
            )
        return cls(**data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> FinetuneConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))
