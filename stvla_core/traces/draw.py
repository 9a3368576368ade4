"""Pictures for people: colourised depth maps (one shared scale) and the TraceVLA-style RGB overlay."""

from __future__ import annotations

import colorsys

import cv2
import numpy as np

from stvla_core.traces.render import valid_mask
from stvla_core.tracking.base import Tracks


def depth_range(*depths: np.ndarray) -> tuple[float, float]:
    """(vmin, vmax) over the valid pixels of all maps: one colour scale shared by A, B and C."""
    vals = [d[valid_mask(d)] for d in depths]
    vals = [v for v in vals if v.size]
    if not vals:
        return 0.0, 1.0
    lo = float(min(v.min() for v in vals))
    hi = float(max(v.max() for v in vals))
    return lo, hi if hi > lo else lo + 1e-3


def colorize_depth(
    depth: np.ndarray,
    vmin: float | None = None,
    vmax: float | None = None,
    colormap: int = cv2.COLORMAP_TURBO,
) -> np.ndarray:
    """(H, W, 3) uint8 RGB: near is red, far is blue; invalid pixels black. Colours follow inverse
    depth between 1/vmin and 1/vmax, as depth viewers do, so a far horizon (20 m in the simulator)
    does not wash out the table-top metres where the traces are."""
    if vmin is None or vmax is None:
        lo, hi = depth_range(depth)
        vmin = lo if vmin is None else vmin
        vmax = hi if vmax is None else vmax
    valid = valid_mask(depth)
    vmin = max(vmin, 1e-3)
    vmax = max(vmax, vmin + 1e-6)
    inv = 1.0 / np.clip(np.where(valid, depth, vmax), vmin, vmax)
    norm = (inv - 1.0 / vmax) / (1.0 / vmin - 1.0 / vmax)
    idx = (np.clip(norm, 0.0, 1.0) * 255).astype(np.uint8)
    rgb = cv2.cvtColor(cv2.applyColorMap(idx, colormap), cv2.COLOR_BGR2RGB)
    rgb[~valid] = 0
    return rgb


TRACE_OUTLINE = (255, 255, 255)  # white: the colour scale (turbo) and "invalid" (black) never use it


def draw_traced(
    traced: np.ndarray, mask: np.ndarray, vmin: float, vmax: float, outline: int = 1
) -> np.ndarray:
    """(H, W, 3) uint8 picture of a traced depth map: colorize_depth, then a white outline
    `outline` px wide around the trace pixels (`mask`, (H, W) bool). B and C give every trace
    pixel the farthest or nearest depth, the ends of the colour scale, which look nearly black
    like invalid depth; the outline makes them stand out. The trace pixels keep their colour."""
    rgb = colorize_depth(traced, vmin, vmax)
    if mask.any():
        k = 2 * outline + 1
        ring = cv2.dilate(mask.astype(np.uint8), np.ones((k, k), np.uint8)).astype(bool) & ~mask
        rgb[ring] = TRACE_OUTLINE
    return rgb


def colorbar(vmin: float, vmax: float, height: int = 224, width: int = 16) -> np.ndarray:
    """Vertical legend matching colorize_depth: near (vmin) at the top."""
    ramp = np.linspace(vmin, vmax, height, dtype=np.float32)[:, None].repeat(width, 1)
    return colorize_depth(ramp, vmin, vmax)


def trace_colors(n: int) -> list[tuple[int, int, int]]:
    """n distinct RGB colours around the hue circle, as TraceVLA's hsv colour map."""
    return [tuple(int(255 * c) for c in colorsys.hsv_to_rgb(i / max(n, 1), 1.0, 1.0)) for i in range(n)]


def draw_overlay(rgb: np.ndarray, tracks: Tracks, thickness: int = 2) -> np.ndarray:
    """The traces as coloured polylines on the RGB frame, an arrow head at the newest point."""
    out = np.ascontiguousarray(rgb.copy())
    pts, vis = tracks.points, tracks.visible
    for n, color in enumerate(trace_colors(pts.shape[1])):
        run = [k for k in range(pts.shape[0]) if vis[k, n]]
        if len(run) < 2:
            continue
        poly = np.rint(pts[run, n]).astype(np.int32)
        cv2.polylines(out, [poly.reshape(-1, 1, 2)], False, color, thickness, cv2.LINE_AA)
        tip, prev = tuple(int(v) for v in poly[-1]), tuple(int(v) for v in poly[-2])
        if tip != prev:
            cv2.arrowedLine(out, prev, tip, color, thickness, cv2.LINE_AA, tipLength=0.6)
    return out
