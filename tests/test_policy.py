"""The ST-VLA policy: closed loop over an episode with traced depth, chunk ensembling, predict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import translating_episode

from stvla_core.episodes import Episode
from stvla_core.policy import ActionEnsembler, Policy, PolicyConfig
from stvla_core.traces import TraceConfig, TracePipeline

EPISODES = Path(__file__).resolve().parents[1] / "assets" / "episodes"


def bundled_or_synthetic() -> Episode:
    """The first bundled sample episode (cut to 12 frames) if there is one, else a synthetic one."""
    samples = sorted(EPISODES.glob("*.npz"))
    if samples:
        from stvla_core.episodes import load_episode

        ep = load_episode(samples[0])
        n = min(12, ep.num_frames)
        fields = {"frames": ep.frames[:n]}
        for name in ("depth", "segmentation", "actions", "gt_points", "gt_visible"):
            if getattr(ep, name) is not None:
                fields[name] = getattr(ep, name)[:n]
        if ep.extrinsics is not None and ep.extrinsics.ndim == 3:
            fields["extrinsics"] = ep.extrinsics[:n]
        return ep.replace(**fields)
    return translating_episode(t=12, h=96, w=128)


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy.tiny(PolicyConfig(trace=TraceConfig(buffer=8, depth="episode")))


def test_closed_loop_over_an_episode_with_traced_depth(policy: Policy) -> None:
    ep = bundled_or_synthetic()
    assert ep.depth is not None
    policy.reset(ep.instruction or "do the task", ep.intrinsics)
    reference = TracePipeline(policy.config.trace)
    reference.reset()
    actions = []
    for t in range(ep.num_frames):
        a = policy.step(ep.frames[t], ep.depth[t])
        assert a.shape == (7,) and a.dtype == np.float32 and np.isfinite(a).all()
        assert 0.0 <= a[6] <= 1.0
        last = policy.last
        assert last.index == t and last.depth_source == "traced:C"
        # the model saw this step's traced depth from the trace pipeline, resized to 224
        expected = reference.push(ep.frames[t], ep.depth[t]).traced_depth
        np.testing.assert_array_equal(last.traced.traced_depth, expected)
        assert last.depth.shape == (224, 224)
        assert {float(v) for v in np.unique(last.depth)} <= {float(v) for v in np.unique(expected)}
        actions.append(a)
    # the untrained model's output still depends on its input
    assert len({tuple(np.round(a, 6)) for a in actions}) > 1


def test_ensembling_matches_simplerenv(policy: Policy) -> None:
    ens = ActionEnsembler(horizon=4, temp=-0.8)
    chunks = [np.full((4, 7), float(i)) + np.arange(4)[:, None] * 10 for i in range(5)]
    out = [ens(c) for c in chunks]
    np.testing.assert_allclose(out[0], chunks[0][0])
    # step 1: the chunk of step 0 at position 1 (value 10), the chunk of step 1 at position 0 (value 1)
    w = np.exp(0.8 * np.arange(2))
    np.testing.assert_allclose(out[1], np.full(7, (w[0] * 10 + w[1] * 1) / w.sum()))
    # step 4: chunks 1..4 (history of 4), positions 3, 2, 1, 0
    w = np.exp(0.8 * np.arange(4))
    np.testing.assert_allclose(out[4], np.full(7, (w @ np.array([31.0, 22.0, 13.0, 4.0])) / w.sum()))


def test_step_ensembles_the_chunks(policy: Policy) -> None:
    ep = translating_episode(t=3, h=64, w=80)
    policy.reset(ep.instruction)
    first = policy.step(ep.frames[0], ep.depth[0])
    np.testing.assert_allclose(first, policy.last.chunk[0], rtol=1e-6)
    chunk0 = policy.last.chunk
    second = policy.step(ep.frames[1], ep.depth[1])
    w = np.exp(0.8 * np.arange(2))
    np.testing.assert_allclose(second, (w[0] * chunk0[1] + w[1] * policy.last.chunk[0]) / w.sum(), rtol=1e-5)


def test_predict_returns_what_the_inspector_needs(policy: Policy) -> None:
    ep = translating_episode(t=10, h=64, w=80)
    p = policy.predict(ep, 6)
    k = policy.processor.action_chunk_size
    assert p.chunk.shape == (k, 7) and p.normalized.shape == (k, 7)
    assert p.token_ids.shape == (3 * k,) and p.token_probs.shape == (3 * k,)
    assert np.all((p.token_probs > 0) & (p.token_probs <= 1))
    assert p.topk_ids.shape == (3 * k, 5)
    ranges = policy.processor.action_tokenizer.ranges()
    for i, tok in enumerate(p.token_ids):
        lo, hi = ranges[i % 3]
        assert lo <= tok < hi
    assert [t.kind for t in p.tokens[0]] == ["translation", "rotation", "gripper"]
    np.testing.assert_array_equal(p.action, p.chunk[0])
    assert p.depth_source == "traced:C" and p.traced is not None and p.traced.index == 6
    assert p.ego3d_norm.shape == (16, 16) and np.all(p.ego3d_norm > 0)
    # other depth inputs for comparison: a variant, the untraced depth, the model's own ZoeDepth
    assert policy.predict(ep, 6, depth="A").depth_source == "traced:A"
    raw = policy.predict(ep, 6, depth="raw")
    np.testing.assert_allclose(
        raw.depth[0], np.interp(np.arange(224), np.linspace(0, 223, 80), ep.depth[6, 0]), atol=0.1
    )
    own = policy.predict(ep, 6, depth="model")
    assert own.depth_source == "model" and own.traced is None and own.depth.shape == (224, 224)
    # stateless: asking again gives the same answer
    np.testing.assert_array_equal(policy.predict(ep, 6).token_ids, p.token_ids)


def test_plain_spatialvla_mode_needs_no_depth() -> None:
    pol = Policy.tiny(PolicyConfig(depth="model"))
    assert pol.pipeline is None
    ep = translating_episode(t=2, h=64, w=80)
    pol.reset("pick")
    a = pol.step(ep.frames[0])
    assert a.shape == (7,) and pol.last.depth_source == "model"


def test_bad_use_is_a_clear_error(policy: Policy) -> None:
    fresh = Policy.tiny(PolicyConfig(trace=TraceConfig(buffer=4)))
    with pytest.raises(RuntimeError, match=r"reset\(instruction\) before step"):
        fresh.step(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="instruction: expected a non-empty string"):
        fresh.reset("  ")
    fresh.reset("pick")
    with pytest.raises(
        ValueError, match=r"rgb: expected \(H, W, 3\) uint8 RGB, found shape \(64, 64, 3\) dtype float64"
    ):
        fresh.step(np.zeros((64, 64, 3)))
    with pytest.raises(ValueError, match=r"depth has shape \(32, 32\), frame is \(64, 64\)"):
        fresh.step(np.zeros((64, 64, 3), np.uint8), np.ones((32, 32), np.float32))
    with pytest.raises(ValueError, match="depth mode 'D' unknown"):
        PolicyConfig(depth="D").validate()
    with pytest.raises(ValueError, match="depth mode 'x' unknown"):
        policy.predict(translating_episode(t=2, h=64, w=80), 1, depth="x")


def test_from_pretrained_folder_acts_like_the_original(tmp_path: Path) -> None:
    original = Policy.tiny(PolicyConfig(trace=TraceConfig(buffer=4)))
    original.model.save_pretrained(tmp_path)
    original.processor.save_pretrained(tmp_path)
    loaded = Policy.from_pretrained(tmp_path, PolicyConfig(trace=TraceConfig(buffer=4)), device="cpu")
    ep = translating_episode(t=3, h=64, w=80)
    for pol in (original, loaded):
        pol.reset(ep.instruction)
    for t in range(3):
        np.testing.assert_array_equal(
            original.step(ep.frames[t], ep.depth[t]), loaded.step(ep.frames[t], ep.depth[t])
        )
