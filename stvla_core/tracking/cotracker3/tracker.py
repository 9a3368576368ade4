"""`cotracker3`: CoTracker3 on the rolling buffer, queries on the newest frame tracked back.

The clip is reversed in time so the query frame (the newest) is frame 0, tracked forward as the
model was trained, and the answer flipped back to oldest-first.

Incremental use: the per-frame CNN encoder is a large share of a step's cost and every frame is
encoded independently (instance norm, no temporal mixing), so with `incremental=True` its feature
maps are cached per (clip key, frame index); stepping the buffer one frame forward encodes one new
frame and re-runs only the transformer on the window. The answer equals a full re-track up to
float rounding (batched vs single-frame convolutions); tests bound the gap. The transformer still
re-runs over the whole window: the queries move to the new newest frame every step, so the online
model's streaming state (built for fixed queries) cannot be carried over. Measured
(benchmarks/bench_cotracker3.py, 384 x 512, 6 iterations): on an H100 the cache saves 1.0-1.4x
per step (online, b=30, N=100: 188 -> 133 ms); on a CPU the transformer and correlation MLP
dominate (encoder ~0.2 s/frame, tracking b=30 N=100 ~60 s), so the saving is ~10%. For steps
that cost far less than a re-track, chain short runs (`chain.py`, `cotracker3_chained`).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, fields

import numpy as np
import torch

from stvla_core.tracking.base import TRACKERS, Clip, Tracks, grid_points
from stvla_core.tracking.cotracker3.predictor import CoTracker3Predictor, PredictorConfig


@dataclass
class CoTracker3Config(PredictorConfig):
    grid: int = 30  # grid x grid query points on the newest frame when the clip has none
    incremental: bool = True  # cache per-frame feature maps (native backend only)
    cache_frames: int = 40  # feature maps kept (6.3 MB each at 384 x 512: 128 x 96 x 128 float32)


def _fingerprint(frame: np.ndarray) -> bytes:
    """A cheap check that a cached frame index still holds the same picture (a live stream that
    restarts reuses indices)."""
    return frame.shape[:2].__repr__().encode() + frame[::8, ::8].tobytes()


class CoTracker3Tracker:
    name = "cotracker3"

    def __init__(self, config: CoTracker3Config | None = None) -> None:
        self.config = cfg = config or CoTracker3Config()
        base = {f.name: getattr(cfg, f.name) for f in fields(PredictorConfig)}
        self.predictor = CoTracker3Predictor(PredictorConfig(**base))
        # (clip key, frame index) -> (fingerprint of the frame, feature map)
        self._fmaps: OrderedDict[tuple[str, int], tuple[bytes, torch.Tensor]] = OrderedDict()
        self.encoded = 0  # frames run through the encoder so far (benchmarks, tests)

    def reset(self) -> None:
        self._fmaps.clear()

    def _features(self, clip: Clip, order: np.ndarray) -> torch.Tensor:
        """(b, 128, h, w) feature maps of the clip's frames in `order`, encoding only new ones."""
        keys = [(clip.key, int(clip.indices[i])) for i in order]
        prints = [_fingerprint(clip.frames[i]) for i in order]
        missing = [
            (i, k, p)
            for i, k, p in zip(order, keys, prints, strict=True)
            if self._fmaps.get(k, (None,))[0] != p
        ]
        if missing:
            new = self.predictor.encode(clip.frames[[i for i, _, _ in missing]])
            self.encoded += len(missing)
            for (_, k, p), fmap in zip(missing, new, strict=True):
                self._fmaps[k] = (p, fmap)
        for k in keys:
            self._fmaps.move_to_end(k)
        out = torch.stack([self._fmaps[k][1] for k in keys])
        while len(self._fmaps) > max(self.config.cache_frames, len(keys)):
            self._fmaps.popitem(last=False)
        return out

    def track(self, clip: Clip) -> Tracks:
        """Tracks of the clip's queries (or a grid) on its newest frame, oldest frame first:
        points (b, N, 2) float32 frame pixels, visible (b, N) bool."""
        queries = clip.queries if clip.queries is not None else grid_points(clip.size, self.config.grid)
        order = np.arange(len(clip.frames))[::-1]  # newest first: the query frame becomes frame 0
        support = clip.queries is not None  # the official predictor adds it to given queries only
        if self.config.incremental and self.predictor.native:
            fmaps = self._features(clip, order)
            pts, vis = self.predictor.track(clip.size, queries, 0, fmaps=fmaps, support=support)
        else:
            self.encoded += len(order)
            pts, vis = self.predictor.track(clip.size, queries, 0, frames=clip.frames[order], support=support)
        return Tracks(np.ascontiguousarray(pts[::-1]), np.ascontiguousarray(vis[::-1]))


@TRACKERS.register("cotracker3")
def make_cotracker3(**kwargs: object) -> CoTracker3Tracker:
    """kwargs are CoTracker3Config fields, e.g. checkpoint="scaled_online.pth", online=True,
    grid=30, device="cpu", model_resolution=(384, 512)."""
    names = {f.name for f in fields(CoTracker3Config)}
    unknown = sorted(set(kwargs) - names)
    if unknown:
        raise TypeError(f"cotracker3: unknown options {unknown}; expected some of {sorted(names)}")
    if "model_resolution" in kwargs:
        kwargs["model_resolution"] = tuple(kwargs["model_resolution"])  # type: ignore[arg-type]
    return CoTracker3Tracker(CoTracker3Config(**kwargs))  # type: ignore[arg-type]
