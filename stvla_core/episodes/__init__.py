"""Episodes: the validated data model and the file formats that load and save it."""

from stvla_core.episodes.episode import ACTION_DIM, ACTION_NAMES, Episode, EpisodeError
from stvla_core.episodes.formats import EPISODE_FORMATS, LoadLimits, detect_format, load_episode, save_episode

__all__ = [
    "ACTION_DIM",
    "ACTION_NAMES",
    "EPISODE_FORMATS",
    "Episode",
    "EpisodeError",
    "LoadLimits",
    "detect_format",
    "load_episode",
    "save_episode",
]
