"""SpatialVLA's adaptive action grids: a 7-DoF action in [-1, 1] (normalised with dataset
statistics) becomes three spatial tokens.

- translation (x, y, z) -> spherical (theta, phi, r) -> one of theta_bins * phi_bins * r_bins cells
- rotation (roll, pitch, yaw) -> one of roll_bins * pitch_bins * yaw_bins cells
- gripper -> closed (< 0.5) / open

Bin edges are Gaussian quantiles of the training actions ("adaptive" grids): equal probability
per bin. Token ids are `action_token_begin_idx` + grid index, translation cells first, then
rotation, then the two gripper tokens; a chunk of k actions is 3k tokens."""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

TRANSLATION_KEYS = ("theta_bins", "phi_bins", "r_bins")
ROTATION_KEYS = ("roll_bins", "pitch_bins", "yaw_bins")
RANGES = {
    "theta_bins": (0.0, np.pi),
    "phi_bins": (-np.pi, np.pi),
    "r_bins": (0.0, np.sqrt(3.0)),
    "roll_bins": (-1.0, 1.0),
    "pitch_bins": (-1.0, 1.0),
    "yaw_bins": (-1.0, 1.0),
}
TOKENS_PER_ACTION = 3


class ActionTokenError(ValueError):
    """Token ids that are not spatial action tokens of the expected kind, or a malformed action."""


def gaussian_edges(mu: float, sigma: float, lo: float, hi: float, n: int) -> np.ndarray:
    """n + 1 edges over [lo, hi] with equal N(mu, sigma) mass per bin."""
    g = NormalDist(mu, sigma)
    probs = np.linspace(g.cdf(lo), g.cdf(hi), n + 1)
    edges = np.array([g.inv_cdf(float(np.clip(p, 1e-300, 1 - 1e-16))) for p in probs])
    edges[0], edges[-1] = lo, hi
    return np.clip(edges, lo, hi)


def cartesian_to_spherical(xyz: np.ndarray) -> np.ndarray:
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    r = np.sqrt(x**2 + y**2 + z**2)
    # r = 0 has no direction; the official grid gets NaN there, which lands in the last theta bin
    theta = np.where(
        r > 0, np.arccos(np.clip(np.divide(z, r, out=np.ones_like(r), where=r > 0), -1, 1)), np.pi
    )
    return np.stack([theta, np.arctan2(y, x), r], axis=-1)


def spherical_to_cartesian(tpr: np.ndarray) -> np.ndarray:
    theta, phi, r = tpr[..., 0], tpr[..., 1], tpr[..., 2]
    return np.stack([r * np.sin(theta) * np.cos(phi), r * np.sin(theta) * np.sin(phi), r * np.cos(theta)], -1)


@dataclass
class ActionGrid:
    """Bin edges per axis, as the `bin_policy` of the official processor_config.json."""

    edges: dict[str, np.ndarray]
    use_spherical: bool = True

    def __post_init__(self) -> None:
        for key in TRANSLATION_KEYS + ROTATION_KEYS:
            if key not in self.edges:
                raise ValueError(f"action grid is missing {key!r}")
            e = np.asarray(self.edges[key], dtype=np.float64)
            if e.ndim != 1 or len(e) < 2 or not np.all(np.diff(e) > 0):
                raise ValueError(f"action grid {key!r}: expected >= 2 increasing edges, found {e.tolist()}")
            self.edges[key] = e

    @classmethod
    def from_bin_policy(cls, bin_policy: dict[str, dict[str, Any]], use_spherical: bool = True) -> ActionGrid:
        return cls({**bin_policy["translation"], **bin_policy["rotation"]}, use_spherical)

    @classmethod
    def gaussian(
        cls, gs_params: dict[str, dict[str, float]], num_bins: dict[str, Any], min_sigma: float = 0.0
    ) -> ActionGrid:
        """Grids from per-axis Gaussians, e.g. {"theta": {"mu":..,"sigma":..}, ...}."""
        counts = {**num_bins["translation"], **num_bins["rotation"]}
        edges = {}
        for key in TRANSLATION_KEYS + ROTATION_KEYS:
            p = gs_params[key.split("_")[0]]
            edges[key] = gaussian_edges(p["mu"], max(p["sigma"], min_sigma), *RANGES[key], counts[key])
        return cls(edges)

    def to_bin_policy(self) -> dict[str, dict[str, list[float]]]:
        return {
            "translation": {k: self.edges[k].tolist() for k in TRANSLATION_KEYS},
            "rotation": {k: self.edges[k].tolist() for k in ROTATION_KEYS},
        }

    def counts(self, keys: tuple[str, ...]) -> tuple[int, ...]:
        return tuple(len(self.edges[k]) - 1 for k in keys)

    @property
    def num_translation(self) -> int:
        return int(np.prod(self.counts(TRANSLATION_KEYS)))

    @property
    def num_rotation(self) -> int:
        return int(np.prod(self.counts(ROTATION_KEYS)))

    @property
    def vocab_size(self) -> int:
        return self.num_translation + self.num_rotation + 2


@dataclass
class DecodedToken:
    """What one action token stands for: its kind, grid cell and the cell's centre."""

    kind: str  # "translation", "rotation" or "gripper"
    cell: tuple[int, ...]  # per-axis bin indices (theta, phi, r) / (roll, pitch, yaw) / (open,)
    centre: tuple[float, ...]  # the cell centre in grid coordinates


class SpatialActionTokenizer:
    """Normalised 7-DoF actions <-> grid indices <-> token ids."""

    def __init__(self, grid: ActionGrid, action_token_begin_idx: int) -> None:
        self.grid = grid
        self.begin = int(action_token_begin_idx)

    @property
    def vocab_size(self) -> int:
        return self.grid.vocab_size

    def ranges(self) -> list[tuple[int, int]]:
        """[start, end) token ids allowed at each of the 3 positions of an action."""
        t, r = self.grid.num_translation, self.grid.num_rotation
        b = self.begin
        return [(b, b + t), (b + t, b + t + r), (b + t + r, b + t + r + 2)]

    # -- encoding ---------------------------------------------------------------------------
    def _cells(self, values: np.ndarray, keys: tuple[str, ...]) -> np.ndarray:
        return np.stack(
            [
                np.clip(np.digitize(values[:, i], self.grid.edges[k][1:-1]), 0, len(self.grid.edges[k]) - 2)
                for i, k in enumerate(keys)
            ],
            axis=1,
        )

    def encode(self, actions: np.ndarray) -> np.ndarray:
        """(n, 7) or (7,) normalised actions -> (n, 3) int64 token ids."""
        a = np.asarray(actions, dtype=np.float64)
        if a.ndim == 1:
            a = a[None]
        if a.ndim != 2 or a.shape[1] != 7:
            raise ActionTokenError(f"actions must be (n, 7) or (7,), found shape {np.shape(actions)}")
        if not np.isfinite(a).all():
            raise ActionTokenError("actions contain NaN or inf")
        a = np.clip(a, -1.0, 1.0)
        trans = cartesian_to_spherical(a[:, :3]) if self.grid.use_spherical else a[:, :3]
        tc = self._cells(trans, TRANSLATION_KEYS)
        rc = self._cells(a[:, 3:6], ROTATION_KEYS)
        _, nphi, nr = self.grid.counts(TRANSLATION_KEYS)
        _, npitch, nyaw = self.grid.counts(ROTATION_KEYS)
        t_idx = tc[:, 0] * nphi * nr + tc[:, 1] * nr + tc[:, 2]
        r_idx = rc[:, 0] * npitch * nyaw + rc[:, 1] * nyaw + rc[:, 2]
        g_idx = (a[:, 6] >= 0.5).astype(np.int64)
        (t0, _), (r0, _), (g0, _) = self.ranges()
        return np.stack([t0 + t_idx, r0 + r_idx, g0 + g_idx], axis=1).astype(np.int64)

    # -- decoding ---------------------------------------------------------------------------
    def check(self, token_ids: np.ndarray) -> np.ndarray:
        """(n, 3) ids, each in the range of its position, or ActionTokenError naming the first bad one."""
        ids = np.asarray(token_ids)
        if ids.ndim == 1 and ids.size % TOKENS_PER_ACTION == 0:
            ids = ids.reshape(-1, TOKENS_PER_ACTION)
        if ids.ndim != 2 or ids.shape[1] != TOKENS_PER_ACTION or not np.issubdtype(ids.dtype, np.integer):
            raise ActionTokenError(
                f"action token ids must be integers (n, 3) or a multiple of 3 long, found {ids.shape} {ids.dtype}"
            )
        for pos, (lo, hi) in enumerate(self.ranges()):
            bad = np.flatnonzero((ids[:, pos] < lo) | (ids[:, pos] >= hi))
            if bad.size:
                i = int(bad[0])
                kind = ("translation", "rotation", "gripper")[pos]
                raise ActionTokenError(
                    f"token {i * 3 + pos} (action {i}, {kind}) is id {int(ids[i, pos])}; expected a "
                    f"{kind} token in [{lo}, {hi})"
                )
        return ids.astype(np.int64)

    def _centres(self, idx: np.ndarray, keys: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        n0, n1, n2 = self.grid.counts(keys)
        cells = np.stack([idx // (n1 * n2), (idx % (n1 * n2)) // n2, idx % n2], axis=1)
        centres = np.stack(
            [
                0.5 * (self.grid.edges[k][cells[:, i]] + self.grid.edges[k][cells[:, i] + 1])
                for i, k in enumerate(keys)
            ],
            axis=1,
        )
        return cells, centres

    def decode(self, token_ids: np.ndarray) -> np.ndarray:
        """(n, 3) token ids (or a flat 3n sequence) -> (n, 7) normalised actions at cell centres."""
        return self.decode_detailed(token_ids)[0]

    def decode_detailed(self, token_ids: np.ndarray) -> tuple[np.ndarray, list[list[DecodedToken]]]:
        ids = self.check(token_ids)
        (t0, _), (r0, _), (g0, _) = self.ranges()
        tcells, tcent = self._centres(ids[:, 0] - t0, TRANSLATION_KEYS)
        rcells, rcent = self._centres(ids[:, 1] - r0, ROTATION_KEYS)
        grip = (ids[:, 2] - g0).astype(np.float64)
        xyz = spherical_to_cartesian(tcent) if self.grid.use_spherical else tcent
        # the sphere of radius sqrt(3) circumscribes the [-1, 1] cube: clip back into it
        actions = np.concatenate([np.clip(xyz, -1, 1), rcent, grip[:, None]], axis=1)
        details = [
            [
                DecodedToken(
                    "translation", tuple(int(c) for c in tcells[i]), tuple(float(c) for c in tcent[i])
                ),
                DecodedToken("rotation", tuple(int(c) for c in rcells[i]), tuple(float(c) for c in rcent[i])),
                DecodedToken("gripper", (int(grip[i]),), (float(grip[i]),)),
            ]
            for i in range(len(ids))
        ]
        return actions, details


@dataclass
class ActionStatistics:
    """Per-dimension q01/q99 of a dataset's actions; `mask` marks the dimensions that were
    normalised (the gripper is not: it stays in [0, 1])."""

    q01: np.ndarray
    q99: np.ndarray
    mask: np.ndarray

    @classmethod
    def from_dict(cls, stats: dict[str, Any]) -> ActionStatistics:
        a = stats["action"] if "action" in stats else stats
        q01 = np.asarray(a["q01"], dtype=np.float64)
        return cls(
            q01, np.asarray(a["q99"], dtype=np.float64), np.asarray(a.get("mask", np.ones_like(q01)), bool)
        )

    def unnormalize(self, normalized: np.ndarray) -> np.ndarray:
        """[-1, 1] -> dataset units: 0.5 (a + 1)(q99 - q01) + q01 where masked."""
        lo, hi = self.q01, self.q99
        return np.where(self.mask, 0.5 * (normalized + 1.0) * (hi - lo) + lo, normalized)

    def normalize(self, actions: np.ndarray) -> np.ndarray:
        """Dataset units -> [-1, 1] (clipped), the inverse of `unnormalize` inside [q01, q99]."""
        lo, hi = self.q01, self.q99
        span = np.where(hi > lo, hi - lo, 1.0)
        return np.where(self.mask, np.clip(2.0 * (actions - lo) / span - 1.0, -1.0, 1.0), actions)
