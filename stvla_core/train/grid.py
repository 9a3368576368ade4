"""Fit the action vocabulary to a dataset: q01/q99 normalisation statistics and SpatialVLA's
adaptive Gaussian grids over the normalised actions, written as a processor_config.json.

As in SpatialVLA: translations (x, y, z) normalised to [-1, 1] become spherical (theta, phi, r),
and each of theta, phi, r, roll, pitch, yaw gets a Gaussian (mean and standard deviation of the
dataset's values); bin edges are that Gaussian's equal-mass quantiles, so every token is about
equally frequent. A dimension that never varies (roll and pitch of a yaw-only expert) is left
unnormalised (mask false) and its grid gets `min_sigma`, so its value 0 decodes back to ~0."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from stvla_core.model.action_tokenizer import ActionGrid, ActionStatistics, cartesian_to_spherical
from stvla_core.model.processing_spatialvla import PROCESSOR_FILE

# the official grid sizes: 16 x 32 x 8 translation cells, 16^3 rotation cells, 2 gripper tokens
NUM_BINS = {
    "translation": {"theta_bins": 16, "phi_bins": 32, "r_bins": 8},
    "rotation": {"roll_bins": 16, "pitch_bins": 16, "yaw_bins": 16},
    "gripper": 2,
    "total": 8194,
}
MIN_SIGMA = 0.05
CONSTANT_SPAN = 1e-6  # q99 - q01 below this: the dimension does not vary


def action_statistics(actions: np.ndarray) -> dict[str, Any]:
    """(N, 7) actions -> the processor's statistics entry ({"action": {mean, std, q01, q99, mask}}).
    The gripper (last dimension) is never normalised: it is already in [0, 1]."""
    a = np.asarray(actions, np.float64)
    if a.ndim != 2 or a.shape[1] != 7 or len(a) < 2:
        raise ValueError(f"actions: expected (N >= 2, 7), found {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError("actions hold NaN or inf")
    q01, q99 = np.quantile(a, 0.01, axis=0), np.quantile(a, 0.99, axis=0)
    mask = (q99 - q01) > CONSTANT_SPAN
    mask[6] = False
    return {
        "action": {
            "mean": a.mean(0).tolist(),
            "std": a.std(0).tolist(),
            "q01": q01.tolist(),
            "q99": q99.tolist(),
            "mask": mask.tolist(),
        }
    }


def gaussian_params(normalized: np.ndarray, min_sigma: float = MIN_SIGMA) -> dict[str, dict[str, float]]:
    """(N, 7) normalised actions -> {"theta"|"phi"|"r"|"roll"|"pitch"|"yaw": {"mu", "sigma"}}."""
    tpr = cartesian_to_spherical(normalized[:, :3])
    values = {"theta": tpr[:, 0], "phi": tpr[:, 1], "r": tpr[:, 2]}
    values.update({"roll": normalized[:, 3], "pitch": normalized[:, 4], "yaw": normalized[:, 5]})
    return {k: {"mu": float(v.mean()), "sigma": float(max(v.std(), min_sigma))} for k, v in values.items()}


def fit_grid(actions: np.ndarray, min_sigma: float = MIN_SIGMA) -> tuple[dict[str, Any], dict, ActionGrid]:
    """(N, 7) actions -> (statistics entry, Gaussian parameters, grid)."""
    stats = action_statistics(actions)
    normalized = ActionStatistics.from_dict(stats).normalize(np.asarray(actions, np.float64))
    gs = gaussian_params(normalized, min_sigma)
    grid = ActionGrid.gaussian(gs, NUM_BINS, min_sigma)
    return stats, gs, grid


def write_processor_config(
    path: str | Path,
    actions: np.ndarray,
    unnorm_key: str,
    intrinsics: np.ndarray,
    image_hw: tuple[int, int],
    chunk_size: int = 4,
    comment: str = "",
) -> dict[str, Any]:
    """A processor_config.json for a byte-tokenizer model whose action vocabulary is fitted to
    `actions`, with `unnorm_key` as its only (and so default) dataset and camera."""
    stats, gs, grid = fit_grid(actions)
    camera = {
        "intrinsic": np.asarray(intrinsics, np.float64).tolist(),
        "height": image_hw[0],
        "width": image_hw[1],
    }
    config = {
        "_comment": comment,
        "processor_class": "SpatialVLAProcessor",
        "text_tokenizer": "bytes",
        "action_chunk_size": chunk_size,
        "num_obs_steps": 1,
        "obs_delta": 1,
        "min_sigma": MIN_SIGMA,
        "action_config": {"distribution": "gaussian", "num_bins": NUM_BINS, "use_spherical": True},
        "gs_params": gs,
        "bin_policy": grid.to_bin_policy(),
        "intrinsic_config": {unnorm_key: camera, "default": camera},
        "statistics": {unnorm_key: stats},
    }
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    (out / PROCESSOR_FILE).write_text(json.dumps(config, indent=2) + "\n")
    return config
