"""LoRA fine-tuning: samples, the prefix-LM batch, a tiny CPU run that lowers the loss, adapters that
reload exactly, atomic checkpoints and resume, clear errors for bad configs and inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import translating_episode

from stvla_core.episodes import save_episode
from stvla_core.finetune import FinetuneConfig, FinetuneConfigError, action_chunks, load_adapter, train
from stvla_core.finetune.__main__ import main as cli_main
from stvla_core.finetune.__main__ import parse
from stvla_core.finetune.job import run as run_job
from stvla_core.finetune.samples import Samples, build_samples
from stvla_core.finetune.trainer import RunInUseError, action_logits, complete_checkpoints, make_batch
from stvla_core.policy import Policy


@pytest.fixture(scope="module")
def episode_paths(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    d = tmp_path_factory.mktemp("episodes")
    paths = []
    for i, dx in enumerate((1.0, -1.0)):
        ep = translating_episode(t=8, dx=dx, name=f"ep{i}")
        ep.actions[:, 6] = i  # gripper closed in one, open in the other
        path = d / f"ep{i}.npz"
        save_episode(ep, path)
        paths.append(str(path))
    return paths


def config(paths: list[str], run_dir: os.PathLike, **kw: object) -> FinetuneConfig:
    base = dict(episodes=paths, run_dir=str(run_dir), steps=20, batch_size=2, learning_rate=1e-2)
    base.update(kw)
    return FinetuneConfig(**base)  # type: ignore[arg-type]


def test_action_chunks_repeat_the_last_action() -> None:
    a = np.arange(4, dtype=np.float32)[:, None] * np.ones((1, 7), np.float32)
    c = action_chunks(a, 3)
    assert c.shape == (4, 3, 7)
    assert c[:, :, 0].tolist() == [[0, 1, 2], [1, 2, 3], [2, 3, 3], [3, 3, 3]]


def test_batch_masks_prompt_bidirectional_actions_causal_padding_unseen() -> None:
    s = Samples(
        prompt_ids=[torch.tensor([7, 8]), torch.tensor([7, 8, 9])],
        action_ids=torch.tensor([[100, 101], [102, 103]]),
        pixel_values=torch.zeros(2, 3, 4, 4),
        intrinsics=torch.zeros(2, 3, 3),
        depth=torch.zeros(2, 1, 4, 4),
        origin=[("a", 0), ("a", 1)],
    )
    b = make_batch(s, [0, 1], pad_id=0, device=torch.device("cpu"))
    assert b.input_ids.tolist() == [[0, 7, 8, 100, 101], [7, 8, 9, 102, 103]]
    assert b.position_ids.tolist() == [[1, 1, 2, 3, 4], [1, 2, 3, 4, 5]]
    assert b.targets.tolist() == [[100, 101], [102, 103]]
    seen = b.allowed[:, 0].int().tolist()
    # sample 0: nobody sees the pad (0) (it sees the prompt, so that no row is all masked), the prompt
    # (1, 2) sees itself, the actions (3, 4) see the prompt and the actions up to themselves
    assert seen[0] == [[0, 1, 1, 0, 0]] * 3 + [[0, 1, 1, 1, 0], [0, 1, 1, 1, 1]]
    assert seen[1] == [[1, 1, 1, 0, 0]] * 3 + [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]


def test_teacher_forced_batch_matches_generation(episode_paths: list[str]) -> None:
    """The training forward (left-padded batch, prefix-LM mask) sees what inference sees: with the
    generated tokens as targets, its probabilities equal generate's for every token."""
    from stvla_core.episodes import load_episode
    from stvla_core.model.tiny import processor_for, tiny_model
    from stvla_core.traces import TraceConfig

    model = tiny_model(0)
    proc = processor_for(model)
    ep = load_episode(episode_paths[0]).replace(instruction="a much longer instruction than the other")
    other = load_episode(episode_paths[1])
    s = build_samples([ep, other], proc, TraceConfig(), every=7)
    idx = [0, 2]  # two lengths of prompt: the shorter one is padded
    k3 = s.action_ids.shape[1]
    gen = model.generate(
        torch.stack([s.prompt_ids[0]]), s.pixel_values[:1], s.intrinsics[:1], s.depth[:1], num_tokens=k3
    )
    gen2 = model.generate(
        torch.stack([s.prompt_ids[2]]), s.pixel_values[2:3], s.intrinsics[2:3], s.depth[2:3], num_tokens=k3
    )
    s.action_ids[0], s.action_ids[2] = gen.token_ids[0], gen2.token_ids[0]
    batch = make_batch(s, idx, pad_id=0, device=torch.device("cpu"))
    with torch.no_grad():
        probs = action_logits(model, batch).softmax(-1)
    got = probs.gather(-1, batch.targets[..., None])[..., 0]
    torch.testing.assert_close(got, torch.stack([gen.probs[0], gen2.probs[0]]), atol=1e-4, rtol=1e-3)


def test_tiny_finetune_lowers_loss_and_adapter_reloads(episode_paths: list[str], tmp_path) -> None:
    seen: list[tuple[float, str]] = []
    result = train(
        config(episode_paths, tmp_path / "run", checkpoint_every=10), lambda f, m: seen.append((f, m))
    )
    first, last = np.mean(result.losses[:5]), np.mean(result.losses[-5:])
    assert last < first - 0.5, (first, last)
    run = tmp_path / "run"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 21))
    assert set(rows[0]) == {"step", "loss", "action_accuracy", "lr"}
    assert all(0.0 <= r["action_accuracy"] <= 1.0 for r in rows)
    assert [p.name for p in complete_checkpoints(run)] == ["step_000010", "step_000020"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["samples"] == 16 and summary["steps"] == 20 and summary["resumed_from"] == 0
    assert summary["last_loss_mean"] == pytest.approx(last)
    assert FinetuneConfig.load(run / "config.json") == config(episode_paths, run, checkpoint_every=10)
    assert seen[-1][0] == 1.0 and any("step 20/20" in m for _, m in seen)

    from stvla_core.episodes import load_episode

    ep = load_episode(episode_paths[0])
    plain = Policy.tiny(seed=0).predict(ep, 7)
    tuned = load_adapter(Policy.tiny(seed=0), result.adapter).predict(ep, 7)
    again = load_adapter(Policy.tiny(seed=0), run / "checkpoints" / "step_000020").predict(ep, 7)
    assert not np.array_equal(plain.token_probs, tuned.token_probs)
    np.testing.assert_array_equal(tuned.token_ids, again.token_ids)
    np.testing.assert_array_equal(tuned.token_probs, again.token_probs)


def test_resume_skips_half_written_checkpoint_and_matches_uninterrupted(
    episode_paths: list[str], tmp_path
) -> None:
    kw = dict(batch_size=1, checkpoint_every=5)
    straight = train(config(episode_paths, tmp_path / "straight", steps=7, **kw))
    run = tmp_path / "run"
    first = train(config(episode_paths, run, steps=5, **kw))
    # a killed run: step 10 half-written (no COMPLETE marker, truncated weights), a cut metrics line
    broken = run / "checkpoints" / "step_000010"
    broken.mkdir()
    (broken / "adapter_model.safetensors").write_bytes(b"\x00" * 10)
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 6, "loss": 1.0')
    (run / "summary.json").unlink()
    resumed = train(config(episode_paths, run, steps=7, **kw))
    assert resumed.summary["resumed_from"] == 5
    assert [p.name for p in complete_checkpoints(run)] == ["step_000005", "step_000007"]
    assert resumed.losses[:5] == pytest.approx(first.losses)
    np.testing.assert_allclose(resumed.losses, straight.losses, rtol=1e-4)
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 8))


def test_resume_refuses_changed_settings_and_fresh_run_refuses_old_checkpoints(
    episode_paths, tmp_path
) -> None:
    train(config(episode_paths, tmp_path, steps=2, batch_size=1))
    with pytest.raises(ValueError, match="rank: checkpoints have 8, config has 4"):
        train(config(episode_paths, tmp_path, steps=3, batch_size=1, rank=4))
    with pytest.raises(ValueError, match="checkpoint at step 2, past steps=1"):
        train(config(episode_paths, tmp_path, steps=1, batch_size=1))
    with pytest.raises(FileExistsError, match="already holds checkpoints"):
        train(config(episode_paths, tmp_path, steps=3, batch_size=1, resume=False))
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 2  # the finished run stays


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rank": 0}, "rank: expected an integer >= 1, found 0"),
        ({"episodes": []}, "episodes: expected a non-empty list"),
        ({"variant": "D"}, "variant: expected one of A, B, C, found 'D'"),
        ({"steps": 0}, "steps: expected an integer >= 1, found 0"),
        ({"batch_size": -1}, "batch_size"),
    ],
)
def test_invalid_configs_name_the_field(change: dict, message: str) -> None:
    with pytest.raises(FinetuneConfigError, match=message):
        FinetuneConfig(**{"episodes": ["x.npz"], **change})


def test_unknown_field_target_module_and_missing_episode(episode_paths, tmp_path) -> None:
    with pytest.raises(FinetuneConfigError, match="unknown config field.*ranq"):
        FinetuneConfig.from_dict({"episodes": ["x"], "ranq": 4})
    with pytest.raises(ValueError, match="target_modules qkv_proj match no layer.*q_proj"):
        train(config(episode_paths, tmp_path, target_modules=["qkv_proj"]))
    with pytest.raises(FileNotFoundError, match="episode .*nowhere.npz' not found"):
        train(config([*episode_paths, str(tmp_path / "nowhere.npz")], tmp_path))
    assert not (tmp_path / "checkpoints").exists()


def test_config_json_round_trip_and_cli(episode_paths, tmp_path, capsys) -> None:
    cfg = config(episode_paths, tmp_path / "cli", steps=1, batch_size=1, target_modules=["q_proj", "v_proj"])
    cfg.save(tmp_path / "c.json")
    assert FinetuneConfig.load(tmp_path / "c.json") == cfg
    assert parse(["--config", str(tmp_path / "c.json"), "--rank", "4", "--resume", "false"]).rank == 4
    assert cli_main(["--config", str(tmp_path / "c.json")]) == 0
    assert '"steps": 1' in capsys.readouterr().out
    assert (tmp_path / "cli" / "summary.json").is_file()
    assert cli_main([str(tmp_path / "missing.npz")]) == 2
    assert "episode" in capsys.readouterr().err


def test_job_kind_runs_inside_the_job_folder(episode_paths, tmp_path) -> None:
    import logging

    from stvla_core.jobs.kinds import JobContext, get_kind

    kind = get_kind("finetune")  # the registered kind the app and the jobs CLI submit
    cfg = kind.parse_config({"episodes": episode_paths, "steps": 1, "batch_size": 1, "run_dir": "run"})
    progress: list[float] = []
    ctx = JobContext("j1", tmp_path, logging.getLogger("test"), lambda f, m: progress.append(f))
    out = run_job(cfg, ctx)
    assert out["run_dir"] == str(tmp_path / "run") and out["steps"] == 1
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").is_file()
    assert progress[-1] == 1.0
    json.dumps(out)


def test_kill_9_mid_run_leaves_only_complete_checkpoints_and_resumes(episode_paths, tmp_path) -> None:
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "stvla_core.finetune", *episode_paths, "--run-dir", str(run)]
    cmd += ["--steps", "1000", "--batch-size", "1", "--checkpoint-every", "2", "--learning-rate", "0.01"]
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while len(complete_checkpoints(run)) < 2 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        with pytest.raises(RunInUseError, match="in use by another training process"):
            train(config(episode_paths, run, steps=1000, batch_size=1, checkpoint_every=2))
    finally:
        proc.kill()
        proc.wait()
    assert not (run / "summary.json").exists()
    done = complete_checkpoints(run)
    assert all((p / "COMPLETE").is_file() for p in (run / "checkpoints").glob("step_*"))
    newest = int(done[-1].name.split("_")[1])
    resumed = train(config(episode_paths, run, steps=newest + 1, batch_size=1, checkpoint_every=2))
    assert resumed.summary["resumed_from"] == newest
    assert not list((run / "checkpoints").glob(".tmp-*"))
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, newest + 2))
