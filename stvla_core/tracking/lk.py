"""`lk`: OpenCV pyramidal Lucas-Kanade on a grid of query points, with a forward-backward check;
the weight-free default tracker.

Queries lie on the newest frame and are followed back hop by hop (t -> t-1 -> ...). A point whose
LK status fails, whose forward-backward error exceeds `fb_threshold` px, or that leaves the frame
is lost from that hop on: it keeps its last position and is marked invisible.

Two paths give the same kind of answer:
- exact (`incremental=False`): LK on the query points for every hop of the window, every step —
  the naive re-track the paper does;
- incremental (default): each hop k -> k-1 is solved once, on a dense grid (stride `dense_stride`),
  and cached; a window's tracks chain the cached hops with bilinear interpolation, so stepping one
  frame forward costs one new hop instead of b-1. Agreement with the exact path is measured in
  tests (sub-pixel on smooth motion) and the cost in benchmarks/bench_trace_step.py.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import cv2
import numpy as np

from stvla_core.tracking.base import TRACKERS, Clip, Tracks, grid_points


@dataclass
class LKConfig:
    grid: int = 30  # grid x grid query points, as TraceVLA's CoTracker grid
    win_size: int = 21
    max_level: int = 3
    fb_threshold: float = 1.0  # px
    incremental: bool = True
    dense_stride: int = 4  # px between dense-grid points of the cached hops
    cache_frames: int = 256  # per-frame entries kept (grey images, hops)


class _LRU(OrderedDict):
    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity

    def put(self, key: object, value: object) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.capacity:
            self.popitem(last=False)


def _inside(p: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    return (p[:, 0] >= 0) & (p[:, 0] <= w - 1) & (p[:, 1] >= 0) & (p[:, 1] <= h - 1)


class LKTracker:
    name = "lk"

    def __init__(self, config: LKConfig | None = None) -> None:
        self.config = config or LKConfig()
        self._grey: _LRU = _LRU(self.config.cache_frames)
        self._hops: _LRU = _LRU(self.config.cache_frames)
        self.hops_computed = 0  # counts dense hops solved (tests and benchmarks read it)

    # -- shared pieces ---------------------------------------------------------------------
    def _lk(self, a: np.ndarray, b: np.ndarray, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """LK from grey image a to b with forward-backward check -> (points in b, ok)."""
        c = self.config
        p = pts.reshape(-1, 1, 2).astype(np.float32)
        crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01)
        kw = dict(winSize=(c.win_size, c.win_size), maxLevel=c.max_level, criteria=crit)
        p1, st1, _ = cv2.calcOpticalFlowPyrLK(a, b, p, None, **kw)
        p0, st0, _ = cv2.calcOpticalFlowPyrLK(b, a, p1, None, **kw)
        fb = np.linalg.norm((p0 - p).reshape(-1, 2), axis=1)
        ok = (st1.ravel() == 1) & (st0.ravel() == 1) & (fb < c.fb_threshold)
        return p1.reshape(-1, 2), ok

    def _grey_of(self, clip: Clip, i: int) -> np.ndarray:
        key = (clip.key, int(clip.indices[i]))
        if clip.key and key in self._grey:
            return self._grey[key]
        g = cv2.cvtColor(clip.frames[i], cv2.COLOR_RGB2GRAY)
        if clip.key:
            self._grey.put(key, g)
        return g

    # -- the two paths ---------------------------------------------------------------------
    def track(self, clip: Clip) -> Tracks:
        q = clip.queries if clip.queries is not None else grid_points(clip.size, self.config.grid)
        q = q.astype(np.float32)
        hop = self._dense_hop if self.config.incremental else self._exact_hop
        b, n = clip.frames.shape[0], q.shape[0]
        points = np.empty((b, n, 2), np.float32)
        visible = np.zeros((b, n), bool)
        alive = _inside(q, clip.size)
        cur = q.copy()
        points[-1], visible[-1] = cur, alive
        for k in range(b - 1, 0, -1):
            nxt, ok = hop(clip, k, cur)
            alive &= ok & _inside(nxt, clip.size)
            cur = np.where(alive[:, None], nxt, cur)
            points[k - 1], visible[k - 1] = cur, alive
        return Tracks(points, visible)

    def _exact_hop(self, clip: Clip, k: int, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._lk(self._grey_of(clip, k), self._grey_of(clip, k - 1), pts)

    def _dense_hop(self, clip: Clip, k: int, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        disp, ok = self._hop_field(clip, k)
        s = float(self.config.dense_stride)
        mx = (pts[:, 0] / s).astype(np.float32).reshape(-1, 1)
        my = (pts[:, 1] / s).astype(np.float32).reshape(-1, 1)
        d = cv2.remap(disp, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).reshape(-1, 2)
        okv = cv2.remap(ok, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).ravel()
        # every dense neighbour that contributes must be trusted
        return pts + d, okv > 0.999

    def _hop_field(self, clip: Clip, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Displacement (Hs, Ws, 2) float32 and trust (Hs, Ws) float32 of the dense grid from
        frame indices[k] to indices[k-1]; cached per (episode, frame index pair)."""
        key = (clip.key, int(clip.indices[k]), int(clip.indices[k - 1]))
        if clip.key and key in self._hops:
            return self._hops[key]
        h, w = clip.size
        s = self.config.dense_stride
        xs = np.arange(0, w - 1 + s, s, dtype=np.float32).clip(max=w - 1)
        ys = np.arange(0, h - 1 + s, s, dtype=np.float32).clip(max=h - 1)
        gx, gy = np.meshgrid(xs, ys)
        grid = np.stack([gx.ravel(), gy.ravel()], axis=1)
        nxt, ok = self._lk(self._grey_of(clip, k), self._grey_of(clip, k - 1), grid)
        field = ((nxt - grid).reshape(len(ys), len(xs), 2), ok.reshape(len(ys), len(xs)).astype(np.float32))
        self.hops_computed += 1
        if clip.key:
            self._hops.put(key, field)
        return field


@TRACKERS.register("lk")
def make_lk(**kwargs: object) -> LKTracker:
    return LKTracker(LKConfig(**kwargs))  # type: ignore[arg-type]
