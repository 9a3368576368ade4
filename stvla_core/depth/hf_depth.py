"""Metric depth from RGB with transformers' depth models: `zoedepth` (the paper's choice,
ZoeDepthForDepthEstimation, e.g. Intel/zoedepth-nyu-kitti) and `depth_anything` (metric
Depth Anything V2 checkpoints). Loaded from a local folder or a hub id, exactly as a user with
internet would; missing weights raise DepthUnavailableError saying how to get them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

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

    def _to_frame_size(self, pred: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """Resize the prediction back to the frame. ZoeDepth's processor pads its input by
        int(sqrt(side / 2) * 3) px per side (reflect) against border artefacts; that padding is cut
        off here as ZoeDepth does. transformers' own post-processing needs torchvision, which has no
        CPU build here, so this is done with torch alone (bicubic, as there)."""
        ph = pw = 0
        if getattr(self.processor, "do_pad", False):
            ph, pw = int(np.sqrt(h / 2) * 3), int(np.sqrt(w / 2) * 3)
        x = F.interpolate(pred[:, None], size=(h + 2 * ph, w + 2 * pw), mode="bicubic", align_corners=False)
        return x[0, 0, ph : ph + h, pw : pw + w]

    @torch.inference_mode()
    def estimate(self, frame: np.ndarray, given: np.ndarray | None = None) -> np.ndarray:
        if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"frame: expected (H, W, 3) uint8, found {frame.shape} {frame.dtype}")
        h, w = frame.shape[:2]
        inputs = self.processor(images=frame, return_tensors="pt").to(self.config.device)
        pred = self.model(**inputs).predicted_depth  # (1, h', w') metres
        depth = self._to_frame_size(pred.float(), h, w).cpu().numpy()
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
