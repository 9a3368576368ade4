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
from collections.abc import Sequence
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

    def __init__(
        self, config: CoTracker3Config | None = None, predictor: CoTracker3Predictor | None = None
    ) -> None:
        self.config = cfg = config or CoTracker3Config()
        base = {f.name: getattr(cfg, f.name) for f in fields(PredictorConfig)}
        self.predictor = predictor or CoTracker3Predictor(PredictorConfig(**base))
        # (clip key, frame index) -> (fingerprint of the frame, feature map)
        self._fmaps: OrderedDict[tuple[str, int], tuple[bytes, torch.Tensor]] = OrderedDict()
        self.encoded = 0  # frames run through the encoder so far (benchmarks, tests)

    def fork(self) -> CoTracker3Tracker:
        """A tracker with this one's network (weights, CUDA graphs) and a cache of its own: one
        per environment of a BatchedPolicy, which tracks them all in one call (`track_many`)."""
        return CoTracker3Tracker(self.config, self.predictor)

    def reset(self) -> None:
        self._fmaps.clear()

    def _missing(self, clip: Clip, order: np.ndarray) -> list[tuple[int, tuple[str, int], bytes]]:
        """(clip frame, cache key, fingerprint) of the frames in `order` not in the cache."""
        out = []
        for i in order:
            key, mark = (clip.key, int(clip.indices[i])), _fingerprint(clip.frames[i])
            if self._fmaps.get(key, (None,))[0] != mark:
                out.append((int(i), key, mark))
        return out

    def _stacked(
        self, clip: Clip, order: np.ndarray, missing: list, new: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """(b, 128, h, w) feature maps of the clip's frames in `order`, the `missing` ones
        (`_missing`) encoded as `new`."""
        if missing:
            self.encoded += len(missing)
            for (_, key, mark), fmap in zip(missing, new, strict=True):
                self._fmaps[key] = (mark, fmap)
        keys = [(clip.key, int(clip.indices[i])) for i in order]
        for key in keys:
            self._fmaps.move_to_end(key)
        out = torch.stack([self._fmaps[key][1] for key in keys])
        while len(self._fmaps) > max(self.config.cache_frames, len(keys)):
            self._fmaps.popitem(last=False)
        return out

    def _features(self, clip: Clip, order: np.ndarray) -> torch.Tensor:
        """(b, 128, h, w) feature maps of the clip's frames in `order`, encoding only new ones."""
        missing = self._missing(clip, order)
        new = self.predictor.encode(clip.frames[[i for i, _, _ in missing]]) if missing else ()
        return self._stacked(clip, order, missing, new)

    def _query(self, clip: Clip) -> tuple[np.ndarray, np.ndarray, bool]:
        """The clip's queries (or a grid), its frames newest first (the query frame becomes
        frame 0), and whether the support grid goes with them (the official predictor adds it to
        given queries only)."""
        queries = clip.queries if clip.queries is not None else grid_points(clip.size, self.config.grid)
        return queries, np.arange(len(clip.frames))[::-1], clip.queries is not None

    def track(self, clip: Clip) -> Tracks:
        """Tracks of the clip's queries (or a grid) on its newest frame, oldest frame first:
        points (b, N, 2) float32 frame pixels, visible (b, N) bool."""
        queries, order, support = self._query(clip)
        if self.config.incremental and self.predictor.native:
            fmaps = self._features(clip, order)
            pts, vis = self.predictor.track(clip.size, queries, 0, fmaps=fmaps, support=support)
        else:
            self.encoded += len(order)
            pts, vis = self.predictor.track(clip.size, queries, 0, frames=clip.frames[order], support=support)
        return _oldest_first(pts, vis)

    @staticmethod
    def track_many(trackers: Sequence[CoTracker3Tracker], clips: Sequence[Clip]) -> list[Tracks]:
        """Each tracker's clip, with one encoder call for all the new frames and one network call
        for all the clips, wherever the trackers share a network (`fork`) and the clips agree in
        length, frame size and number of queries (B environments stepped together do); any
        other clip is tracked alone. Each tracker keeps its own cache; the answers equal
        `track`'s up to float rounding."""
        out: dict[int, Tracks] = {}
        groups: dict[tuple, list[int]] = {}
        asked = [t._query(c) for t, c in zip(trackers, clips, strict=True)]  # queries, order, support
        for i, (tracker, clip) in enumerate(zip(trackers, clips, strict=True)):
            queries, order, support = asked[i]
            if tracker.config.incremental and tracker.predictor.native:
                key = (id(tracker.predictor), len(order), clip.frames.shape[1:], len(queries), support)
                groups.setdefault(key, []).append(i)
            else:
                out[i] = tracker.track(clip)
        for members in groups.values():
            if len(members) == 1:
                out[members[0]] = trackers[members[0]].track(clips[members[0]])
                continue
            predictor = trackers[members[0]].predictor
            missing = {i: trackers[i]._missing(clips[i], asked[i][1]) for i in members}
            frames = [clips[i].frames[j] for i in members for j, _, _ in missing[i]]
            new = iter(predictor.encode(np.stack(frames)) if frames else ())
            fmaps = torch.stack(
                [
                    trackers[i]._stacked(clips[i], asked[i][1], missing[i], [next(new) for _ in missing[i]])
                    for i in members
                ]
            )
            sizes, queries = [clips[i].size for i in members], [asked[i][0] for i in members]
            answers = predictor.track_many(sizes, queries, fmaps, 0, asked[members[0]][2])
            for i, (pts, vis) in zip(members, answers, strict=True):
                out[i] = _oldest_first(pts, vis)
        return [out[i] for i in range(len(clips))]


def _oldest_first(points: np.ndarray, visible: np.ndarray) -> Tracks:
    """Tracks from the answer for the clip reversed in time (newest frame first)."""
    return Tracks(np.ascontiguousarray(points[::-1]), np.ascontiguousarray(visible[::-1]))


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
