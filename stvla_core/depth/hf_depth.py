"""Metric depth from RGB with transformers' depth models: `zoedepth` (the paper's choice,
ZoeDepthForDepthEstimation, e.g. Intel/zoedepth-nyu-kitti) and `depth_anything` (metric
Depth Anything V2 checkpoints). Loaded from a local folder or a hub id, exactly as a user with
internet would; missing weights raise DepthUnavailableError saying how to get them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from stvla_core.depth.base import DEPTH_ESTIMATORS, DepthUnavailableError, sanitize_depth


@dataclass
class HFDepthConfig:
    model: str = "Intel/zoedepth-nyu-kitti"  # local folder or hub id
    device: str = "cpu"


class HFDepth:
    """Runs one transformers depth model per frame and resizes its metric output back to the frame."""

    def __init__(self, name: str, config: HFDepthConfig) -> None:
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        self.name = name
        self.config = config
        try:
            self.processor = AutoImageProcessor.from_pretrained(config.model)
            self.model = AutoModelForDepthEstimation.from_pretrained(config.model)
        except (OSError, ValueError) as e:
            raise DepthUnavailableError(
                f"depth model {config.model!r} for depth source {name!r} could not be loaded ({e}). "
                f"Give a local folder holding config.json, the weights and preprocessor_config.json, "
                f"or download it with internet: `hf download {config.model} --local-dir DIR`"
            ) from None
        self.model.to(config.device).eval()

    @torch.inference_mode()
    def estimate(self, frame: np.ndarray, given: np.ndarray | None = None) -> np.ndarray:
        if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"frame: expected (H, W, 3) uint8, found {frame.shape} {frame.dtype}")
        h, w = frame.shape[:2]
        inputs = self.processor(images=frame, return_tensors="pt").to(self.config.device)
        outputs = self.model(**inputs)
        post = self.processor.post_process_depth_estimation(outputs, target_sizes=[(h, w)])
        depth = post[0]["predicted_depth"].float().cpu().numpy()
        if depth.shape != (h, w):
            raise RuntimeError(f"depth model returned {depth.shape}, expected {(h, w)}")
        return sanitize_depth(depth)


@DEPTH_ESTIMATORS.register("zoedepth")
def make_zoedepth(model: str = "Intel/zoedepth-nyu-kitti", device: str = "cpu") -> HFDepth:
    return HFDepth("zoedepth", HFDepthConfig(model=model, device=device))


@DEPTH_ESTIMATORS.register("depth_anything")
def make_depth_anything(
    model: str = "depth-anything/Depth-Anything-V2-Metric-Indoor-Small-hf", device: str = "cpu"
) -> HFDepth:
    return HFDepth("depth_anything", HFDepthConfig(model=model, device=device))
