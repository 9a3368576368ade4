"""Full training of ST-VLA-S: grid fitting, the LeRobot writer + training pack round trip, the
training loop on the CPU (loss falls on a fixed batch), checkpoint resume, pooled Ego3D depth,
sharded weights."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from stvla_core.data.generate import GenerateConfig, generate
from stvla_core.data.lerobot_writer import LeRobotWriter
from stvla_core.episodes import load_episode
from stvla_core.model.action_tokenizer import ActionStatistics
from stvla_core.model.configuration_spatialvla import stvla_s_config
from stvla_core.model.ego3d import backproject_patches, pool_depth
from stvla_core.model.modeling_spatialvla import SpatialVLAForConditionalGeneration
from stvla_core.train.config import TrainConfig
from stvla_core.train.grid import action_statistics, fit_grid, gaussian_params
from stvla_core.train.pack import (
    FRAMES,
    PackConfig,
    decode_frames,
    load_pack,
    merge_packs,
    parse_mode,
    prepare_pack,
)
from stvla_core.train.trainer import (
    agree_on_steps,
    chunk_indices,
    complete_checkpoints,
    lr_at,
    shift_images,
    train,
)
from tests.conftest import translating_episode

TASKS = ("slide the texture right", "slide the texture down")


def _episodes() -> list:
    out = []
    for i in range(4):
        right = i % 2 == 0
        ep = translating_episode(
            t=8 + i, h=224, w=224, dx=2.0 if right else 0.0, dy=0.0 if right else 2.0, name=f"e{i}"
        )
        ep.instruction = TASKS[i % 2]
        a = np.zeros((ep.num_frames, 7), np.float32)
        a[:, 0 if right else 1] = 0.01 + 0.001 * np.arange(ep.num_frames)
        a[:, 5] = 0.05 * (i - 1.5)
        a[:, 6] = np.arange(ep.num_frames) < 5
        ep.actions = a
        ep.intrinsics = np.array([[200.0, 0, 111.5], [0, 200.0, 111.5], [0, 0, 1]], np.float32)
        ep.metadata = {"seed": i, "env_id": "Synthetic"}
        out.append(ep)
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ds") / "synthetic"
    writer = LeRobotWriter(root, "cam", fps=10, size=224, crf=10)
    eps = _episodes()
    for shard, pair in enumerate((eps[:2], eps[2:])):
        writer.write_shard(shard, [(ep, np.zeros((ep.num_frames, 3), np.float32)) for ep in pair])
    writer.finish([0, 1], ["a", "b", "c"], {"stvla": {"note": "test"}})
    return root


@pytest.fixture(scope="module")
def pack(dataset: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pack") / "pack"
    return prepare_pack(
        PackConfig(str(dataset), str(out), modes=["none", "raw", "C", "C@4"], val_fraction=0.5, workers=1)
    )


# -- grid fitting ------------------------------------------------------------------------------
def test_statistics_quantiles_and_constant_dimensions() -> None:
    a = np.zeros((101, 7))
    a[:, 0] = np.linspace(-1, 1, 101)  # q01 = -0.98, q99 = 0.98
    a[:, 6] = np.arange(101) % 2
    s = action_statistics(a)["action"]
    assert s["q01"][0] == pytest.approx(-0.98) and s["q99"][0] == pytest.approx(0.98)
    # dimensions that never vary are left as they are (roll/pitch of a yaw-only expert), the
    # gripper is never normalised
    assert s["mask"] == [True, False, False, False, False, False, False]
    stats = ActionStatistics.from_dict(s)
    assert stats.normalize(np.array([0.98, 0, 0, 0, 0, 0, 1.0])).tolist() == pytest.approx(
        [1, 0, 0, 0, 0, 0, 1]
    )


def test_gaussian_params_hand_computed() -> None:
    n = np.zeros((4, 7))
    n[:, 2] = [1.0, 1.0, 0.5, 0.5]  # straight up: theta 0, phi 0, r = z
    n[:, 5] = [-0.2, 0.2, -0.2, 0.2]
    gs = gaussian_params(n, min_sigma=0.05)
    assert gs["theta"] == {"mu": 0.0, "sigma": 0.05}
    assert gs["r"]["mu"] == pytest.approx(0.75) and gs["r"]["sigma"] == pytest.approx(0.25)
    assert gs["yaw"]["mu"] == pytest.approx(0.0) and gs["yaw"]["sigma"] == pytest.approx(0.2)
    assert gs["roll"]["sigma"] == 0.05  # constant: the floor


def test_fitted_grid_round_trips_dataset_actions() -> None:
    rng = np.random.default_rng(0)
    a = np.zeros((2000, 7))
    a[:, :3] = rng.normal(0, 0.01, (2000, 3))
    a[:, 5] = rng.normal(0, 0.05, 2000)
    a[:, 6] = rng.random(2000) > 0.5
    stats, _, grid = fit_grid(a)
    from stvla_core.model.action_tokenizer import SpatialActionTokenizer

    tok = SpatialActionTokenizer(grid, 1000)
    st = ActionStatistics.from_dict(stats)
    back = st.unnormalize(tok.decode(tok.encode(st.normalize(a))))
    inside = (np.abs(a[:, :3]) < 0.02).all(1)
    # adaptive bins: the typical action comes back within a fraction of its size
    assert np.median(np.abs(back - a)[inside][:, :3]) < 0.002
    assert (back[:, 6] == a[:, 6]).all()
    assert grid.vocab_size == 8194


# -- dataset + pack ---------------------------------------------------------------------------
def test_lerobot_dataset_reads_back_every_episode(dataset: Path) -> None:
    info = json.loads((dataset / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["total_episodes"] == 4
    assert info["features"]["observation.depth.cam"]["info"]["depth"] is True
    for i, ep in enumerate(_episodes()):
        got = load_episode(dataset, episode_index=i)
        assert got.num_frames == ep.num_frames and got.instruction == ep.instruction
        # depth is lossless to the millimetre, actions exact, RGB close (H.264 at crf 10)
        assert np.abs(got.depth - ep.depth).max() <= 0.0005 + 1e-6
        assert np.array_equal(got.actions, ep.actions)
        assert np.abs(got.frames.astype(int) - ep.frames).mean() < 3
        assert np.allclose(got.intrinsics, ep.intrinsics)


def test_pack_holds_pooled_traced_depth(pack: Path, dataset: Path) -> None:
    p = load_pack(pack, ["none", "raw", "C"], workers=1)
    eps = _episodes()
    assert len(p.actions) == sum(e.num_frames for e in eps) and p.depth["C"].shape[1:] == (32, 32)
    assert not p.depth["none"].any()
    # raw: the 7x7 means of the episode's depth ramp, to the pack's 0.1 mm
    ep = load_episode(dataset, episode_index=1)
    want = pool_depth(torch.from_numpy(ep.depth[3])[None, None], 224, 14, 2)[0, 0].numpy()
    row = np.flatnonzero((p.episode == 1) & (p.frame == 3))[0]
    assert np.abs(p.depth["raw"][row] - want).max() <= 5e-5 + 1e-6
    assert np.abs(p.depth["C"] - p.depth["raw"]).max() > 0  # traces changed some sub-patches
    # held out: the last half of each task's episodes (tasks alternate 0, 1, 0, 1)
    assert [e["split"] for e in p.meta["episodes"]] == ["train", "train", "val", "val"]
    assert set(p.split("val")) == set(np.flatnonzero(np.isin(p.episode, [2, 3])))


def test_pack_modes_over_other_buffers_and_one_file_each(pack: Path) -> None:
    assert parse_mode("C") == ("C", None) and parse_mode("A@7") == ("A", 7)
    for bad in ("D", "raw@7", "C@1", "C@x"):
        with pytest.raises(ValueError, match="depth mode"):
            parse_mode(bad)
    p = load_pack(pack, ["C", "C@4"], workers=1)
    # a 4-frame window draws shorter traces than the whole (8-11 frame) episode from the 5th frame on
    late = p.frame >= 5
    assert np.abs(p.depth["C"][late] - p.depth["C@4"][late]).max() > 0
    early = p.frame < 3  # windows of the first 3 frames are the same for both buffers
    assert np.array_equal(p.depth["C"][early], p.depth["C@4"][early])
    with pytest.raises(ValueError, match=r"no depth for \['A'\] \(no depth_A.npz\)"):
        load_pack(pack, ["A"], workers=1)


def test_decoded_frames_are_shared_from_the_pack(pack: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "pack"
    shutil.copytree(pack, copy)
    before = load_pack(copy, ["none"], workers=1).frames
    assert decode_frames(copy, workers=1) == copy / FRAMES
    shutil.rmtree(copy / "videos")  # from now on only frames.npy can provide them
    after = load_pack(copy, ["none"], workers=1)
    assert np.array_equal(np.asarray(after.frames), before)


def test_merged_packs_hold_both_in_order_with_their_splits(pack: Path, tmp_path: Path) -> None:
    import json
    import shutil

    other = tmp_path / "other"
    shutil.copytree(pack, other)
    (other / "depth_raw.npz").unlink()  # the second pack lacks one mode: the merge keeps the shared ones
    a = load_pack(pack, ["none", "C"], workers=1)
    merged = merge_packs([pack, other], tmp_path / "merged")
    m = load_pack(merged, workers=1)
    n, e = len(a.actions), len(a.meta["episodes"])
    assert sorted(m.depth) == ["C", "C@4", "none"] and len(m.actions) == 2 * n
    assert np.array_equal(m.actions, np.concatenate([a.actions, a.actions]))
    assert np.array_equal(m.episode, np.concatenate([a.episode, a.episode + e]))
    assert np.array_equal(m.depth["C"], np.concatenate([a.depth["C"], a.depth["C"]]))
    assert np.array_equal(np.asarray(m.frames), np.concatenate([a.frames, a.frames]))
    assert [x["split"] for x in m.meta["episodes"]] == 2 * [x["split"] for x in a.meta["episodes"]]
    assert m.meta["episodes"][e]["video"].startswith("part1/")
    assert len(m.split("val")) == 2 * len(a.split("val"))
    with pytest.raises(ValueError, match=r"missing \{.*other.*\['raw'\]\}"):
        merge_packs([pack, other], tmp_path / "m2", modes=["raw"])
    with pytest.raises(FileExistsError, match="exists"):
        merge_packs([pack, other], merged)
    meta = json.loads((other / "meta.json").read_text())
    meta["grid"] = 8
    (other / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="packs differ in grid"):
        merge_packs([pack, other], tmp_path / "m3")
    assert not (tmp_path / "m2").exists() and not (tmp_path / "m3").exists()


def test_shift_images_moves_pixels_and_depth_cells_together() -> None:
    s, g = 28, 4  # 7 pixels per depth cell
    pixels = torch.arange(s * s, dtype=torch.float32).reshape(1, 1, s, s).repeat(2, 3, 1, 1)
    depth = torch.arange(g * g, dtype=torch.float32).reshape(1, 1, g, g).repeat(2, 1, 1, 1)
    gen = torch.Generator().manual_seed(0)
    want = torch.randint(-8, 9, (2, 2), generator=torch.Generator().manual_seed(0))  # rows: dy, dx
    out, d = shift_images(pixels, depth, 8, gen)
    for b in range(2):
        dy, dx = int(want[0, b]), int(want[1, b])
        rows = np.clip(np.arange(s) - dy, 0, s - 1)
        cols = np.clip(np.arange(s) - dx, 0, s - 1)
        np.testing.assert_array_equal(out[b, 0].numpy(), pixels[b, 0].numpy()[rows][:, cols])
        cy, cx = round(dy * g / s), round(dx * g / s)
        rows = np.clip(np.arange(g) - cy, 0, g - 1)
        cols = np.clip(np.arange(g) - cx, 0, g - 1)
        np.testing.assert_array_equal(d[b, 0].numpy(), depth[b, 0].numpy()[rows][:, cols])
    assert torch.equal(out[:, 0], out[:, 2])  # every channel moved alike


def test_budget_group_trains_the_smallest_step_count(tmp_path: Path) -> None:
    group = tmp_path / "group"
    group.mkdir()
    (group / "other.steps").write_text("1500\n")
    config = TrainConfig(
        run_dir=str(tmp_path / "row"), time_budget_s=60, budget_group=str(group), budget_group_size=2
    )
    assert agree_on_steps(config, 2000, lambda m: None) == 1500
    assert (group / "row.steps").read_text() == "2000\n"
    lonely = TrainConfig(
        run_dir=str(tmp_path / "x"), time_budget_s=60, budget_group=str(tmp_path / "g2"), budget_group_size=2
    )
    with pytest.raises(TimeoutError, match="1 of 2 runs"):
        agree_on_steps(lonely, 10, lambda m: None, timeout_s=0.5)
    with pytest.raises(ValueError, match="budget_group needs"):
        TrainConfig(budget_group="g", budget_group_size=2).validate()


def test_chunk_indices_repeat_each_episode_end() -> None:
    ep = np.array([0, 0, 0, 1, 1])
    assert chunk_indices(ep, 3).tolist() == [[0, 1, 2], [1, 2, 2], [2, 2, 2], [3, 4, 4], [4, 4, 4]]


def test_pooled_depth_gives_the_same_ego3d_points() -> None:
    rng = np.random.default_rng(1)
    d = torch.from_numpy(rng.uniform(0.3, 2, (2, 1, 224, 224)).astype(np.float32))
    k = torch.tensor([[200.0, 0, 111.5], [0, 210.0, 110.0], [0, 0, 1]]).expand(2, 3, 3)
    full = backproject_patches(d, k, 14, 2)
    pooled = backproject_patches(pool_depth(d, 224, 14, 2), k, 14, 2, image_size=224)
    assert torch.allclose(full, pooled)
    with pytest.raises(ValueError, match="pooled to 32x32"):
        backproject_patches(d[..., :30, :30], k, 14, 2, image_size=224)


def test_sharded_weights_round_trip(tmp_path: Path) -> None:
    model = SpatialVLAForConditionalGeneration.build(stvla_s_config(32, 2, 2), seed=3)
    model.save_pretrained(tmp_path, torch.bfloat16, max_shard_bytes=600_000)
    shards = sorted(tmp_path.glob("model-*-of-*.safetensors"))
    assert len(shards) > 2 and all(f.stat().st_size < 620_000 for f in shards)  # + header
    back = SpatialVLAForConditionalGeneration.from_pretrained(tmp_path, "cpu", torch.float32)
    for (k, a), (_, b) in zip(model.state_dict().items(), back.state_dict().items(), strict=True):
        assert torch.equal(a.to(torch.bfloat16).float(), b), k


# -- training ---------------------------------------------------------------------------------
def _config(pack: Path, run: Path, **kw) -> TrainConfig:
    base = dict(
        pack=str(pack),
        run_dir=str(run),
        hidden=32,
        layers=2,
        heads=2,
        steps=12,
        batch_size=8,
        learning_rate=2e-3,
        warmup_steps=2,
        log_every=2,
        eval_every=6,
        checkpoint_every=6,
        val_samples=16,
        decode_workers=1,
    )
    base.update(kw)
    return TrainConfig(**base)


def test_lr_schedule_warms_up_then_decays() -> None:
    c = TrainConfig(steps=110, warmup_steps=10, learning_rate=1.0, min_lr_ratio=0.1)
    assert lr_at(c, 0) == pytest.approx(0.1) and lr_at(c, 9) == pytest.approx(1.0)
    assert lr_at(c, 60) == pytest.approx(0.55) and lr_at(c, 110) == pytest.approx(0.1)


@pytest.mark.slow
def test_training_learns_and_resumes(pack: Path, tmp_path: Path) -> None:
    # 18 training frames: the loss must fall far below chance (log 8454 = 9.04)
    summary = train(
        _config(pack, tmp_path / "a", steps=24, learning_rate=5e-3, checkpoint_every=24),
        progress=lambda m: None,
    )
    assert summary["first_loss"] > 8.0 and summary["first_loss"] - summary["last_loss"] > 2.0
    assert summary["final_eval"]["val_action_l1"] >= 0 and "baseline_mean_action_l1" in summary["final_eval"]
    model_dir = tmp_path / "a" / "model"
    assert (model_dir / "processor_config.json").is_file() and (model_dir / "config.json").is_file()
    from stvla_core.policy import Policy

    policy = Policy.from_pretrained(model_dir)
    assert policy.processor.action_tokenizer.grid.vocab_size == 8194
    policy.reset(TASKS[0], np.array([[200.0, 0, 111.5], [0, 200.0, 111.5], [0, 0, 1]], np.float32))
    ep = _episodes()[0]
    action = policy.step(ep.frames[0], ep.depth[0])
    assert action.shape == (7,) and np.isfinite(action).all()

    # a run killed after its step-6 checkpoint resumes to the same losses and weights as the
    # run that went straight through
    import shutil

    train(_config(pack, tmp_path / "c", augment_shift=8), progress=lambda m: None)
    shutil.copytree(tmp_path / "c", tmp_path / "b")
    shutil.rmtree(tmp_path / "b" / "checkpoints" / "step_000012")
    (tmp_path / "b" / "summary.json").unlink()
    assert [c.name for c in complete_checkpoints(tmp_path / "b")] == ["step_000006"]
    resumed = train(_config(pack, tmp_path / "b", augment_shift=8), progress=lambda m: None)
    assert resumed["resumed_from"] == 6

    def losses(run: str) -> list[tuple[int, float]]:
        rows = [json.loads(r) for r in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        return [(r["step"], round(r["loss"], 4)) for r in rows if "loss" in r]

    assert [s for s, _ in losses("b")] == [2, 4, 6, 8, 10, 12]  # the later rows were written again
    assert losses("b") == losses("c")
    a = SpatialVLAForConditionalGeneration.from_pretrained(
        tmp_path / "b" / "checkpoints" / "step_000012", "cpu"
    )
    b = SpatialVLAForConditionalGeneration.from_pretrained(
        tmp_path / "c" / "checkpoints" / "step_000012", "cpu"
    )
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.allclose(x, y, atol=1e-5), k
    with pytest.raises(ValueError, match="cannot resume"):
        train(
            replace(_config(pack, tmp_path / "b", augment_shift=8), learning_rate=1e-2),
            progress=lambda m: None,
        )


@pytest.mark.slow
def test_exported_models_record_their_depth_input(pack: Path, tmp_path: Path) -> None:
    from stvla_core.evaluation.policies import make_stvla
    from stvla_core.policy import Policy

    for mode, depth, buffer in (("none", "none", 30), ("C@4", "traced", 4)):
        train(_config(pack, tmp_path / mode, steps=2, depth_mode=mode), progress=lambda m: None)
        model = tmp_path / mode / "model"
        policy = Policy.from_pretrained(model)
        assert (policy.config.depth, policy.config.trace.buffer, policy.config.trace.variant) == (
            depth,
            buffer,
            "C",
        )
        assert make_stvla(checkpoint=str(model)).config.depth == depth
        ep = _episodes()[0]
        pred = policy.predict(ep, 6)
        assert pred.depth_source == ("none" if mode == "none" else "traced:C")
        assert (pred.depth == 0).all() == (mode == "none")


def test_a_run_can_start_from_an_earlier_models_weights(pack: Path, tmp_path: Path) -> None:
    """`init_from` starts from the given weights (one step at a vanishing learning rate leaves
    them as they were, unlike a fresh start), and a folder of another architecture is refused."""
    train(_config(pack, tmp_path / "first", steps=2), progress=lambda m: None)
    first = tmp_path / "first" / "model"
    # an earlier model of another camera and grid: its grid must be kept, its intrinsics replaced
    proc = json.loads((first / "processor_config.json").read_text())
    proc["bin_policy"]["translation"]["r_bins"] = [
        x * 1.01 for x in proc["bin_policy"]["translation"]["r_bins"]
    ]
    for entry in proc["intrinsic_config"].values():
        entry["intrinsic"] = [[v * 2 for v in row] for row in entry["intrinsic"]]
    (first / "processor_config.json").write_text(json.dumps(proc))
    summary = train(
        _config(pack, tmp_path / "warm", steps=1, learning_rate=1e-12, init_from=str(first)),
        progress=lambda m: None,
    )
    assert summary["initialised_from"] == str(first)
    cold = train(
        _config(pack, tmp_path / "cold", steps=1, learning_rate=1e-12, seed=5), progress=lambda m: None
    )
    assert cold["initialised_from"] == ""
    load = SpatialVLAForConditionalGeneration.from_pretrained
    a, w, c = (load(tmp_path / r / "model", "cpu").state_dict() for r in ("first", "warm", "cold"))
    key = "language_model.model.layers.0.self_attn.q_proj.weight"
    assert torch.allclose(a[key].float(), w[key].float()) and not torch.allclose(
        a[key].float(), c[key].float()
    )
    warm_proc, cold_proc = (
        json.loads((tmp_path / r / "model" / "processor_config.json").read_text()) for r in ("warm", "cold")
    )
    assert warm_proc["bin_policy"] == proc["bin_policy"] != cold_proc["bin_policy"]
    assert warm_proc["intrinsic_config"] == cold_proc["intrinsic_config"] != proc["intrinsic_config"]
    with pytest.raises(ValueError, match=r"architecture differs .*hidden_size: run 64, init 32"):
        train(_config(pack, tmp_path / "wide", hidden=64, init_from=str(first)), progress=lambda m: None)
    with pytest.raises(FileNotFoundError, match="holds no model"):
        train(_config(pack, tmp_path / "none", init_from=str(tmp_path / "nowhere")), progress=lambda m: None)


def test_holding_still_decodes_to_zero() -> None:
    # a quarter of the actions hold still and few turn, all one way (as the scripted expert):
    # the zero bins give the hold back within 1e-3 of the range, and positive turns survive
    rng = np.random.default_rng(2)
    a = np.zeros((4000, 7))
    a[1000:, :3] = rng.normal(0, 0.01, (3000, 3))
    a[:200, 5] = -0.15
    a[200:240, 5] = 0.1
    stats, _, grid = fit_grid(a)
    assert stats["action"]["q01"][5] == -stats["action"]["q99"][5] == pytest.approx(-0.15)
    from stvla_core.model.action_tokenizer import SpatialActionTokenizer

    tok, st = SpatialActionTokenizer(grid, 0), ActionStatistics.from_dict(stats)
    back = st.unnormalize(tok.decode(tok.encode(st.normalize(a))))
    assert np.abs(back[240:1000, :6]).max() < 1e-3 * 0.03
    assert back[200:240, 5].min() > 0.05
    assert grid.edges["r_bins"][:2].tolist() == [0.0, 1e-3]


# -- demonstration dataset (ManiSkill3) --------------------------------------------------------
def test_generate_rejects_seeds_outside_the_training_range(tmp_path: Path) -> None:
    from stvla_core.data.__main__ import main

    with pytest.raises(ValueError, match=r"seeds \[99000, 101500\) must stay in the training range"):
        GenerateConfig(str(tmp_path), seed_start=99000).validate()
    assert main(["generate", "--out", str(tmp_path / "d"), "--seed-start", "-5"]) == 2
    with pytest.raises(ValueError, match=r"perturbation probability: expected 0..1, found 1.5"):
        GenerateConfig(str(tmp_path), perturb_m=0.01, perturb_prob=1.5).validate()
    with pytest.raises(ValueError, match=r"perturbation scale: expected 0..0.05 m, found 0.2"):
        GenerateConfig(str(tmp_path), perturb_m=0.2, perturb_prob=0.5).validate()


@pytest.mark.slow
@pytest.mark.sim
def test_perturbed_demonstrations_record_the_experts_corrections(vulkan: None) -> None:
    from stvla_core.sim.expert import MAX_STEP_M, Perturbation, Recorder

    with Recorder("push", max_frames=25) as rec:
        clean = rec.record(7)
    with Recorder("push", max_frames=25, perturbation=Perturbation(0.01, 0.5)) as rec:
        noisy, again = rec.record(7), rec.record(7)
    assert clean.metadata["perturbation"] == {"scale_m": 0.0, "prob": 0.0}
    assert noisy.metadata["perturbation"] == {"scale_m": 0.01, "prob": 0.5}
    assert np.array_equal(noisy.actions, again.actions)  # the seed fixes the noise too
    n = min(len(clean.actions), len(noisy.actions))
    assert not np.allclose(noisy.actions[:n], clean.actions[:n])
    # recorded commands stay the expert's: bounded steps, even when correcting
    assert np.linalg.norm(noisy.actions[:, :3], axis=1).max() <= MAX_STEP_M + 1e-6
    # the TCP went where the recorded commands alone would not take it (noise was executed)
    tcp = np.asarray(noisy.metadata["gt_points_world"])[:, 1]
    drift = tcp[-1] - tcp[0] - noisy.actions[:-1, :3].sum(0)
    clean_tcp = np.asarray(clean.metadata["gt_points_world"])[:, 1]
    clean_drift = clean_tcp[-1] - clean_tcp[0] - clean.actions[:-1, :3].sum(0)
    assert np.linalg.norm(drift) > np.linalg.norm(clean_drift) + 0.005


@pytest.mark.slow
@pytest.mark.sim
def test_generate_writes_a_dataset_of_successful_demonstrations(tmp_path: Path, vulkan: None) -> None:
    out = tmp_path / "demos"
    config = GenerateConfig(
        str(out), tasks=["PushCube-v1"], episodes_per_task=2, shard_size=2, workers=1, seed_start=5000
    )
    summary = generate(config, progress=lambda m: None)
    expert = summary["expert"]["PushCube-v1"]
    assert expert["successes"] >= 2 and expert["seeds"][0] == 5000
    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["total_episodes"] == expert["successes"]
    ep = load_episode(out, episode_index=1)
    assert ep.depth is not None and ep.depth.shape == ep.frames.shape[:3] and ep.actions.shape[1] == 7
    import pandas as pd

    rows = pd.concat(pd.read_parquet(f) for f in sorted((out / "meta" / "episodes").rglob("*.parquet")))
    assert all(5000 <= s < 5000 + expert["attempts"] for s in rows["seed"])
    assert ep.instruction == summary["setup"]["PushCube-v1"]["instruction"]


@pytest.mark.slow
def test_rows_train_at_equal_steps_and_travel_in_bounded_parts(pack: Path, tmp_path: Path) -> None:
    from stvla_core.train import rows

    recipe = _config(pack, tmp_path / "unused", steps=2, eval_every=2, checkpoint_every=2)
    summaries = rows.train_rows(recipe, ["none", "C@4"], tmp_path / "runs", progress=lambda m: None)
    assert [(s["mode"], s["steps"]) for s in summaries] == [("none", 2), ("C@4", 2)]
    assert (tmp_path / "runs" / "C-b4" / "model" / "config.json").is_file()
    assert "| C@4 | 2 |" in rows.table(summaries)
    runs = [rows.row_dir(tmp_path / "runs", m) for m in ("none", "C@4")]
    parts = rows.bundle(runs, tmp_path / "out", part_bytes=400_000)
    assert len(parts) > 1 and all(p.stat().st_size <= 400_000 for p in parts)
    assert rows.unbundle(parts, tmp_path / "back") == ["C-b4", "none"]
    for run in runs:
        for f in (run / "model").iterdir():
            assert (tmp_path / "back" / run.name / "model" / f.name).read_bytes() == f.read_bytes()
    assert not (tmp_path / "back" / "none" / "checkpoints").exists()  # optimizer states stay behind
    card = rows.record(runs[1], tmp_path / "rec" / "C-b4")
    assert json.loads((card / "depth_input.json").read_text()) == {"depth": "traced"}
    assert json.loads((card / "trace_config.json").read_text())["buffer"] == 4
    assert "# Ablation row `C@4`" in (card / "README.md").read_text()
    assert not list(card.glob("*.safetensors"))
    with pytest.raises(FileNotFoundError, match="not a finished training run: no config.json"):
        rows.record(tmp_path / "x", tmp_path / "rec2")
    with pytest.raises(ValueError, match="each depth mode once"):
        rows.train_rows(recipe, ["C", "C"], tmp_path / "x")
