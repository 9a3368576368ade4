"""Shared test fixtures: small synthetic episodes whose every pixel is known."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from stvla_core.episodes import Episode


def textured(h: int, w: int, seed: int = 0) -> np.ndarray:
    """(h, w) uint8 smooth random texture LK can lock on to."""
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 1.5)
    noise = (noise - noise.min()) / (noise.max() - noise.min())
    return (noise * 255).astype(np.uint8)


def translating_episode(
    t: int = 24, h: int = 64, w: int = 80, dx: float = 1.0, dy: float = 0.0, name: str = "translate"
) -> Episode:
    """Frames of a texture shifted by (dx, dy) px per frame (content moves right/down), with a
    depth ramp 0.5..2.0 m left to right and ground-truth points that move with the texture."""
    tex = textured(h + 80, w + 80)
    frames = []
    for k in range(t):
        m = np.float32([[1, 0, dx * k - 40], [0, 1, dy * k - 40]])
        g = cv2.warpAffine(tex, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        frames.append(np.repeat(g[..., None], 3, axis=2))
    depth = np.tile(np.linspace(0.5, 2.0, w, dtype=np.float32)[None, None], (t, h, 1))
    start = np.array([[20.0, 20.0], [40.0, 30.0], [30.0, 45.0]], np.float32)
    gt = np.stack([start + np.float32([dx * k, dy * k]) for k in range(t)]).astype(np.float32)
    vis = (gt[..., 0] >= 0) & (gt[..., 0] <= w - 1) & (gt[..., 1] >= 0) & (gt[..., 1] <= h - 1)
    actions = np.zeros((t, 7), np.float32)
    actions[:, 0] = dx * 0.01
    return Episode(
        frames=np.stack(frames),
        depth=depth,
        actions=actions,
        gt_points=gt,
        gt_visible=vis,
        instruction="follow the texture",
        name=name,
    )


@pytest.fixture
def translating() -> Episode:
    return translating_episode()
