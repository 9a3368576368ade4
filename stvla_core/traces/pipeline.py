"""The ST-VLA trace pipeline as one object: buffer -> tracks -> active traces -> depth -> traced
depth maps A/B/C and the RGB overlay, for a step of an episode (`at`) or a live stream (`push`).

Per-frame work is cached: each frame's depth is computed once (keyed by episode and frame index),
and trackers cache their own per-frame work (the `lk` tracker its per-hop flow), so stepping one
frame forward costs one new frame, not a re-run of the window."""

from __future__ import annotations

import itertools
import weakref
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from stvla_core.buffer import LRUCache, RollingBuffer, window_indices
from stvla_core.depth import DEPTH_ESTIMATORS, DepthEstimator
from stvla_core.episodes import Episode
from stvla_core.traces.draw import draw_overlay
from stvla_core.traces.render import VARIANTS, traced_depth_and_mask
from stvla_core.tracking import TRACKERS, Clip, SelectionConfig, Tracker, Tracks, select_active

IGNORED_SEGMENTS = ("ground", "floor", "table", "background", "wall")


@dataclass
class TraceConfig:
    buffer: int = 30  # b; the paper compares 7, 15 and 30
    tracker: str = "lk"
    depth: str = "episode"
    variant: str = "C"
    max_traces: int = 5  # K, as TraceVLA
    min_displacement: float = 1.0  # px mean per-step displacement for a point to count as moving
    line_thickness: int = 2
    seed: int = 0
    nearest: str = "min"  # variant C: "min" valid depth, or "segmentation" (nearest object)
    tracker_options: dict[str, Any] = field(default_factory=dict)
    depth_options: dict[str, Any] = field(default_factory=dict)
    cache_frames: int = 2048

    def validate(self) -> None:
        if self.buffer < 2:
            raise ValueError(f"buffer length must be >= 2 frames, found {self.buffer}")
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}; expected one of {', '.join(VARIANTS)}")
        TRACKERS.get(self.tracker)
        DEPTH_ESTIMATORS.get(self.depth)
        if self.line_thickness < 1:
            raise ValueError(f"line thickness must be >= 1 px, found {self.line_thickness}")
        if self.max_traces < 0:
            raise ValueError(f"max_traces must be >= 0, found {self.max_traces}")
        if self.nearest not in ("min", "segmentation"):
            raise ValueError(f"nearest must be 'min' or 'segmentation', found {self.nearest!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TracedFrame:
    index: int
    window: np.ndarray  # (b,) frame indices, oldest first
    rgb: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray  # (H, W) float32 metres, 0 invalid
    tracks: Tracks  # every tracked point
    active: Tracks  # the kept traces
    traced: dict[str, np.ndarray]  # variant -> (H, W) float32 metres
    overlay: np.ndarray  # (H, W, 3) uint8
    variant: str = "C"
    masks: dict[str, np.ndarray] = field(default_factory=dict)  # variant -> (H, W) bool trace pixels

    @property
    def traced_depth(self) -> np.ndarray:
        return self.traced[self.variant]


_keys: weakref.WeakKeyDictionary[Episode, str] = weakref.WeakKeyDictionary()
_counter = itertools.count()


def episode_key(episode: Episode) -> str:
    """A key unique to this episode object for the life of the process (caches never mix episodes)."""
    if episode not in _keys:
        _keys[episode] = f"{episode.name}#{next(_counter)}"
    return _keys[episode]


class TracePipeline:
    def __init__(
        self,
        config: TraceConfig | None = None,
        tracker: Tracker | None = None,
        depth_estimator: DepthEstimator | None = None,
    ) -> None:
        self.config = config or TraceConfig()
        self.config.validate()
        self.tracker = tracker or TRACKERS.create(self.config.tracker, **self.config.tracker_options)
        self.depth_estimator = depth_estimator or DEPTH_ESTIMATORS.create(
            self.config.depth, **self.config.depth_options
        )
        self._depth: LRUCache[tuple[str, int], np.ndarray] = LRUCache(self.config.cache_frames)
        self.depth_calls = 0  # each frame's depth is computed once: tests read this
        self._stream: RollingBuffer | None = None
        self._stream_key = ""
        self._stream_segments = itertools.count()

    # -- depth, once per frame ---------------------------------------------------------------
    def _depth_of(self, key: str, index: int, frame: np.ndarray, given: np.ndarray | None) -> np.ndarray:
        hit = self._depth.get((key, index))
        if hit is not None:
            return hit
        d = self.depth_estimator.estimate(frame, given)
        if d.shape != frame.shape[:2]:
            raise ValueError(f"depth of frame {index} has shape {d.shape}, frame is {frame.shape[:2]}")
        self.depth_calls += 1
        self._depth.put((key, index), d)
        return d

    # -- offline: a step of an episode ----------------------------------------------------------
    def at(self, episode: Episode, t: int) -> TracedFrame:
        if not 0 <= t < episode.num_frames:
            raise IndexError(f"step {t} outside episode {episode.name!r} of {episode.num_frames} frames")
        key = episode_key(episode)
        idx = window_indices(t, self.config.buffer)
        gt = episode.gt_points is not None
        clip = Clip(
            frames=episode.frames[idx],
            indices=idx,
            gt_points=episode.gt_points[idx] if gt else None,
            gt_visible=episode.gt_visible[idx] if gt else None,
            key=key,
        )
        given = episode.depth
        depths = np.stack(
            [self._depth_of(key, int(i), episode.frames[i], None if given is None else given[i]) for i in idx]
        )
        seg = None
        if self.config.variant == "C" and self.config.nearest == "segmentation":
            seg = self._segmentation(episode, t)
        return self._trace(clip, depths, seg)

    def _segmentation(self, episode: Episode, t: int) -> tuple[np.ndarray, list[int]]:
        if episode.segmentation is None:
            raise ValueError("nearest='segmentation' needs an episode with segmentation; this one has none")
        ignore = [0] + [
            i for i, n in episode.segmentation_names.items() if any(s in n.lower() for s in IGNORED_SEGMENTS)
        ]
        return episode.segmentation[t], ignore

    # -- live: a stream of frames ----------------------------------------------------------------
    def reset(self) -> None:
        """Start a new stream (a new episode in closed loop)."""
        self._stream = RollingBuffer(self.config.buffer)
        self._stream_key = f"live#{next(self._stream_segments)}"

    def feed(self, rgb: np.ndarray, depth: np.ndarray | None = None) -> None:
        """Buffer a frame (and its depth) without tracing: fills the window before the first
        traced step (benchmarks, a stream joined midway) at the cost of the depth alone."""
        if self._stream is None:
            self.reset()
        assert self._stream is not None
        if depth is not None and depth.shape != rgb.shape[:2]:
            raise ValueError(f"depth has shape {depth.shape}, frame is {rgb.shape[:2]}")
        index = self._stream.push(rgb)
        self._depth_of(self._stream_key, index, rgb, depth)

    def push(self, rgb: np.ndarray, depth: np.ndarray | None = None) -> TracedFrame:
        """Buffer a frame and trace the window it closes."""
        self.feed(rgb, depth)
        return self.trace(self.window())

    def window(self) -> Clip:
        """The stream's current window, oldest frame first (`push` = `feed`, `window`, `trace`)."""
        if self._stream is None:
            raise RuntimeError("no frames fed: call feed() or push() first")
        frames, idx = self._stream.window()
        return Clip(frames=frames, indices=idx, key=self._stream_key)

    def trace(self, clip: Clip, tracks: Tracks | None = None) -> TracedFrame:
        """Trace a window of the stream (`window`); `tracks` when they are already made
        (BatchedPolicy tracks the windows of all its environments in one call)."""
        depths = np.stack([self._depth.get((self._stream_key, int(i))) for i in clip.indices])
        return self._trace(clip, depths, None, tracks)

    # -- shared: tracks -> traced maps -----------------------------------------------------------
    def _trace(
        self,
        clip: Clip,
        depths: np.ndarray,
        seg: tuple[np.ndarray, list[int]] | None,
        tracks: Tracks | None = None,
    ) -> TracedFrame:
        c = self.config
        if tracks is None and clip.frames.shape[0] >= 2:
            tracks = self.tracker.track(clip)
        elif tracks is None:  # the first frame of an episode: nothing to track yet
            tracks = Tracks(np.zeros((1, 0, 2), np.float32), np.zeros((1, 0), bool))
        ids = select_active(tracks, SelectionConfig(c.max_traces, c.min_displacement, c.seed))
        active = tracks.subset(ids)
        seg_t, ignore = seg if seg is not None else (None, (0,))
        drawn = {
            v: traced_depth_and_mask(
                v, depths[-1], active, depths, c.line_thickness, seg_t if v == "C" else None, ignore
            )
            for v in VARIANTS
        }
        return TracedFrame(
            index=int(clip.indices[-1]),
            window=clip.indices,
            rgb=clip.frames[-1],
            depth=depths[-1],
            tracks=tracks,
            active=active,
            traced={v: m for v, (m, _) in drawn.items()},
            overlay=draw_overlay(clip.frames[-1], active, c.line_thickness),
            variant=c.variant,
            masks={v: k for v, (_, k) in drawn.items()},
        )
