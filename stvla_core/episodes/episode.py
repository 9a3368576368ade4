"""The Episode: one recorded or simulated robot episode, validated once on construction so that
every later stage (buffer, trackers, depth, rendering, policy) can trust its shapes and units."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

ACTION_DIM = 7
ACTION_NAMES = ("dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper")


class EpisodeError(ValueError):
    """An episode (or a file meant to hold one) is not valid; the message names the field or file,
    what was expected and what was found."""


def _fail(field_name: str, expected: str, found: str) -> EpisodeError:
    return EpisodeError(f"episode field {field_name!r}: expected {expected}, found {found}")


def _describe(a: np.ndarray) -> str:
    return f"shape {tuple(a.shape)} dtype {a.dtype}"


def _is_number(x: object) -> bool:
    return not isinstance(x, bool | np.bool_) and isinstance(x, int | float | np.integer | np.floating)


def _invalid_depth_to_zero(depth: np.ndarray | None) -> np.ndarray | None:
    """NaN and ±inf become 0, the one 'no depth' marker, so every later stage sees one kind of
    invalid pixel. Anything that is not a float array is left for `validate` to refuse."""
    if isinstance(depth, np.ndarray) and np.issubdtype(depth.dtype, np.floating):
        bad = ~np.isfinite(depth)
        if bad.any():
            return np.where(bad, depth.dtype.type(0), depth)
    return depth


@dataclass(eq=False)
class Episode:
    """Arrays are indexed by time first. Pixel coordinates are (x, y) with x to the right.

    frames:        (T, H, W, 3) uint8 RGB
    depth:         (T, H, W) float32 metres; 0 marks a pixel without a valid depth (NaN and
                   ±inf, the usual "no reading" of depth cameras, are stored as 0)
    segmentation:  (T, H, W) int32 ids; `segmentation_names` maps id -> name
    actions:       (T, 7) float32 (dx, dy, dz, droll, dpitch, dyaw, gripper)
    intrinsics:    (3, 3) float32 pinhole matrix of the camera in pixels of `frames`
    extrinsics:    (4, 4) or (T, 4, 4) float32 world -> camera transform
    gt_points:     (T, N, 2) float32 ground-truth pixel positions of known gripper points
    gt_visible:    (T, N) bool visibility of those points
    """

    frames: np.ndarray
    instruction: str = ""
    fps: float = 10.0
    depth: np.ndarray | None = None
    segmentation: np.ndarray | None = None
    segmentation_names: dict[int, str] = field(default_factory=dict)
    actions: np.ndarray | None = None
    intrinsics: np.ndarray | None = None
    extrinsics: np.ndarray | None = None
    gt_points: np.ndarray | None = None
    gt_visible: np.ndarray | None = None
    gt_point_names: list[str] = field(default_factory=list)
    name: str = "episode"
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.depth = _invalid_depth_to_zero(self.depth)
        self.validate()

    # -- validation -------------------------------------------------------------------------
    def validate(self) -> None:
        f = self.frames
        if not isinstance(f, np.ndarray):
            raise _fail("frames", "a numpy array (T, H, W, 3) uint8", type(f).__name__)
        if f.ndim != 4 or f.shape[-1] != 3 or f.dtype != np.uint8:
            raise _fail("frames", "(T, H, W, 3) uint8 RGB", _describe(f))
        t, h, w = f.shape[:3]
        if t == 0 or h == 0 or w == 0:
            raise _fail("frames", "at least one frame of non-zero size", _describe(f))
        for name in ("instruction", "name", "source"):
            if not isinstance(getattr(self, name), str):
                raise _fail(name, "a string", type(getattr(self, name)).__name__)
        fps = self.fps
        if not _is_number(fps) or not (np.isfinite(fps) and fps > 0):
            raise _fail("fps", "a finite number > 0", repr(fps))

        self._check("depth", self.depth, (t, h, w), np.float32)
        if self.depth is not None and (self.depth < 0).any():
            raise _fail("depth", "metres >= 0 (0 marks invalid)", "negative values")
        self._check("segmentation", self.segmentation, (t, h, w), np.int32)
        names = self.segmentation_names
        if not isinstance(names, dict):
            raise _fail("segmentation_names", "a dict of int id -> str name", type(names).__name__)
        for k, v in names.items():
            if isinstance(k, bool) or not isinstance(k, int | np.integer) or not isinstance(v, str):
                raise _fail("segmentation_names", "int id -> str name", f"{k!r}: {v!r}")
        self._check("actions", self.actions, (t, ACTION_DIM), np.float32, floating=True)
        self._check("intrinsics", self.intrinsics, (3, 3), np.float32, floating=True)
        if self.extrinsics is not None:
            two_d = isinstance(self.extrinsics, np.ndarray) and self.extrinsics.ndim == 2
            shape = (4, 4) if two_d else (t, 4, 4)
            self._check("extrinsics", self.extrinsics, shape, np.float32, floating=True)
        if (self.gt_points is None) != (self.gt_visible is None):
            raise _fail("gt_visible", "given together with gt_points", "only one of the two")
        point_names = self.gt_point_names
        if not isinstance(point_names, list):
            raise _fail("gt_point_names", "a list of strings", type(point_names).__name__)
        for name in point_names:
            if not isinstance(name, str):
                raise _fail("gt_point_names", "a list of strings", f"{type(name).__name__} {name!r}")
        if self.gt_points is not None:
            p = self.gt_points
            n = p.shape[1] if isinstance(p, np.ndarray) and p.ndim == 3 else -1
            self._check("gt_points", self.gt_points, (t, n, 2), np.float32, floating=True)
            self._check("gt_visible", self.gt_visible, (t, n), np.bool_)
            if self.gt_point_names and len(self.gt_point_names) != n:
                raise _fail("gt_point_names", f"{n} names", f"{len(self.gt_point_names)}")
        if not isinstance(self.metadata, dict):
            raise _fail("metadata", "a JSON-serialisable dict", type(self.metadata).__name__)
        try:
            json.dumps(self.metadata)
        except (TypeError, ValueError) as e:  # ValueError: a circular reference
            raise _fail("metadata", "a JSON-serialisable dict", str(e)) from None

    def _check(
        self,
        name: str,
        a: np.ndarray | None,
        shape: tuple[int, ...],
        dtype: type,
        floating: bool = False,
    ) -> None:
        if a is None:
            return
        if not isinstance(a, np.ndarray):
            raise _fail(name, f"a numpy array {shape}", type(a).__name__)
        if a.shape != shape:
            raise _fail(name, f"shape {shape} {np.dtype(dtype)}", _describe(a))
        if a.dtype != dtype:
            raise _fail(name, f"dtype {np.dtype(dtype)}", f"dtype {a.dtype}")
        if floating and not np.isfinite(a).all():
            raise _fail(name, "finite values", f"{int((~np.isfinite(a)).sum())} NaN/inf values")

    # -- convenience ------------------------------------------------------------------------
    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the frames."""
        return int(self.frames.shape[1]), int(self.frames.shape[2])

    def __len__(self) -> int:
        return self.num_frames

    def replace(self, **changes: Any) -> Episode:
        """A validated copy with some fields changed."""
        return replace(self, **changes)

    def summary(self) -> str:
        parts = [f"{self.name}: {self.num_frames} frames {self.size[1]}x{self.size[0]}"]
        parts += [
            k for k in ("depth", "segmentation", "actions", "intrinsics") if getattr(self, k) is not None
        ]
        if self.gt_points is not None:
            parts.append(f"{self.gt_points.shape[1]} gt points")
        return ", ".join(parts)
