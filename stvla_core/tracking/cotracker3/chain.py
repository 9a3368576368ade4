"""Incremental tracking over the rolling buffer by chaining short runs of a base tracker ("hops").

Re-tracking a b-frame buffer every control step runs the model over b frames although only one is
new. Here each step runs the base tracker (CoTracker3, or any `Tracker`) over the newest frames
only, back to the last "anchor" frame (an episode index that is a multiple of `hop`), for a fixed
chain grid on the newest frame, and keeps that run (a "hop record") per frame index. A window's
tracks are then assembled newest to oldest:

- frames a..t come straight from this step's run (the queries ride along in it);
- at the anchor a each track sits at some point p; the hop record of frame a (its chain grid
  tracked over a-hop..a, made when a was the newest frame) gives the displacement of every grid
  point, which is interpolated bilinearly at p; and so on, anchor by anchor, to the oldest frame.

So a step costs one model run over 2 to hop + 1 frames instead of b, whatever b is. The price is the
interpolation at each junction: exact for motion that is affine over a grid cell (translation,
zoom, rotation), smoothed across motion boundaries finer than the grid. A point hidden at a
junction is marked hidden beyond it, since its position there is the model's guess, and so
is a chained point outside the frame.

Hop records are cached per (clip key, frame index) with a fingerprint of the frame, so a live
stream that restarts cannot reuse stale ones; a record missing (random access in an episode) is
computed on demand from the frames the clip holds. Clips without a key cache nothing.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from stvla_core.tracking.base import TRACKERS, Clip, Tracker, Tracks, grid_points


@dataclass
class ChainConfig:
    hop: int = 7  # frames each step's run reaches back: it covers hop + 1 frames
    grid: int = 30  # chain grid: grid x grid points on each newest frame (also the default queries)
    cache_steps: int = 256  # hop records kept


@dataclass(frozen=True)
class _HopRecord:
    start: int  # episode index of the oldest frame the run covered
    fingerprint: bytes  # of the record's newest frame
    points: np.ndarray  # (L, g, g, 2) float32 chain-grid positions, oldest first
    visible: np.ndarray  # (L, g, g) float32 (1 = visible)


def _fingerprint(frame: np.ndarray) -> bytes:
    return repr(frame.shape).encode() + frame[::8, ::8].tobytes()


def interpolate_grid(field: np.ndarray, points: np.ndarray, size: tuple[int, int], grid: int) -> np.ndarray:
    """Bilinear interpolation of values on the chain grid at arbitrary points.

    field: (L, g, g, C) values at `grid_points(size, g)` laid out row by row.
    points: (N, 2) float32 (x, y) pixels. Returns (L, N, C); points beyond the grid take the
    nearest edge cell's values (clamped)."""
    g = grid
    h, w = size
    first = grid_points(size, g)[0]  # (margin, margin)
    last = grid_points(size, g)[-1]
    cell = (last - first) / max(g - 1, 1)
    u = np.clip((points - first) / np.where(cell > 0, cell, 1.0), 0.0, g - 1.0)
    lo = np.minimum(np.floor(u).astype(np.int64), max(g - 2, 0))
    frac = (u - lo).astype(np.float32)
    hi = np.minimum(lo + 1, g - 1)
    fx, fy = frac[:, 0][None, :, None], frac[:, 1][None, :, None]
    top = field[:, lo[:, 1], lo[:, 0]] * (1 - fx) + field[:, lo[:, 1], hi[:, 0]] * fx
    bottom = field[:, hi[:, 1], lo[:, 0]] * (1 - fx) + field[:, hi[:, 1], hi[:, 0]] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


class ChainedTracker:
    """Wraps a base tracker so that stepping the buffer one frame costs one run over at most
    hop + 1 frames. `model_frames` counts frames handed to the base tracker (benchmarks, tests)."""

    name = "chained"

    def __init__(self, base: Tracker, config: ChainConfig | None = None) -> None:
        self.base = base
        self.config = config or ChainConfig()
        if self.config.hop < 1:
            raise ValueError(f"chain hop: expected >= 1 frame, found {self.config.hop}")
        if self.config.grid < 2:
            raise ValueError(f"chain grid: expected >= 2 points a side, found {self.config.grid}")
        self._records: OrderedDict[tuple[str, int], _HopRecord] = OrderedDict()
        self.model_frames = 0

    def reset(self) -> None:
        """Forget stored hops (and the base tracker's caches, if it keeps any)."""
        self._records.clear()
        if hasattr(self.base, "reset"):
            self.base.reset()

    def _run(self, clip: Clip, lo: int, hi: int, queries: np.ndarray) -> Tracks:
        """The base tracker on clip frames lo..hi (inclusive), queries on frame hi."""
        sub = Clip(clip.frames[lo : hi + 1], clip.indices[lo : hi + 1], queries=queries, key=clip.key)
        self.model_frames += hi - lo + 1
        return self.base.track(sub)

    def _store(self, clip: Clip, lo: int, hi: int, tracks: Tracks) -> _HopRecord:
        g = self.config.grid
        n = len(tracks.points)
        rec = _HopRecord(
            start=int(clip.indices[lo]),
            fingerprint=_fingerprint(clip.frames[hi]),
            points=tracks.points.reshape(n, g, g, 2).astype(np.float32),
            visible=tracks.visible.reshape(n, g, g).astype(np.float32),
        )
        if clip.key:
            key = (clip.key, int(clip.indices[hi]))
            self._records[key] = rec
            self._records.move_to_end(key)
            while len(self._records) > self.config.cache_steps:
                self._records.popitem(last=False)
        return rec

    def _record(self, clip: Clip, j: int, lo: int) -> _HopRecord:
        """The hop record of clip frame j reaching back to clip frame lo, cached or computed."""
        rec = self._records.get((clip.key, int(clip.indices[j]))) if clip.key else None
        if (
            rec is not None
            and rec.start <= clip.indices[lo]
            and rec.fingerprint == _fingerprint(clip.frames[j])
        ):
            return rec
        grid = grid_points(clip.size, self.config.grid)
        return self._store(clip, lo, j, self._run(clip, lo, j, grid))

    def track(self, clip: Clip) -> Tracks:
        """Tracks (b, N, 2) px / (b, N) of the clip's queries (or the chain grid) on its newest
        frame, oldest first. Clip indices must be consecutive (a buffer window)."""
        idx = clip.indices
        if len(idx) > 1 and not np.all(np.diff(idx) == 1):
            raise ValueError(f"chained tracker: expected consecutive frame indices, found {idx.tolist()}")
        b, hop = len(idx), self.config.hop
        grid = grid_points(clip.size, self.config.grid)
        own_queries = clip.queries is not None
        queries = clip.queries.astype(np.float32) if own_queries else grid
        n = len(queries)

        # Junctions sit on anchor frames (episode indices that are multiples of `hop`), so the
        # hops they need are shared by every step, in a stream and when scrubbing an episode.
        t = int(idx[-1])
        anchor = ((t - 1) // hop) * hop
        lo = max(0, b - 1 - (t - anchor))
        run = self._run(clip, lo, b - 1, np.concatenate([grid, queries]) if own_queries else grid)
        self._store(clip, lo, b - 1, run.subset(np.arange(len(grid))))
        mine = run.subset(np.arange(len(grid), len(grid) + n)) if own_queries else run

        points = np.empty((b, n, 2), np.float32)
        visible = np.zeros((b, n), bool)
        points[lo:], visible[lo:] = mine.points, mine.visible
        j = lo
        while j > 0:
            jn = max(0, j - hop)
            rec = self._record(clip, j, jn)
            span = j - jn + 1
            seg_pts, seg_vis = rec.points[-span:], rec.visible[-span:]
            disp = (seg_pts - seg_pts[-1:]).reshape(span, self.config.grid, self.config.grid, 2)
            # weighted by visibility, so a hidden grid neighbour (whose position is a guess)
            # does not drag a point; plain interpolation where every neighbour is hidden
            vis = seg_vis.reshape(span, self.config.grid, self.config.grid, 1)
            field = np.concatenate([disp * vis, vis, disp], axis=-1)
            at = interpolate_grid(field, points[j], clip.size, self.config.grid)[:-1]
            weight = at[..., 2:3]
            moved = np.where(weight > 1e-3, at[..., :2] / np.maximum(weight, 1e-3), at[..., 3:])
            points[jn:j] = points[j][None] + moved
            h, w = clip.size
            x, y = points[jn:j, :, 0], points[jn:j, :, 1]
            inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)  # edge cells are clamped
            visible[jn:j] = (weight[..., 0] > 0.5) & visible[j][None] & inside
            j = jn
        return Tracks(points, visible)


@TRACKERS.register("cotracker3_chained")
def make_cotracker3_chained(hop: int = 7, grid: int = 30, **base_options: object) -> ChainedTracker:
    """`cotracker3` stepped incrementally: base_options are the cotracker3 tracker's options."""
    base = TRACKERS.create("cotracker3", grid=grid, **base_options)
    return ChainedTracker(base, ChainConfig(hop=hop, grid=grid))
