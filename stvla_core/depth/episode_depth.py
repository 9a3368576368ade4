"""`episode`: the depth that came with the frames (simulator ground truth, a depth camera)."""

from __future__ import annotations

import numpy as np

from stvla_core.depth.base import DEPTH_ESTIMATORS, DepthUnavailableError, sanitize_depth


class EpisodeDepth:
    name = "episode"

    def estimate(self, frame: np.ndarray, given: np.ndarray | None = None) -> np.ndarray:
        if given is None:
            raise DepthUnavailableError(
                "depth source 'episode' needs depth recorded with the frames, and this episode has "
                "none; choose a model source such as 'zoedepth' (depth estimated from RGB)"
            )
        if given.shape != frame.shape[:2]:
            raise ValueError(f"depth has shape {given.shape}, frame is {frame.shape[:2]}")
        return sanitize_depth(given)


@DEPTH_ESTIMATORS.register("episode")
def make_episode_depth() -> EpisodeDepth:
    return EpisodeDepth()
