"""GraphedCall's rules checked on the CPU: what a CUDA graph capture refuses is named by the guard
(the capture itself needs a GPU: benchmarks/bench_model_step.py)."""

from __future__ import annotations

import pytest
import torch

from stvla_core.cuda_graphs import GraphedCall, HostTransferGuard


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda x: x.new_tensor([1.0, 2.0]), r"Tensor.new_tensor on meta"),
        (lambda x: torch.tensor([1.0, 2.0], device="meta"), r"torch.tensor\(device=meta\)"),
        (lambda x: torch.ones(2).to("meta"), r"Tensor.to of a CPU tensor to meta"),
        (lambda x: torch.ones(2).to(x), r"Tensor.to of a CPU tensor to meta"),
        (lambda x: x.copy_(torch.ones(3)), r"Tensor.copy_ of a CPU tensor to meta"),
        (lambda x: x.sum().item(), r"host sync in a graphed call: Tensor.item\(\) on meta"),
        (lambda x: x.cpu(), r"Tensor.cpu\(\) on meta"),
    ],
)
def test_guard_names_what_a_capture_refuses(call, message):
    x = torch.empty(3, device="meta")
    with HostTransferGuard(), pytest.raises(RuntimeError, match=message):
        call(x)


def test_guard_allows_scalars_casts_and_host_work():
    x = torch.empty(3, device="meta")
    with HostTransferGuard():
        y = (x * torch.tensor(2.0)).to(torch.bfloat16)  # a 0-dim CPU tensor is a kernel argument
        z = torch.ones(2).to(torch.float64).cpu().tolist()  # host tensors stay free to use
    assert y.dtype == torch.bfloat16 and y.device.type == "meta" and z == [1.0, 1.0]


def test_graphed_call_runs_directly_off_the_gpu():
    calls = []

    def fn(x: torch.Tensor) -> tuple[torch.Tensor]:
        calls.append(1)
        return (x * 2,)

    call = GraphedCall(fn)
    torch.testing.assert_close(call(torch.ones(2))[0], torch.full((2,), 2.0))
    assert len(calls) == 1 and not call.graphs
    with pytest.raises(ValueError, match="warmup: expected >= 1 call before capture, found 0"):
        GraphedCall(fn, warmup=0)
