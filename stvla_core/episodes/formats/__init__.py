"""Episode file formats behind one registry. Importing this package registers them all; the
import order is the detection order (specific formats before generic ones)."""

from stvla_core.episodes.formats import native, simplerenv, lerobot, video, frames  # noqa: F401, I001  (registers, in order)
from stvla_core.episodes.formats.registry import (
    EPISODE_FORMATS,
    EpisodeFormat,
    LoadLimits,
    detect_format,
    load_episode,
    save_episode,
)

__all__ = ["EPISODE_FORMATS", "EpisodeFormat", "LoadLimits", "detect_format", "load_episode", "save_episode"]
