"""Trackers, one registry: `lk` (weight-free default), `oracle` (ground truth), `cotracker3`."""

from stvla_core.tracking import lk, oracle  # noqa: F401  (registers the trackers)
from stvla_core.tracking.base import (
    TRACKERS,
    Clip,
    Tracker,
    TrackerUnavailableError,
    Tracks,
    grid_points,
)
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
]
