"""Active-point selection as TraceVLA does it: keep the tracks that moved over the window, then
sample at most K of them (TraceVLA: 5), reproducibly for a seed.

TraceVLA keeps a point when the mean over steps of its per-step L1 displacement exceeds 1 px. We
count only steps where the point is visible at both ends, and require it visible on the newest
frame (the traces are drawn there). Unlike TraceVLA, which draws nothing when K or fewer points
move, we keep all of them: a debugger should show what moved."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stvla_core.tracking.base import Tracks


@dataclass
class SelectionConfig:
    max_traces: int = 5  # K
    min_displacement: float = 1.0  # px, mean per-step L1 displacement
    seed: int = 0


def mean_step_displacement(tracks: Tracks) -> np.ndarray:
    """(N,) mean L1 displacement per visible step pair; 0 where a point has no such pair."""
    step = np.abs(np.diff(tracks.points, axis=0)).sum(-1)  # (b-1, N)
    both = tracks.visible[1:] & tracks.visible[:-1]
    count = both.sum(0)
    total = np.where(both, step, 0.0).sum(0)
    return np.where(count > 0, total / np.maximum(count, 1), 0.0).astype(np.float32)


def select_active(tracks: Tracks, config: SelectionConfig | None = None) -> np.ndarray:
    """Sorted indices (<= K) of the active points."""
    c = config or SelectionConfig()
    if c.max_traces < 0:
        raise ValueError(f"max_traces must be >= 0, found {c.max_traces}")
    moving = (mean_step_displacement(tracks) > c.min_displacement) & tracks.visible[-1]
    ids = np.flatnonzero(moving)
    if len(ids) > c.max_traces:
        ids = np.sort(np.random.default_rng(c.seed).choice(ids, size=c.max_traces, replace=False))
    return ids
