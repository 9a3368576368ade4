"""The rolling buffer of ST-VLA: at step t the last b frames (fewer at an episode's start)."""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Generic, TypeVar

import numpy as np

K = TypeVar("K")
V = TypeVar("V")


def window_indices(t: int, b: int) -> np.ndarray:
    """(min(b, t+1),) int64 frame indices feeding step t, oldest first."""
    if b < 2:
        raise ValueError(f"buffer length must be >= 2 frames, found {b}")
    if t < 0:
        raise ValueError(f"step must be >= 0, found {t}")
    return np.arange(max(0, t - b + 1), t + 1, dtype=np.int64)


class LRUCache(Generic[K, V]):
    """A bounded dict of computed per-frame results, oldest use evicted first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._d: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        if key in self._d:
            self._d.move_to_end(key)
            return self._d[key]
        return None

    def put(self, key: K, value: V) -> None:
        self._d[key] = value
        self._d.move_to_end(key)
        while len(self._d) > self.capacity:
            self._d.popitem(last=False)

    def __len__(self) -> int:
        return len(self._d)

    def clear(self) -> None:
        self._d.clear()


class RollingBuffer:
    """Frames of a live stream; push one, read the window of at most `capacity` newest frames.
    Every frame must have the size of the first."""

    def __init__(self, capacity: int) -> None:
        if capacity < 2:
            raise ValueError(f"buffer length must be >= 2 frames, found {capacity}")
        self.capacity = capacity
        self._frames: deque[np.ndarray] = deque(maxlen=capacity)
        self._indices: deque[int] = deque(maxlen=capacity)
        self.next_index = 0

    def push(self, frame: np.ndarray) -> int:
        """Append a (H, W, 3) uint8 frame; returns its index in the stream."""
        if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"frame: expected (H, W, 3) uint8 RGB, found {frame.shape} {frame.dtype}")
        if self._frames and frame.shape != self._frames[0].shape:
            raise ValueError(f"frame has shape {frame.shape}, earlier frames are {self._frames[0].shape}")
        self._frames.append(frame)
        self._indices.append(self.next_index)
        self.next_index += 1
        return self.next_index - 1

    def window(self) -> tuple[np.ndarray, np.ndarray]:
        """(frames (b, H, W, 3) uint8, indices (b,) int64), oldest first."""
        if not self._frames:
            raise ValueError("the buffer is empty: push a frame first")
        return np.stack(self._frames), np.asarray(self._indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._frames)

    def clear(self) -> None:
        self._frames.clear()
        self._indices.clear()
        self.next_index = 0
