"""App settings: one dataclass filled from defaults, then environment variables, then CLI flags.

With nothing set the app runs offline: bundled episodes, the `lk` tracker, the episodes' own depth
and the tiny untrained policy. Real backends (CoTracker3 checkpoint, ZoeDepth model, a
SpatialVLA/ST-VLA checkpoint and a LoRA adapter) are opt-in by name or path."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from stvla_core.model.shipped import default_checkpoint

REPO = Path(__file__).resolve().parents[1]
DEFAULT_EPISODES = REPO / "assets" / "episodes"

# field -> (environment variable, CLI flag help)
_ENV = {
    "host": ("STVLA_HOST", "address to serve on"),
    "port": ("STVLA_PORT", "port to serve on"),
    "share": ("STVLA_SHARE", "create a public gradio.live link (needs internet)"),
    "episodes_dir": ("STVLA_EPISODES", "folder of bundled episodes (*.npz) listed in the app"),
    "tracker": ("STVLA_TRACKER", "default tracker (lk, oracle, cotracker3)"),
    "cotracker_checkpoint": (
        "STVLA_COTRACKER_CHECKPOINT",
        "local CoTracker3 .pth (default: the official weights through the torch hub cache)",
    ),
    "depth": ("STVLA_DEPTH", "default depth source (episode, zoedepth, depth_anything)"),
    "depth_model": ("STVLA_DEPTH_MODEL", "depth model folder or hub id for zoedepth/depth_anything"),
    "policy": (
        "STVLA_POLICY",
        "SpatialVLA/ST-VLA checkpoint folder or hub id; 'stvla-s' = the shipped trained model (default), 'tiny' = untrained tiny",
    ),
    "lora": ("STVLA_LORA", "LoRA adapter folder loaded into the policy"),
    "max_upload_mb": ("STVLA_MAX_UPLOAD_MB", "largest upload accepted, and most one episode may read, in MB"),
    "cache_episodes": ("STVLA_CACHE_EPISODES", "how many (episode, settings) results stay cached"),
}


@dataclass(frozen=True)
class AppSettings:
    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False
    episodes_dir: str = str(DEFAULT_EPISODES)
    tracker: str = "lk"
    cotracker_checkpoint: str = ""  # empty: the tracker's own default
    depth: str = "episode"
    depth_model: str = ""  # empty: the depth source's own default (Intel/zoedepth-nyu-kitti)
    policy: str = field(default_factory=default_checkpoint)  # "stvla-s" when shipped, else "tiny"
    lora: str = ""
    max_upload_mb: int = 512
    cache_episodes: int = 6

    def validate(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port: expected 1..65535, found {self.port}")
        if self.max_upload_mb <= 0:
            raise ValueError(f"max_upload_mb: expected > 0, found {self.max_upload_mb}")
        if self.cache_episodes < 1:
            raise ValueError(f"cache_episodes: expected >= 1, found {self.cache_episodes}")
        from stvla_core.depth import DEPTH_ESTIMATORS
        from stvla_core.tracking import TRACKERS

        TRACKERS.get(self.tracker)  # unknown names fail here, listing the valid ones
        DEPTH_ESTIMATORS.get(self.depth)
        if not self.policy.strip():
            raise ValueError("policy: expected 'tiny' or a checkpoint path/hub id, found an empty string")

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024

    def tracker_options(self, tracker: str) -> dict[str, object]:
        """Constructor options for a tracker built by name."""
        if tracker == "cotracker3" and self.cotracker_checkpoint:
            return {"checkpoint": self.cotracker_checkpoint}
        return {}

    def depth_options(self, depth: str) -> dict[str, object]:
        """Constructor options for a depth source built by name."""
        if depth in ("zoedepth", "depth_anything") and self.depth_model:
            return {"model": self.depth_model}
        return {}

    def with_changes(self, **changes: object) -> AppSettings:
        s = replace(self, **changes)
        s.validate()
        return s


def _convert(name: str, raw: str) -> object:
    kind = {f.name: f.type for f in fields(AppSettings)}[name]
    if kind == "bool":
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"{_ENV[name][0]}: expected true/false, found {raw!r}")
    if kind == "int":
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"{_ENV[name][0]}: expected an integer, found {raw!r}") from None
    return raw


def from_env(env: Mapping[str, str] | None = None, base: AppSettings | None = None) -> AppSettings:
    env = os.environ if env is None else env
    changes = {name: _convert(name, env[var]) for name, (var, _) in _ENV.items() if var in env}
    return (base or AppSettings()).with_changes(**changes)


def parse_args(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None, prog: str = "stvla-studio"
) -> AppSettings:
    """CLI flags override environment variables, which override the defaults."""
    base = from_env(env)
    p = argparse.ArgumentParser(prog=prog, description="ST-VLA Studio: the Gradio app")
    for f in fields(AppSettings):
        var, help_text = _ENV[f.name]
        flag = "--" + f.name.replace("_", "-")
        default = getattr(base, f.name)
        if f.type == "bool":
            p.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=default, help=f"{help_text} [{var}]"
            )
        else:
            kind = int if f.type == "int" else str
            p.add_argument(flag, type=kind, default=default, help=f"{help_text} [{var}; default {default!r}]")
    ns = p.parse_args(argv)
    return base.with_changes(**vars(ns))


def env_vars() -> dict[str, str]:
    """field -> environment variable name (documentation and the settings panel)."""
    return {name: var for name, (var, _) in _ENV.items()}
