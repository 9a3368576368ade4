"""The full-training configuration of ST-VLA-S: a dataclass that round-trips to JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from stvla_core.train.pack import parse_mode

UNNORM_KEY = "maniskill_panda_10hz"


@dataclass
class TrainConfig:
    pack: str = "data/stvla-sim-pack"
    run_dir: str = "runs/stvla-s"
    depth_mode: str = (
        "C"  # which of the pack's depth inputs the model is trained on ("none", "raw", "C@7", ...)
    )
    hidden: int = 256
    layers: int = 6
    heads: int = 4
    steps: int = 6000
    batch_size: int = 128
    learning_rate: float = 3e-4
    min_lr_ratio: float = 0.1  # cosine decay to this fraction of learning_rate
    warmup_steps: int = 300
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "auto"  # "auto": cuda when present, else cpu
    dtype: str = "auto"  # "auto": bfloat16 autocast on a GPU, float32 on the CPU
    log_every: int = 50
    eval_every: int = 500
    checkpoint_every: int = 1000
    val_samples: int = 1024  # held-out frames scored at each evaluation (a fixed subset)
    unnorm_key: str = UNNORM_KEY
    chunk_size: int = 4
    decode_workers: int = 0  # processes decoding the pack's videos; 0: the CPU count
    resume: bool = True
    # > 0: measure the first steps' speed and train only as many steps as fit this many seconds
    # (the learning-rate schedule is laid over that count); for machines leased by the minute
    time_budget_s: float = 0.0
    # runs sharing one GPU at equal budget: each writes its step count for time_budget_s into this
    # folder and all train the smallest of `budget_group_size` counts (the same steps for every row)
    budget_group: str = ""
    budget_group_size: int = 0
    # random shift of each training image by up to this many pixels (edges repeated), the pooled depth
    # shifted by the same amount in grid cells: against overfitting to the few hundred demonstrations
    augment_shift: int = 0
    # a model folder (or "stvla-s") whose weights start a new run instead of random ones: training
    # continues on this pack (new camera, more data) with the pack's own grid and intrinsics; the
    # architecture must match hidden/layers/heads. Ignored when the run resumes its own checkpoint
    init_from: str = ""

    def validate(self) -> None:
        parse_mode(self.depth_mode)
        if self.augment_shift < 0:
            raise ValueError(f"augment_shift: expected >= 0 pixels, found {self.augment_shift}")
        if self.budget_group and (self.budget_group_size < 1 or self.time_budget_s <= 0):
            raise ValueError("budget_group needs budget_group_size >= 1 and a time_budget_s")
        for name in (
            "hidden",
            "layers",
            "heads",
            "steps",
            "batch_size",
            "log_every",
            "eval_every",
            "checkpoint_every",
            "chunk_size",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, found {getattr(self, name)}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden {self.hidden} is not a multiple of heads {self.heads}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate: expected > 0, found {self.learning_rate}")
        if self.dtype not in ("auto", "float32", "bfloat16"):
            raise ValueError(f"dtype: expected auto, float32 or bfloat16, found {self.dtype!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training settings {unknown}; known: {sorted(known)}")
        return cls(**data)

    @classmethod
    def from_json(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))
