"""Trackers, one registry: `lk` (weight-free default), `oracle` (ground truth), `cotracker3`
(the paper's tracker) and `cotracker3_chained` (CoTracker3 over short hops, for live stepping)."""

from stvla_core.tracking import lk, oracle  # noqa: F401  (registers the trackers)
from stvla_core.tracking.base import (
    TRACKERS,
    Clip,
    Tracker,
    TrackerUnavailableError,
    Tracks,
    grid_points,
    track_clips,
)
from stvla_core.tracking.cotracker3 import chain, tracker  # noqa: F401  (registers the CoTracker3 ones)
from stvla_core.tracking.selection import SelectionConfig, select_active

__all__ = [
    "TRACKERS",
    "Clip",
    "SelectionConfig",
    "Tracker",
    "TrackerUnavailableError",
    "Tracks",
    "grid_points",
    "select_active",
    "track_clips",
]
