"""The fast inference path and batched stepping: same tokens as the reference path, on the CPU
with the tiny model (the CUDA-graph replay itself needs a GPU: benchmarks/bench_model_step.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import translating_episode

from stvla_core.cuda_graphs import HostTransferGuard
from stvla_core.model import SpatialVLAForConditionalGeneration, processor_for, tiny_config, tiny_model
from stvla_core.model.fast_generation import FastGenerator
from stvla_core.model.processing_spatialvla import ModelInputs
from stvla_core.policy import BatchedPolicy, Policy, PolicyConfig
from stvla_core.traces import TraceConfig


@pytest.fixture(scope="module")
def model() -> SpatialVLAForConditionalGeneration:
    return tiny_model(0)


def _rgb(seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random((224, 224, 3)) * 255).astype(np.uint8)


@pytest.mark.parametrize("with_depth", [True, False], ids=["traced-depth", "zoedepth"])
def test_fast_generation_equals_the_reference_exactly(model, with_depth: bool) -> None:
    proc = processor_for(model)
    depth = np.linspace(0.4, 2.5, 224 * 224, dtype=np.float32).reshape(224, 224) if with_depth else None
    inp = proc(_rgb(0), "put the carrot on the plate", depth=depth)
    ranges = proc.action_tokenizer.ranges()
    ref = model.generate(inp.input_ids, inp.pixel_values, inp.intrinsics, inp.depth, 12, ranges)
    fast = FastGenerator(model, 12, ranges)(inp.input_ids, inp.pixel_values, inp.intrinsics, inp.depth)
    assert fast.visual.depth_source == ("given" if with_depth else "zoedepth")
    for name in ("token_ids", "probs", "topk_ids", "topk_probs"):
        torch.testing.assert_close(getattr(fast, name), getattr(ref, name), rtol=0, atol=0)
    torch.testing.assert_close(fast.visual.ego3d, ref.visual.ego3d, rtol=0, atol=0)
    torch.testing.assert_close(fast.visual.depth, ref.visual.depth, rtol=0, atol=0)


def test_siglip_started_early_gives_the_same_query(model) -> None:
    """`see` (SigLIP alone, on a GPU on a side stream while the traces are computed) hands the
    query exactly what it would compute itself."""
    proc = processor_for(model)
    inp = proc(_rgb(1), "open the drawer", depth=np.full((224, 224), 0.8, np.float32))
    gen = FastGenerator(model, 12, proc.action_tokenizer.ranges())
    seen = gen.see(inp.pixel_values)
    assert seen.shape == (1, 256, model.config.vision_config.hidden_size) and not seen.requires_grad
    args = (inp.input_ids, inp.pixel_values, inp.intrinsics, inp.depth)
    early, plain = gen(*args, siglip=seen), gen(*args)
    torch.testing.assert_close(early.token_ids, plain.token_ids, rtol=0, atol=0)
    torch.testing.assert_close(early.probs, plain.probs, rtol=0, atol=0)


def test_the_captured_query_never_syncs_with_the_host() -> None:
    """A CUDA graph cannot hold a host sync (.item(), a data-dependent shape or branch). On the
    meta device every such read raises, so running the whole query there proves it has none."""
    meta = SpatialVLAForConditionalGeneration.build(tiny_config(), "meta")
    proc = processor_for(meta)
    inp = proc(_rgb(0), "pick", depth=np.ones((224, 224), np.float32)).to("meta")
    gen = FastGenerator(meta, 12, proc.action_tokenizer.ranges())
    valid = torch.ones(1, inp.input_ids.shape[1] + 12, dtype=torch.bool, device="meta")
    with HostTransferGuard():  # nor copies host data to the device
        (siglip,) = gen._siglip(inp.pixel_values)
        ids, *_ = gen._run(inp.input_ids, valid, inp.pixel_values, inp.intrinsics, siglip, inp.depth)
    assert ids.shape == (1, 12) and ids.device.type == "meta"
    # ZoeDepth picks its metric head with .item(): this is why the fast path runs it outside
    with pytest.raises(RuntimeError, match="item"):
        gen._run(inp.input_ids, valid, inp.pixel_values, inp.intrinsics, siglip)


def test_fast_policy_steps_like_the_reference_policy() -> None:
    ep = translating_episode(t=6, h=64, w=80)
    trace = TraceConfig(buffer=4, depth="episode")
    ref, fast = Policy.tiny(PolicyConfig(trace=trace)), Policy.tiny(PolicyConfig(trace=trace, fast=True))
    for pol in (ref, fast):
        pol.reset(ep.instruction)
    for t in range(ep.num_frames):
        a, b = ref.step(ep.frames[t], ep.depth[t]), fast.step(ep.frames[t], ep.depth[t])
        np.testing.assert_array_equal(fast.last.token_ids, ref.last.token_ids)
        np.testing.assert_array_equal(b, a)
        np.testing.assert_array_equal(fast.last.ego3d_norm, ref.last.ego3d_norm)
    assert set(fast.timings) == {"trace", "model", "total"} and fast.timings["total"] > 0


def test_fast_policy_computes_zoedepth_once_per_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    ref, fast = Policy.tiny(PolicyConfig(depth="model")), Policy.tiny(PolicyConfig(depth="model", fast=True))
    calls = []
    estimate = fast.model.estimate_depth
    monkeypatch.setattr(fast.model, "estimate_depth", lambda x: calls.append(1) or estimate(x))
    ep = translating_episode(t=2, h=64, w=80)
    for t in (0, 1, 0, 1):
        p, q = ref.predict(ep, t, depth="model"), fast.predict(ep, t, depth="model")
        np.testing.assert_array_equal(q.token_ids, p.token_ids)
        np.testing.assert_array_equal(q.depth, p.depth)
    assert len(calls) == 2


def test_stack_left_pads_prompts_under_a_mask() -> None:
    a = ModelInputs(torch.tensor([[7, 8, 9]]), torch.zeros(1, 3, 4, 4), torch.eye(3)[None], None)
    b = ModelInputs(torch.tensor([[5]]), torch.ones(1, 3, 4, 4), torch.eye(3)[None], None)
    s = ModelInputs.stack([a, b], pad_token_id=0)
    assert s.input_ids.tolist() == [[7, 8, 9], [0, 0, 5]]
    assert s.attention_mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert s.pixel_values.shape == (2, 3, 4, 4) and s.depth is None
    with pytest.raises(ValueError, match="depth given for 1 of 2 observations; give it for all or none"):
        ModelInputs.stack(
            [a, ModelInputs(b.input_ids, b.pixel_values, b.intrinsics, torch.ones(1, 1, 4, 4))], 0
        )


@pytest.mark.parametrize("fast", [False, True], ids=["reference", "fast"])
def test_batched_policy_equals_one_policy_per_environment(fast: bool) -> None:
    """Unequal prompts (left padding) and different frames in one batch give each environment the
    tokens it gets alone."""
    trace = TraceConfig(buffer=4, depth="episode")
    config = PolicyConfig(trace=trace, fast=fast)
    eps = [
        translating_episode(t=4, h=64, w=80, dx=1.0),
        translating_episode(t=4, h=64, w=80, dx=-2.0, dy=1.0),
    ]
    texts = ["pick up the red block and put it in the bowl", "push"]
    batched = BatchedPolicy(tiny_model(0), processor_for(tiny_model(0)), 2, config)
    batched.reset(texts)
    singles = [Policy.tiny(config) for _ in texts]
    for pol, text in zip(singles, texts, strict=True):
        pol.reset(text)
    for t in range(4):
        actions = batched.step([e.frames[t] for e in eps], [e.depth[t] for e in eps])
        assert actions.shape == (2, 7)
        for i, (pol, ep) in enumerate(zip(singles, eps, strict=True)):
            np.testing.assert_array_equal(pol.step(ep.frames[t], ep.depth[t]), actions[i])
            np.testing.assert_array_equal(batched.policies[i].last.token_ids, pol.last.token_ids)
            np.testing.assert_allclose(batched.policies[i].last.token_probs, pol.last.token_probs, atol=1e-5)


def test_batched_policy_tracks_all_environments_in_one_call() -> None:
    """With CoTracker3, the B environments share one network and each step tracks their windows
    in one call (their new frames in one encoder call), each with its own feature cache; every
    environment's tracks equal those of a policy of its own (float32 on the CPU)."""
    options = dict(pretrained=False, model_resolution=(64, 96), iters=1, grid=3, support_grid=0)
    config = PolicyConfig(
        trace=TraceConfig(buffer=4, depth="episode", tracker="cotracker3", tracker_options=options)
    )
    eps = [
        translating_episode(t=5, h=48, w=64, dx=dx, dy=dy)
        for dx, dy in ((1.0, 0.0), (-2.0, 1.0), (0.5, -1.5))
    ]
    texts = ["pick", "place the cup", "push"]
    batched = BatchedPolicy(tiny_model(0), processor_for(tiny_model(0)), 3, config)
    predictors = {id(p.pipeline.tracker.predictor) for p in batched.policies}
    assert len(predictors) == 1 and len({id(p.pipeline.tracker) for p in batched.policies}) == 3
    net = batched.policies[0].pipeline.tracker.predictor.model
    calls = []
    track = net.track
    net.track = lambda fmaps, *a: calls.append(fmaps.shape[0]) or track(fmaps, *a)
    batched.reset(texts)
    singles = [Policy.tiny(config) for _ in texts]
    for pol, text in zip(singles, texts, strict=True):
        pol.reset(text)
    for t in range(5):
        batched.step([e.frames[t] for e in eps], [e.depth[t] for e in eps])
        for i, (pol, ep) in enumerate(zip(singles, eps, strict=True)):
            pol.step(ep.frames[t], ep.depth[t])
            got, want = batched.policies[i].last.traced.tracks, pol.last.traced.tracks
            np.testing.assert_allclose(got.points, want.points, atol=1e-4)
            np.testing.assert_array_equal(got.visible, want.visible)
    assert calls == [3] * 4  # one call a step from the second frame on, all 3 windows in it
    assert [p.pipeline.tracker.encoded for p in batched.policies] == [5, 5, 5]


def test_batched_policy_bad_use() -> None:
    with pytest.raises(ValueError, match="batch: expected >= 1 environments, found 0"):
        BatchedPolicy(tiny_model(0), processor_for(tiny_model(0)), 0)
    bp = BatchedPolicy(tiny_model(0), processor_for(tiny_model(0)), 2, PolicyConfig(depth="model"))
    with pytest.raises(RuntimeError, match=r"reset\(instructions\) before step"):
        bp.step([_rgb(0), _rgb(1)])
    with pytest.raises(ValueError, match="instructions: expected 2, found 1"):
        bp.reset(["pick"])
    bp.reset(["pick", "place"])
    with pytest.raises(ValueError, match="frames: expected 2, found 1"):
        bp.step([_rgb(0)])
