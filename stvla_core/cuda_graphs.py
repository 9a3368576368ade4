"""Replaying fixed-shape GPU work from CUDA graphs: a model call launched from Python pays for every
kernel launch (microseconds each, thousands per query of a 4B model); a captured graph
launches them all at once. Used by the fast policy path (stvla_core/model/fast_generation.py) and
by the CoTracker3 predictor."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.overrides import TorchFunctionMode

Outputs = tuple[torch.Tensor | None, ...]


_READS = {"item", "tolist", "cpu", "numpy"}  # device -> host: a sync, not capturable
_MOVES = {"to", "cuda", "copy_"}  # host -> device from pageable memory: refused during capture


class HostTransferGuard(TorchFunctionMode):
    """Raises on what a CUDA graph cannot hold, naming the call: reading a device tensor on the
    host (.item(), .cpu(), ...) and copying host data to the device (`new_tensor([...])`,
    `torch.tensor(..., device=...)`, `.to(device)` of a CPU tensor). 0-dim CPU tensors stay
    allowed: kernels take them as scalars. Works on the meta device, so tests run it on a CPU."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        first = args[0] if args else None
        on_device = isinstance(first, torch.Tensor) and first.device.type != "cpu"
        if name in _READS and on_device:
            raise RuntimeError(f"host sync in a graphed call: Tensor.{name}() on {first.device}")
        if name == "new_tensor" and on_device:
            raise RuntimeError(f"host data copied in a graphed call: Tensor.new_tensor on {first.device}")
        if name in ("tensor", "as_tensor") and torch.device(kwargs.get("device") or "cpu").type != "cpu":
            raise RuntimeError(f"host data copied in a graphed call: torch.{name}(device={kwargs['device']})")
        if name in _MOVES and isinstance(first, torch.Tensor):
            src = args[1] if name == "copy_" and len(args) > 1 else first
            dst = first.device if name == "copy_" else _target(args[1:], kwargs)
            if src.device.type == "cpu" and src.dim() > 0 and dst is not None and dst.type != "cpu":
                raise RuntimeError(
                    f"host data copied in a graphed call: Tensor.{name} of a CPU tensor to {dst}"
                )
        return func(*args, **kwargs)


def _target(args: tuple, kwargs: dict) -> torch.device | None:
    """The device a `Tensor.to(...)` call moves to, if it names one."""
    for a in (*args, kwargs.get("device")):
        if isinstance(a, (str, torch.device)):
            return torch.device(a)
        if isinstance(a, torch.Tensor):
            return a.device
    return None


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

    `fn` must not sync with the host (no .item(), no data-dependent shapes), nor copy host data to
    the device (the first warm-up runs under `HostTransferGuard`), and must allocate its state
    inside (a static cache made in `fn` lives in the graph's memory pool)."""

    def __init__(
        self, fn: Callable[..., Outputs], enabled: bool = True, after: int = 1, warmup: int = 2
    ) -> None:
        self.fn = fn
        self.enabled = enabled
        self.after = after
        if warmup < 1:
            raise ValueError(f"warmup: expected >= 1 call before capture, found {warmup}")
        self.warmup = warmup
        self.graphs: dict[tuple, _Captured] = {}
        self.seen: dict[tuple, int] = {}

    def _capture(self, args: tuple[torch.Tensor, ...]) -> _Captured:
        inputs = tuple(a.clone() for a in args)
        device = args[0].device
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):  # warm-up off the default stream, as capture requires
            with HostTransferGuard():  # names the offending call; a failed capture would not
                self.fn(*inputs)
            for _ in range(self.warmup - 1):
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
