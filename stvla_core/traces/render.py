"""Traced depth maps: the kept traces drawn onto the depth map of frame t (ST-VLA, arXiv 2508.09032).

Pure functions on arrays, so every pixel can be hand-computed in tests.

- A: each trace pixel carries the depth its tracked point had at its own time step (depth of frame
  t-k sampled at the point, linearly interpolated along each segment).
- B: every trace pixel carries one constant, the farthest valid depth of frame t. The paper names
  this variant without a formula; this is our reading of it.
- C: every trace pixel carries the depth of what is nearest the camera: the minimum valid depth of
  frame t, or (nearest="segmentation") the depth of the nearest segmented object. The paper's best.

Depth is metres; 0, NaN and inf are invalid. Invalid pixels of frame t stay 0 in the output and
never feed B or C; a variant-A segment whose two endpoint depths are both invalid is not drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from stvla_core.tracking.base import Tracks

VARIANTS = ("A", "B", "C")


def valid_mask(depth: np.ndarray) -> np.ndarray:
    return np.isfinite(depth) & (depth > 0)


def clean_depth(depth: np.ndarray) -> np.ndarray:
    d = np.asarray(depth, np.float32).copy()
    d[~valid_mask(d)] = 0.0
    return d


def _require_valid(depth: np.ndarray) -> np.ndarray:
    valid = depth[valid_mask(depth)]
    if valid.size == 0:
        raise ValueError("depth map of frame t has no valid pixel (all 0, NaN or inf)")
    return valid


def nearest_depth(
    depth: np.ndarray,
    segmentation: np.ndarray | None = None,
    ignore_ids: Sequence[int] = (0,),
) -> float:
    """Depth of what is nearest the camera: min valid depth, or with a segmentation the smallest
    per-object median depth over object ids not in `ignore_ids` (background, table, ground)."""
    if segmentation is None:
        return float(_require_valid(depth).min())
    if segmentation.shape != depth.shape:
        raise ValueError(f"segmentation has shape {segmentation.shape}, depth is {depth.shape}")
    ok = valid_mask(depth) & ~np.isin(segmentation, list(ignore_ids))
    if not ok.any():
        raise ValueError("no segmented object with valid depth in frame t")
    ids = np.unique(segmentation[ok])
    return float(min(np.median(depth[ok & (segmentation == i)]) for i in ids))


def farthest_depth(depth: np.ndarray) -> float:
    return float(_require_valid(depth).max())


def _disk(thickness: int) -> np.ndarray:
    """(M, 2) integer (dx, dy) offsets of a filled disk of the given diameter in px."""
    if thickness < 1:
        raise ValueError(f"line thickness must be >= 1 px, found {thickness}")
    r = (thickness - 1) / 2.0
    o = np.arange(-int(np.ceil(r)), int(np.ceil(r)) + 1)
    dx, dy = np.meshgrid(o, o)
    keep = dx**2 + dy**2 <= r**2 + 1e-6
    return np.stack([dx[keep], dy[keep]], axis=1)


def _segment_samples(p0: np.ndarray, p1: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For S segments p0 -> p1 (S, 2): integer pixels along each, one per pixel step along its
    major axis (an 8-connected line, as a DDA draws it). Returns (pixels (M, 2), segment id (M,),
    fraction along the segment (M,))."""
    counts = np.ceil(np.abs(p1 - p0).max(axis=1)).astype(np.int64) + 1
    seg = np.repeat(np.arange(len(p0)), counts)
    starts = np.cumsum(counts) - counts
    f = ((np.arange(counts.sum()) - starts[seg]) / np.maximum(counts - 1, 1)[seg]).astype(np.float32)
    pts = p0[seg] + f[:, None] * (p1 - p0)[seg]
    return np.rint(pts).astype(np.int64), seg, f


def rasterize_traces(
    tracks: Tracks,
    shape: tuple[int, int],
    values: np.ndarray,
    thickness: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw each trace as a polyline over its visible points.

    values: (b, N) float32 value of each point (NaN = unknown); along a segment the value is
    interpolated linearly (an unknown end takes the other end's value). Where traces overlap the
    nearest (smallest) value wins. Returns (canvas (H, W) float32, mask (H, W) bool)."""
    h, w = shape
    canvas = np.full((h, w), np.inf, np.float32)
    pts, vis = tracks.points, tracks.visible
    v0, v1 = values[:-1], values[1:]
    use = vis[:-1] & vis[1:] & ~(np.isnan(v0) & np.isnan(v1))  # (b-1, N) segments to draw
    if not use.any():
        return np.zeros((h, w), np.float32), np.zeros((h, w), bool)
    a, b = v0[use], v1[use]
    a, b = np.where(np.isnan(a), b, a), np.where(np.isnan(b), a, b)
    px, seg, f = _segment_samples(pts[:-1][use], pts[1:][use])
    val = a[seg] + f * (b[seg] - a[seg])
    disk = _disk(thickness)
    xy = (px[:, None, :] + disk[None]).reshape(-1, 2)
    vv = np.repeat(val, len(disk)).astype(np.float32)
    ok = (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
    np.minimum.at(canvas, (xy[ok, 1], xy[ok, 0]), vv[ok])
    mask = np.isfinite(canvas)
    return np.where(mask, canvas, 0.0).astype(np.float32), mask


def sample_depth(depth: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Bilinear depth at (N, 2) (x, y) points using valid pixels only; NaN where none is near."""
    h, w = depth.shape
    valid = valid_mask(depth)
    d = np.where(valid, depth, 0.0)
    x = np.clip(points[:, 0], 0, w - 1)
    y = np.clip(points[:, 1], 0, h - 1)
    x0 = np.floor(x).astype(int).clip(0, w - 2 if w > 1 else 0)
    y0 = np.floor(y).astype(int).clip(0, h - 2 if h > 1 else 0)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = x - x0, y - y0
    wts = [(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy]
    idx = [(y0, x0), (y0, x1), (y1, x0), (y1, x1)]
    num = sum(wt * d[i] for wt, i in zip(wts, idx, strict=True))
    den = sum(wt * valid[i] for wt, i in zip(wts, idx, strict=True))
    return np.where(den > 1e-6, num / np.maximum(den, 1e-6), np.nan).astype(np.float32)


def traced_depth(*args: Any, **kwargs: Any) -> np.ndarray:
    """(H, W) float32 metres: depth of frame t with the traces drawn in; the arguments of
    `traced_depth_and_mask`, whose mask it drops."""
    return traced_depth_and_mask(*args, **kwargs)[0]


def traced_depth_and_mask(
    variant: str,
    depth_t: np.ndarray,
    tracks: Tracks,
    window_depths: np.ndarray | None = None,
    thickness: int = 2,
    segmentation_t: np.ndarray | None = None,
    ignore_ids: Sequence[int] = (0,),
) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) float32 metres: depth of frame t with the traces drawn in, and the (H, W) bool mask
    of the pixels the traces cover: pictures outline them (a trace's value can equal the depth
    under it, so the map alone cannot tell).

    depth_t: (H, W) depth of frame t; tracks: the kept traces over the window (b, N);
    window_depths: (b, H, W) depth of every window frame, needed by variant A only;
    segmentation_t: (H, W) ids, used by C to take the nearest segmented object's depth."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    base = clean_depth(depth_t)
    b, n = tracks.visible.shape
    if variant == "A":
        if window_depths is None or window_depths.shape != (b, *depth_t.shape):
            found = None if window_depths is None else window_depths.shape
            raise ValueError(f"variant A needs window depths of shape {(b, *depth_t.shape)}, found {found}")
        values = np.stack([sample_depth(window_depths[k], tracks.points[k]) for k in range(b)])
    else:
        const = (
            farthest_depth(base)
            if variant == "B"
            else nearest_depth(base, segmentation_t, ignore_ids)
            if segmentation_t is not None
            else nearest_depth(base)
        )
        values = np.full((b, n), const, np.float32)
    canvas, mask = rasterize_traces(tracks, depth_t.shape, values, thickness)
    base[mask] = canvas[mask]
    return base, mask
