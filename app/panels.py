"""Small display images built from stvla_core outputs: frames scaled for the screen, the buffer's
thumbnail strip and the depth legend (one colour scale shared by depth, A, B and C)."""

from __future__ import annotations

import cv2
import numpy as np

from stvla_core.traces import colorize_depth

DISPLAY_SIDE = 320  # longest side of an image sent to the browser
THUMB_SIDE = 48
STRIP_COLUMNS = 10


def fit(img: np.ndarray, side: int = DISPLAY_SIDE, nearest: bool = False) -> np.ndarray:
    """Scale (H, W, 3) uint8 so its longest side is at most `side` (never up)."""
    h, w = img.shape[:2]
    scale = side / max(h, w)
    if scale >= 1.0:
        return np.ascontiguousarray(img)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(img, size, interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)


def thumbnails(frames: np.ndarray, side: int = THUMB_SIDE) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, h, w, 3) uint8 with the longest side `side`."""
    return np.stack([fit(f, side) if max(f.shape[:2]) > side else _up(f, side) for f in frames])


def _up(f: np.ndarray, side: int) -> np.ndarray:
    h, w = f.shape[:2]
    scale = side / max(h, w)
    return cv2.resize(
        f, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_NEAREST
    )


def buffer_strip(thumbs: np.ndarray, window: np.ndarray, columns: int = STRIP_COLUMNS) -> np.ndarray:
    """The b thumbnails feeding a step in rows of `columns`, oldest first, each under a 1-px gap;
    the newest (frame t) framed in white. (rows*(h+2), columns*(w+2), 3) uint8."""
    h, w = thumbs.shape[1:3]
    n = len(window)
    cols = min(columns, n)
    rows = -(-n // cols)
    out = np.full((rows * (h + 2), cols * (w + 2), 3), 24, np.uint8)
    for k, i in enumerate(window):
        r, c = divmod(k, cols)
        y, x = r * (h + 2) + 1, c * (w + 2) + 1
        out[y : y + h, x : x + w] = thumbs[int(i)]
    r, c = divmod(n - 1, cols)
    cv2.rectangle(
        out, (c * (w + 2), r * (h + 2)), (c * (w + 2) + w + 1, r * (h + 2) + h + 1), (255, 255, 255), 1
    )
    return out


NICE_DEPTHS = (0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0)


def legend_ticks(vmin: float, vmax: float, width: int) -> list[tuple[int, float]]:
    """(x pixel, metres) of round depths inside (vmin, vmax), placed as colorize_depth maps them:
    linearly in inverse depth, near on the left."""
    span = 1.0 / vmin - 1.0 / vmax
    out = []
    for d in NICE_DEPTHS:
        if vmin < d < vmax:
            out.append((round((1.0 / vmin - 1.0 / d) / span * (width - 1)), d))
    return out


def legend(vmin: float, vmax: float, width: int = DISPLAY_SIDE, height: int = 14) -> np.ndarray:
    """Horizontal colour bar of the shared depth scale, labelled in metres. colorize_depth colours
    by inverse depth, so the bar runs evenly in 1/depth (near, red, on the left) and round depths
    are ticked where they fall; black marks invalid depth."""
    vmin = max(vmin, 1e-3)
    vmax = max(vmax, vmin + 1e-6)
    inv = np.linspace(1.0 / vmin, 1.0 / vmax, width, dtype=np.float64)
    ramp = np.repeat((1.0 / inv).astype(np.float32)[None], height, axis=0)
    out = np.full((height + 22, width, 3), 255, np.uint8)
    out[:height] = colorize_depth(ramp, vmin, vmax)
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.35
    right = f"{vmax:.2f} m"
    (rw, _), _ = cv2.getTextSize(right, font, scale, 1)
    labels = [(0, f"{vmin:.2f}"), *((x, f"{d:g}") for x, d in legend_ticks(vmin, vmax, width))]
    last_right = -10
    for x, text in labels:
        (tw, _), _ = cv2.getTextSize(text, font, scale, 1)
        left = int(np.clip(x - tw // 2, 0, width - tw - 1))
        if left <= last_right + 4 or left + tw + 4 >= width - rw - 1:
            continue  # would overlap a neighbouring label
        cv2.line(out, (x, height), (x, height + 3), (0, 0, 0), 1)
        cv2.putText(out, text, (left, height + 15), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
        last_right = left + tw
    cv2.line(out, (width - 1, height), (width - 1, height + 3), (0, 0, 0), 1)
    cv2.putText(out, right, (width - rw - 1, height + 15), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return out
