"""Fit the action vocabulary to a dataset: q01/q99 normalisation statistics and SpatialVLA's
adaptive Gaussian grids over the normalised actions, written as a processor_config.json.

As in SpatialVLA: translations (x, y, z) normalised to [-1, 1] become spherical (theta, phi, r),
and each of theta, phi, r, roll, pitch, yaw gets a Gaussian (mean and standard deviation of the
dataset's values); bin edges are that Gaussian's equal-mass quantiles, so every token is about
equally frequent. A dimension that never varies (roll and pitch of a yaw-only expert) is left
unnormalised (mask false).

Two departures from SpatialVLA's recipe, both so that a policy can hold still (a quarter of a
scripted expert's actions move nothing, and most of its actions turn nothing):
- normalisation bounds are symmetric, -b..b with b = max(|q01|, |q99|), so 0 stays 0 (with
  q01 = -0.18 and q99 = 0 for yaw, a zero turn would map to +1 and every positive turn be lost);
- an axis whose values are exactly 0 in at least `ZERO_FRACTION` of the actions gets a bin of
  its own around 0 ([-1e-3, 1e-3], or [0, 1e-3] for r), decoded back to (nearly) 0. With plain
  bin centres a hold would decode to a drift of half the first bin (2 mm per step downwards);
- bin edges are the equal-mass quantiles of the data itself rather than of a fitted Gaussian
  (`quantile_edges`): the expert's few step sizes get narrow bins and decode to themselves (a
  Gaussian grid decoded its 1 cm descents as 5 mm). `gs_params` still records the Gaussians."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from stvla_core.model.action_tokenizer import (
    ActionGrid,
    ActionStatistics,
    cartesian_to_spherical,
)
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
ZERO_FRACTION = 0.05
ZERO_BIN = 1e-3  # half-width of the bin reserved for 0 (normalised units)
EDGE_GAP = 1e-4  # narrowest bin
AXIS_RANGES = {"theta": (0.0, np.pi), "phi": (-np.pi, np.pi), "r": (0.0, np.sqrt(3.0))}


def action_statistics(actions: np.ndarray) -> dict[str, Any]:
    """(N, 7) actions -> the processor's statistics entry ({"action": {mean, std, q01, q99, mask}}).
    The gripper (last dimension) is never normalised: it is already in [0, 1]."""
    a = np.asarray(actions, np.float64)
    if a.ndim != 2 or a.shape[1] != 7 or len(a) < 2:
        raise ValueError(f"actions: expected (N >= 2, 7), found {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError("actions hold NaN or inf")
    bound = np.maximum(np.abs(np.quantile(a, 0.01, axis=0)), np.abs(np.quantile(a, 0.99, axis=0)))
    q01, q99 = -bound, bound
    mask = bound > CONSTANT_SPAN
    mask[6] = False
    q01[6], q99[6] = 0.0, 1.0
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
    return {
        k: {"mu": float(v.mean()), "sigma": float(max(v.std(), min_sigma))}
        for k, v in _axis_values(normalized).items()
    }


def _axis_values(normalized: np.ndarray) -> dict[str, np.ndarray]:
    tpr = cartesian_to_spherical(normalized[:, :3])
    return {
        "theta": tpr[:, 0],
        "phi": tpr[:, 1],
        "r": tpr[:, 2],
        "roll": normalized[:, 3],
        "pitch": normalized[:, 4],
        "yaw": normalized[:, 5],
    }


def _gauss(v: np.ndarray, min_sigma: float) -> tuple[float, float]:
    return (float(v.mean()), float(max(v.std(), min_sigma))) if len(v) else (0.0, min_sigma)


def quantile_edges(values: np.ndarray, lo: float, hi: float, n: int) -> np.ndarray:
    """n + 1 strictly increasing edges over [lo, hi] at the values' own equal-mass quantiles.
    Where many values are equal (a scripted expert's fixed step sizes), quantiles coincide; the
    edges are then spread by `EDGE_GAP`, so such a value gets a narrow bin whose centre decodes
    to (almost) exactly it, instead of the centre of a wide Gaussian bin."""
    q = np.quantile(values, np.linspace(0.0, 1.0, n + 1)) if len(values) else np.linspace(lo, hi, n + 1)
    q[0], q[-1] = lo, hi
    q = np.clip(q, lo, hi)
    for i in range(1, n + 1):  # forwards: at least EDGE_GAP apart
        q[i] = max(q[i], q[i - 1] + EDGE_GAP)
    q[-1] = hi
    for i in range(n - 1, 0, -1):  # backwards: room below hi
        q[i] = min(q[i], q[i + 1] - EDGE_GAP)
    return q


def axis_edges(values: np.ndarray, lo: float, hi: float, n: int) -> np.ndarray:
    """n + 1 bin edges over [lo, hi] for one axis's values (module docstring: a zero bin when 0
    is frequent, equal-mass quantiles of the rest elsewhere)."""
    zero = values == 0
    if zero.mean() < ZERO_FRACTION or not lo <= 0 <= hi or n < 3:
        return quantile_edges(values, lo, hi, n)
    rest = values[~zero]
    if lo == 0:  # r: the zero bin is [0, eps]
        return np.r_[0.0, quantile_edges(rest, ZERO_BIN, hi, n - 1)]
    neg, pos = rest[rest < 0], rest[rest > 0]
    k = int(np.clip(round((n - 1) * (len(neg) / len(rest) if len(rest) else 0.5)), 1, n - 2))
    return np.r_[quantile_edges(neg, lo, -ZERO_BIN, k), quantile_edges(pos, ZERO_BIN, hi, n - 1 - k)]


def fit_grid(actions: np.ndarray, min_sigma: float = MIN_SIGMA) -> tuple[dict[str, Any], dict, ActionGrid]:
    """(N, 7) actions -> (statistics entry, Gaussian parameters, grid)."""
    stats = action_statistics(actions)
    normalized = ActionStatistics.from_dict(stats).normalize(np.asarray(actions, np.float64))
    gs = gaussian_params(normalized, min_sigma)
    counts = {**NUM_BINS["translation"], **NUM_BINS["rotation"]}
    values = _axis_values(normalized)
    edges = {}
    for key, n in counts.items():
        axis = key.split("_")[0]
        lo, hi = AXIS_RANGES.get(axis, (-1.0, 1.0))
        edges[key] = axis_edges(values[axis], lo, hi, n)
    return stats, gs, ActionGrid(edges)


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
