"""Episodes: the validated data model and the file formats that load and save it."""

from stvla_core.episodes.episode import ACTION_DIM, ACTION_NAMES, Episode, EpisodeError

__all__ = ["ACTION_DIM", "ACTION_NAMES", "Episode", "EpisodeError"]
