"""Replaying fixed-shape GPU work from CUDA graphs: a model call launched from Python pays for every
kernel launch (microseconds each, thousands per query of a 4B model); a captured graph
launches them all at once. Used by the fast policy path (stvla_core/model/fast_generation.py) and
by the CoTracker3 predictor."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

Outputs = tuple[torch.Tensor | None, ...]


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    inputs: tuple[torch.Tensor, ...]
    outputs: Outputs


class GraphedCall:
    """`fn(*tensors) -> tuple of tensors (or None)`, captured as a CUDA graph once an input
    signature (shapes, dtypes, device) has come `after` times, then replayed after copying the
    inputs into the graph's own buffers; until then, on the CPU, or with `enabled=False`, `fn` runs
    directly. `after` > 1 spares captures of signatures that come once (a buffer filling up).

    `fn` must not sync with the host (no .item(), no data-dependent shapes) and must allocate its
    state inside (a static cache made in `fn` lives in the graph's memory pool)."""

    def __init__(
        self, fn: Callable[..., Outputs], enabled: bool = True, after: int = 1, warmup: int = 2
    ) -> None:
        self.fn = fn
        self.enabled = enabled
        self.after = after
        self.warmup = warmup
        self.graphs: dict[tuple, _Captured] = {}
        self.seen: dict[tuple, int] = {}

    def _capture(self, args: tuple[torch.Tensor, ...]) -> _Captured:
        inputs = tuple(a.clone() for a in args)
        device = args[0].device
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):  # warm-up off the default stream, as capture requires
            for _ in range(self.warmup):
                self.fn(*inputs)
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            outputs = self.fn(*inputs)
        return _Captured(graph, inputs, outputs)

    def __call__(self, *args: torch.Tensor) -> Outputs:
        if not self.enabled or args[0].device.type != "cuda":
            return self.fn(*args)
        key = tuple((tuple(a.shape), a.dtype, a.device) for a in args)
        if key not in self.graphs:
            self.seen[key] = self.seen.get(key, 0) + 1
            if self.seen[key] < self.after:
                return self.fn(*args)
            self.graphs[key] = self._capture(args)
        entry = self.graphs[key]
        for buf, a in zip(entry.inputs, args, strict=True):
            buf.copy_(a, non_blocking=True)
        entry.graph.replay()
        # the next replay overwrites the graph's outputs: hand out copies
        return tuple(None if o is None else o.clone() for o in entry.outputs)
