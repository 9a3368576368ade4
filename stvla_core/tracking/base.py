"""The tracker protocol: every tracker turns a clip of frames into point tracks of one shape, so the
trace renderer, the quality tables and the app never care which tracker made them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from stvla_core.registry import Registry


class TrackerUnavailableError(RuntimeError):
    """A tracker was asked for whose code or weights are not present; the message says how to get them."""


@dataclass(frozen=True)
class Clip:
    """What a tracker sees: the frames of one buffer window, oldest first.

    frames:     (b, H, W, 3) uint8 RGB
    indices:    (b,) int64 frame indices in the episode (lets trackers cache per frame)
    gt_points:  (b, N, 2) float32 ground-truth pixel positions, if the episode has them
    gt_visible: (b, N) bool
    queries:    (N, 2) float32 (x, y) points on the newest frame to track; None = the tracker's grid
    key:        identifies the episode, so caches of different episodes never mix
    """

    frames: np.ndarray
    indices: np.ndarray
    gt_points: np.ndarray | None = None
    gt_visible: np.ndarray | None = None
    queries: np.ndarray | None = None
    key: str = ""

    def __post_init__(self) -> None:
        f = self.frames
        if f.ndim != 4 or f.shape[-1] != 3 or f.dtype != np.uint8:
            raise ValueError(f"clip frames: expected (b, H, W, 3) uint8, found {f.shape} {f.dtype}")
        if self.indices.shape != (f.shape[0],):
            raise ValueError(f"clip indices: expected shape ({f.shape[0]},), found {self.indices.shape}")
        if self.queries is not None and (self.queries.ndim != 2 or self.queries.shape[1] != 2):
            raise ValueError(f"clip queries: expected (N, 2), found {self.queries.shape}")

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the frames."""
        return int(self.frames.shape[1]), int(self.frames.shape[2])


@dataclass(frozen=True)
class Tracks:
    """points: (b, N, 2) float32 (x, y) pixels of the clip's frames; visible: (b, N) bool."""

    points: np.ndarray
    visible: np.ndarray

    def __post_init__(self) -> None:
        p, v = self.points, self.visible
        if p.ndim != 3 or p.shape[-1] != 2:
            raise ValueError(f"track points: expected (b, N, 2), found {p.shape}")
        if v.shape != p.shape[:2]:
            raise ValueError(f"track visibility: expected {p.shape[:2]}, found {v.shape}")

    @property
    def num_points(self) -> int:
        return int(self.points.shape[1])

    def subset(self, idx: np.ndarray) -> Tracks:
        return Tracks(self.points[:, idx], self.visible[:, idx])


@runtime_checkable
class Tracker(Protocol):
    """Tracks points through a clip. Query points lie on the newest frame (the one the traces are
    drawn onto) and are followed back through the window, so every trace ends on frame t."""

    name: str

    def track(self, clip: Clip) -> Tracks: ...


TRACKERS: Registry[Tracker] = Registry("tracker")


def track_clips(trackers: Sequence[Tracker], clips: Sequence[Clip]) -> list[Tracks]:
    """Each tracker's clip (B environments stepped together). Trackers of a kind that tracks
    several clips in one call, a static `track_many(trackers, clips)` (CoTracker3: one network
    call for all B), do so; the others track one clip after another."""
    if len(trackers) != len(clips):
        raise ValueError(f"track_clips: {len(trackers)} trackers for {len(clips)} clips")
    kind = type(trackers[0]) if trackers else None
    many = getattr(kind, "track_many", None)
    if many is not None and all(type(t) is kind for t in trackers):
        return many(trackers, clips)
    return [t.track(c) for t, c in zip(trackers, clips, strict=True)]


def grid_points(size: tuple[int, int], grid: int, margin: float = 4.0) -> np.ndarray:
    """(grid*grid, 2) float32 (x, y) points evenly spread over an (H, W) frame, `margin` px from
    its border (as CoTracker's grid queries are), row by row."""
    h, w = size
    xs = np.linspace(margin, w - 1 - margin, grid, dtype=np.float32)
    ys = np.linspace(margin, h - 1 - margin, grid, dtype=np.float32)
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([gx.ravel(), gy.ravel()], axis=1)
