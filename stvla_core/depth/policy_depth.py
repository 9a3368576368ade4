"""`policy`: the policy model's own depth estimate (SpatialVLA's embedded ZoeDepth, what it sees
without a depth input), for episodes recorded without depth: traces are then drawn on what the
policy itself would estimate. It needs the policy's model, so a `Policy` builds it for its trace
pipeline; built by name anywhere else it says so."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from stvla_core.depth.base import DEPTH_ESTIMATORS, DepthUnavailableError, sanitize_depth


class PolicyDepth:
    name = "policy"

    def __init__(self, model: Any, processor: Any) -> None:
        self.model = model
        self.processor = processor

    @torch.no_grad()
    def estimate(self, frame: np.ndarray, given: np.ndarray | None = None) -> np.ndarray:
        """The model's metric estimate of the (H, W, 3) uint8 frame at its input size, resized
        back to (H, W) float32 metres (bilinear)."""
        h, w = frame.shape[:2]
        pixels = self.processor.pixel_values(frame)[None].to(self.model.device)
        depth = self.model.estimate_depth(pixels).float()  # (1, 1, S, S)
        depth = F.interpolate(depth, size=(h, w), mode="bilinear", align_corners=False)[0, 0]
        return sanitize_depth(depth.cpu().numpy())


@DEPTH_ESTIMATORS.register("policy")
def make_policy_depth(model: Any = None, processor: Any = None) -> PolicyDepth:
    if model is None or processor is None:
        raise DepthUnavailableError(
            "depth source 'policy' is the policy model's own estimate: it is available where a policy "
            "runs (the app's Inspector, stvla_core.policy.Policy), not on its own"
        )
    if not model.config.use_vision_zoe:
        raise DepthUnavailableError("depth source 'policy': this policy's model has no depth estimator")
    return PolicyDepth(model, processor)
