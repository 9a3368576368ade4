"""The depth-estimator protocol: one metric depth map per frame, same size as the frame."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from stvla_core.registry import Registry


class DepthUnavailableError(RuntimeError):
    """A depth source was asked for that cannot serve: no depth in the episode, or missing weights."""


@runtime_checkable
class DepthEstimator(Protocol):
    """`estimate(frame, given)` -> (H, W) float32 metres for an (H, W, 3) uint8 RGB frame; 0 marks
    invalid pixels. `given` is the depth that came with the frame (an episode's own depth, a
    simulator's), or None; sources that read it (`episode`) fail clearly when it is missing, model
    sources ignore it."""

    name: str

    def estimate(self, frame: np.ndarray, given: np.ndarray | None = None) -> np.ndarray: ...


DEPTH_ESTIMATORS: Registry[DepthEstimator] = Registry("depth estimator")


def sanitize_depth(depth: np.ndarray) -> np.ndarray:
    """float32 copy with NaN, inf and negative values set to 0 (the one 'invalid' marker)."""
    d = np.asarray(depth, dtype=np.float32).copy()
    d[~np.isfinite(d) | (d < 0)] = 0.0
    return d
