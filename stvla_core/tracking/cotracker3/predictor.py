"""The user-facing wrapper around the CoTracker3 network: checkpoint loading, resizing frames to
the model resolution and coordinates back, grid or given queries, thresholded visibility.

Frames are encoded one by one at the model resolution (`encode`), so a caller can keep the feature
maps of frames it has already seen; `track` then runs only the transformer on a stack of them.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from stvla_core.cuda_graphs import GraphedCall
from stvla_core.tracking.base import TrackerUnavailableError
from stvla_core.tracking.cotracker3.network import (
    CoTrackerThreeBase,
    CoTrackerThreeOffline,
    CoTrackerThreeOnline,
)

CHECKPOINT_URLS = {
    "offline": "https://huggingface.co/facebook/cotracker3/resolve/main/scaled_offline.pth",
    "online": "https://huggingface.co/facebook/cotracker3/resolve/main/scaled_online.pth",
}
WINDOW_LEN = {"offline": 60, "online": 16}
# Official predictor thresholds: offline keeps vis > 0.9, online keeps vis * confidence > 0.6.
VIS_THRESHOLD = {"offline": 0.9, "online": 0.6}
# Official support grid side added to given queries: offline always, online only if asked.
SUPPORT_GRID = {"offline": 6, "online": 0}
BACKENDS = ("native", "official")
AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _variant(online: bool) -> str:
    return "online" if online else "offline"


def support_grid_points(resolution: tuple[int, int], side: int) -> np.ndarray:
    """(side*side, 2) float32 (x, y) model pixels of the official support grid (`get_points_on_a_grid`),
    row by row: a margin of W/64 on every side, spanning m..W-m and m..H-m (so 8..504 x 8..376 at
    384 x 512), one point at the centre when side is 1. Parity needs this exact formula: the
    network's answer for the queries depends on where the support points sit."""
    h, w = resolution
    if side == 1:
        return np.array([[w / 2, h / 2]], np.float32)
    m = w / 64
    xs = np.linspace(m, w - m, side, dtype=np.float32)
    ys = np.linspace(m, h - m, side, dtype=np.float32)
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


def _hub_path(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def load_checkpoint(checkpoint: str | Path | None, online: bool) -> dict[str, torch.Tensor]:
    """The official state dict from a local `.pth`, or (checkpoint=None) from the official URL
    through torch's hub cache. Raises TrackerUnavailableError saying how to get the file."""
    url = CHECKPOINT_URLS[_variant(online)]
    if checkpoint is None:
        try:
            state = torch.hub.load_state_dict_from_url(url, map_location="cpu", weights_only=True)
        except Exception as exc:  # no network, proxy, HTTP error: all mean "not available here"
            dest = _hub_path(url)
            raise TrackerUnavailableError(
                f"CoTracker3 {_variant(online)} weights are not in the torch hub cache ({dest}) "
                f"and could not be downloaded ({type(exc).__name__}: {exc}); get them with: "
                f"mkdir -p {dest.parent} && wget -O {dest} {url}"
            ) from exc
    else:
        path = Path(checkpoint)
        if not path.is_file():
            raise TrackerUnavailableError(
                f"CoTracker3 checkpoint {path} not found; download it with: wget -O {path} {url}"
            )
        state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("model", state) if isinstance(state, dict) else state


def build_network(
    online: bool, model_resolution: tuple[int, int] = (384, 512), backend: str = "native"
) -> torch.nn.Module:
    """An untrained network of the official architecture (stride 4, radius 3, official window)."""
    kwargs = dict(
        stride=4,
        corr_radius=3,
        window_len=WINDOW_LEN[_variant(online)],
        model_resolution=tuple(model_resolution),
    )
    if backend == "native":
        return (CoTrackerThreeOnline if online else CoTrackerThreeOffline)(**kwargs)
    if backend != "official":
        raise ValueError(f"cotracker3 backend: expected one of {BACKENDS}, found {backend!r}")
    if importlib.util.find_spec("cotracker") is None:
        raise TrackerUnavailableError(
            "cotracker3 backend 'official' needs the official package: "
            "pip install git+https://github.com/facebookresearch/co-tracker.git"
        )
    from cotracker.models.core.cotracker import cotracker3_offline, cotracker3_online

    cls = cotracker3_online.CoTrackerThreeOnline if online else cotracker3_offline.CoTrackerThreeOffline
    return cls(**kwargs)


@dataclass
class PredictorConfig:
    """Defaults give the official predictors' tracks. Online, two settings depart from them on
    purpose, as the official offline predictor does: `support_grid=6` gives a few given queries
    context; `pin_queries=True` makes every trace end on its query point, visible."""

    checkpoint: str | None = None  # local .pth; None = official URL via torch hub cache
    pretrained: bool = True  # False = random weights (tests, benchmarks)
    online: bool = True  # online model (window 16, step 8) or offline model (window 60)
    model_resolution: tuple[int, int] = (384, 512)
    iters: int = 6  # transformer updates per window, as the official predictor
    support_grid: int | None = None  # side of the grid tracked with given queries; None = official
    pin_queries: bool | None = None  # query frame = the queries, visible; None = official (offline)
    backend: str = "native"
    device: str = "cpu"
    seed: int = 0  # random weights when pretrained=False
    amp: str = "none"  # "bf16" / "fp16": autocast the network (GPU speed); answers stay float32
    graphs: bool = False  # on a GPU, replay the tracking of cached feature maps from CUDA graphs


class CoTracker3Predictor:
    """Tracks points through (T, H, W, 3) uint8 frames; answers in frame pixels."""

    def __init__(self, config: PredictorConfig | None = None) -> None:
        self.config = cfg = config or PredictorConfig()
        h, w = cfg.model_resolution
        if h % 4 or w % 4 or h < 32 or w < 32:
            raise ValueError(
                f"cotracker3 model_resolution: expected multiples of 4 of at least 32, found {(h, w)}"
            )
        if cfg.amp not in AMP_DTYPES:
            raise ValueError(f"cotracker3 amp: expected one of {sorted(AMP_DTYPES)}, found {cfg.amp!r}")
        state = load_checkpoint(cfg.checkpoint, cfg.online) if cfg.pretrained else None
        with torch.random.fork_rng():
            torch.manual_seed(cfg.seed)
            self.model = build_network(cfg.online, cfg.model_resolution, cfg.backend)
        if state is not None:
            self.model.load_state_dict(state, strict=True)
        self.model.eval().to(cfg.device)
        self.vis_threshold = VIS_THRESHOLD[_variant(cfg.online)]
        self.support_grid = (
            SUPPORT_GRID[_variant(cfg.online)] if cfg.support_grid is None else cfg.support_grid
        )
        self.pin_queries = not cfg.online if cfg.pin_queries is None else cfg.pin_queries
        # one graph per (window length, points); lengths met once while the buffer fills stay
        # eager, the full window's is captured on its second step
        self._track_fmaps = GraphedCall(self._run_track, enabled=cfg.graphs, after=2)
        self._encode = GraphedCall(self._run_encode, enabled=cfg.graphs, after=2)  # a frame a step

    def _run_track(self, fmaps: torch.Tensor, queries: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with self._autocast():
            return self.model.track(fmaps, queries, self.config.iters)

    def _run_encode(self, frames: torch.Tensor) -> tuple[torch.Tensor]:
        with self._autocast():
            return (self.model.encode(self._resized(frames))[0],)

    def _autocast(self) -> contextlib.AbstractContextManager:
        dtype = AMP_DTYPES[self.config.amp]
        if dtype is None:
            return contextlib.nullcontext()
        # The weights' casts are cached for the call: the 6 updates of each window reuse them
        # (without the cache, ~130 casts an update). A captured graph must not use casts cached
        # outside it: this context is entered inside the captured call, so its cache lives and
        # dies inside the capture, unless an outer autocast keeps it; then there is no cache.
        device = torch.device(self.config.device).type
        cache = not (self.config.graphs and torch.is_autocast_enabled(device))
        return torch.autocast(device, dtype=dtype, cache_enabled=cache)

    @property
    def native(self) -> bool:
        return isinstance(self.model, CoTrackerThreeBase)

    def _uploaded(self, frames: np.ndarray) -> torch.Tensor:
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"cotracker3 frames: expected (T, H, W, 3), found {frames.shape}")
        return torch.from_numpy(np.ascontiguousarray(frames)).to(self.config.device)

    def resize(self, frames: np.ndarray) -> torch.Tensor:
        """(T, H, W, 3) uint8 -> (1, T, 3, h, w) float 0..255 at the model resolution."""
        return self._resized(self._uploaded(frames))

    def _resized(self, frames: torch.Tensor) -> torch.Tensor:
        """(T, H, W, 3) uint8 on the device -> (1, T, 3, h, w) float, on the device alone."""
        video = frames.permute(0, 3, 1, 2).float()
        video = F.interpolate(video, self.config.model_resolution, mode="bilinear", align_corners=True)
        return video[None]

    def scale(self, size: tuple[int, int]) -> np.ndarray:
        """(x, y) factors from frame pixels to model pixels (align-corners convention)."""
        (h, w), (mh, mw) = size, self.config.model_resolution
        return np.array([(mw - 1) / max(w - 1, 1), (mh - 1) / max(h - 1, 1)], np.float32)

    @torch.inference_mode()
    def encode(self, frames: np.ndarray) -> torch.Tensor:
        """(T, H, W, 3) uint8 -> (T, 128, h/4, w/4) feature maps (native backend only)."""
        if not self.native:
            raise TrackerUnavailableError("feature caching needs backend='native'")
        return self._encode(self._uploaded(frames))[0]

    @torch.inference_mode()
    def track(
        self,
        size: tuple[int, int],
        queries: np.ndarray,
        query_frame: int = 0,
        fmaps: torch.Tensor | None = None,
        frames: np.ndarray | None = None,
        support: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Track (N, 2) (x, y) frame-pixel queries lying on `query_frame` through a clip of frames
        of `size` (H, W), given as cached `fmaps` (T, 128, h, w) or raw `frames`. `support` adds the
        support grid (if the config has one) on frame 0, as the official predictor places it
        (context for a few given queries; pointless for a dense grid).

        Returns points (T, N, 2) float32 frame pixels and visible (T, N) bool. At the query frame
        each point is its query and visible if `pin_queries` (official offline), else the network's
        own answer (official online)."""
        if fmaps is None and frames is None:
            raise ValueError("cotracker3 track: give fmaps (native backend) or frames")
        if fmaps is not None and self.native:
            return self.track_many([size], [queries], fmaps[None], query_frame, support)[0]
        qt = torch.from_numpy(self._queries(size, queries, query_frame, support))[None]
        with self._autocast():
            xy, vis, conf, *_ = self.model(
                self.resize(frames), qt.to(self.config.device), iters=self.config.iters
            )
        return self._answers([size], [queries], xy, vis, conf, query_frame)[0]

    @torch.inference_mode()
    def track_many(
        self,
        sizes: Sequence[tuple[int, int]],
        queries: Sequence[np.ndarray],
        fmaps: torch.Tensor,
        query_frame: int = 0,
        support: bool = True,
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """`track` of B clips of cached feature maps in one network call: fmaps (B, T, 128, h, w),
        per clip its frames' size and (N, 2) queries, N the same for all. The clips share the
        weights and nothing else; each gets what it gets alone (up to float rounding)."""
        if fmaps.shape[0] != len(sizes) or len(sizes) != len(queries):
            raise ValueError(
                f"cotracker3 track_many: {fmaps.shape[0]} clips of feature maps, "
                f"{len(sizes)} sizes, {len(queries)} query sets"
            )
        q3 = [self._queries(size, q, query_frame, support) for size, q in zip(sizes, queries, strict=True)]
        if len({len(q) for q in q3}) > 1:
            raise ValueError(f"cotracker3 track_many: clips with {sorted({len(q) for q in q3})} queries")
        qt = torch.from_numpy(np.stack(q3)).to(self.config.device)
        xy, vis, conf = self._track_fmaps(fmaps, qt)
        return self._answers(sizes, queries, xy, vis, conf, query_frame)

    def _queries(
        self, size: tuple[int, int], queries: np.ndarray, query_frame: int, support: bool
    ) -> np.ndarray:
        """(N, 2) frame-pixel queries -> (N', 3) (frame, x, y) model pixels, the support grid after."""
        if queries.ndim != 2 or queries.shape[1] != 2:
            raise ValueError(f"cotracker3 queries: expected (N, 2), found {queries.shape}")
        q = queries.astype(np.float32) * self.scale(size)
        q3 = np.concatenate([np.full((len(q), 1), query_frame, np.float32), q], axis=1)
        if support and self.support_grid:
            grid = support_grid_points(self.config.model_resolution, self.support_grid)
            q3 = np.concatenate([q3, np.concatenate([np.zeros((len(grid), 1), np.float32), grid], 1)])
        return q3

    def _answers(
        self,
        sizes: Sequence[tuple[int, int]],
        queries: Sequence[np.ndarray],
        xy: torch.Tensor,
        vis: torch.Tensor,
        conf: torch.Tensor,
        query_frame: int,
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """The network's (B, T, N', ...) answers -> per clip points (T, N, 2) frame pixels and
        visible (T, N), copied to the host in one go."""
        n = len(queries[0])  # the same for every clip
        if self.config.online:
            vis = vis * conf
        xy_host = xy[:, :, :n].float().cpu().numpy()
        visible = vis[:, :, :n].float().cpu().numpy() > self.vis_threshold
        out = []
        for i, (size, q) in enumerate(zip(sizes, queries, strict=True)):
            points = (xy_host[i] / self.scale(size)).astype(np.float32)
            seen = visible[i]
            if self.pin_queries:
                points[query_frame] = q
                seen[query_frame] = True
            out.append((points, seen))
        return out
