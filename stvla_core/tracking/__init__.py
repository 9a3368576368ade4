"""Trackers, one registry: `lk` (weight-free default), `oracle` (ground truth), `cotracker3`."""

import importlib.util

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

if importlib.util.find_spec("stvla_core.tracking.cotracker3") is not None:
    importlib.import_module("stvla_core.tracking.cotracker3.tracker")  # registers "cotracker3"
else:

    @TRACKERS.register("cotracker3")
    def _cotracker3_not_built(**_: object) -> Tracker:
        raise TrackerUnavailableError(
            "tracker 'cotracker3' is not available yet in this version of ST-VLA Studio; "
            "use 'lk' (weight-free) or 'oracle' (ground truth)"
        )


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
