"""Episode file formats behind one registry. Importing this package registers them all."""

from stvla_core.episodes.formats import native  # noqa: F401  (registers)
from stvla_core.episodes.formats.registry import (
    EPISODE_FORMATS,
    EpisodeFormat,
    LoadLimits,
    detect_format,
    load_episode,
    save_episode,
)

__all__ = ["EPISODE_FORMATS", "EpisodeFormat", "LoadLimits", "detect_format", "load_episode", "save_episode"]
