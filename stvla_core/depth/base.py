"""The depth-estimator protocol: one metric depth map per frame, same size as the frame."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from stvla_core.registry import Registry


class DepthUnavailableError(RuntimeError):
    """A depth source was asked for that cannot serve: no depth in the episode, or missing weights."""


@runtime_checkable
class DepthEstimator(Protocol):
    """`estimate(frame, index)` -> (H, W) float32 metres for an (H, W, 3) uint8 RGB frame; 0 marks
    invalid pixels. `index` is the frame's index in the episode (used by the `episode` source)."""

    name: str

    def estimate(self, frame: np.ndarray, index: int) -> np.ndarray: ...


DEPTH_ESTIMATORS: Registry[DepthEstimator] = Registry("depth estimator")
