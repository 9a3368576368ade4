"""Sharded closed-loop evaluation and comparison runs: shard plans, hand-computed comparison
tables with Wilson intervals, the `compare` command, config errors, and in ManiSkill3 the same
episodes from 2 worker processes as from one, resumed runs and a comparison job."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
from test_evaluation import requires_vulkan

from stvla_core.evaluation import ClosedLoopConfig, evaluate_closed_loop
from stvla_core.evaluation.__main__ import main as evaluation_cli
from stvla_core.evaluation.closed_loop import EVAL_SEED_START
from stvla_core.evaluation.comparison import ComparisonConfig
from stvla_core.evaluation.results import (
    ResultsError,
    comparison_cells,
    comparison_table,
    to_markdown,
    write_results,
)
from stvla_core.evaluation.sharding import Shard, claim_folder, episode_file, plan_shards
from stvla_core.jobs import SUCCEEDED, JobConfigError, JobManager
from stvla_core.jobs.kinds import config_from_dict

TINY = {"policy": "stvla", "policy_kwargs": {"checkpoint": "tiny"}}


def run(label: str, outcomes: dict[str, list[bool]]) -> dict:
    episodes = [
        {
            "task": task,
            "episode": k,
            "seed": EVAL_SEED_START + k,
            "success": s,
            "success_at_end": s,
            "length": 5,
            "seconds": 0.1,
            "video": "",
            "instruction": "x",
        }
        for task, results in outcomes.items()
        for k, s in enumerate(results)
    ]
    return {"labels": {"run": label, "policy": "stvla"}, "episodes": episodes}


# -- tables ----------------------------------------------------------------------------------
def test_comparison_table_wilson_cells_and_pooled_average():
    a = run("C b=30", {"PushCube-v1": [True] * 30 + [False] * 20, "PullCube-v1": [False] * 50})
    b = run("none", {"PushCube-v1": [True, True, False, False]})
    table = comparison_table([a, b])
    assert list(table["setting"]) == ["C b=30"] * 3 + ["none"] * 2
    assert list(table["task"]) == ["PushCube-v1", "PullCube-v1", "average", "PushCube-v1", "average"]
    row = table.iloc[2]  # 30 of 100 pooled
    assert (row["episodes"], row["successes"], row["success_rate"]) == (100, 30, 0.3)
    # Wilson at 0/50: upper 3.84 / 53.84; at 30/50: 0.4618..0.7239 (hand-computed)
    assert table.iloc[1]["ci_high"] == pytest.approx(1.96**2 / (50 + 1.96**2))
    assert (table.iloc[0]["ci_low"], table.iloc[0]["ci_high"]) == (
        pytest.approx(0.4618, abs=1e-4),
        pytest.approx(0.7239, abs=1e-4),
    )
    md = to_markdown(comparison_cells(table))
    assert md.splitlines()[0] == "| setting | PushCube-v1 | PullCube-v1 | average | episodes |"
    assert "| C b=30 | 60 % [46.2, 72.4] | 0 % [0, 7.1] | 30 % [21.9, 39.6] | 50 per task |" in md
    assert "| none | 50 % [15, 85] | - | 50 % [15, 85] | 4 per task |" in md


def test_comparison_labels_must_be_given_once_each():
    a, b = run("zero", {"PushCube-v1": [True]}), run("zero", {"PushCube-v1": [False]})
    with pytest.raises(
        ResultsError,
        match="runs 1 and 2 are both labelled 'zero' and both hold PushCube-v1 seed 100000; give each",
    ):
        comparison_table([a, b])
    assert list(comparison_table([a, b], labels=["x", "y"])["setting"].unique()) == ["x", "y"]
    with pytest.raises(ResultsError, match=r"expected one label per run \(2\), found 1"):
        comparison_table([a, b], labels=["x"])


def test_runs_of_one_label_merge_and_first_keeps_the_same_seeds():
    # one run per task under one label is one row; the 5-episode row is cut to the first 2 seeds
    push = run("C", {"PushCube-v1": [False, True, True, True, True]})
    pull = run("C", {"PullCube-v1": [True, False]})
    other = run("A", {"PushCube-v1": [True, False], "PullCube-v1": [False, False]})
    full = comparison_table([push, pull, other])
    assert full[full["setting"] == "C"][["task", "episodes", "successes"]].values.tolist() == [
        ["PushCube-v1", 5, 4],
        ["PullCube-v1", 2, 1],
        ["average", 7, 5],
    ]
    same = comparison_table([push, pull, other], first=2)
    assert same[same["setting"] == "C"][["task", "episodes", "successes"]].values.tolist() == [
        ["PushCube-v1", 2, 1],
        ["PullCube-v1", 2, 1],
        ["average", 4, 2],
    ]
    with pytest.raises(ResultsError, match="first must be >= 1"):
        comparison_table([push], first=0)


def test_compare_command_writes_markdown_csv_and_json(tmp_path, capsys):
    write_results(tmp_path / "a", run("a", {"PushCube-v1": [True, False]}))
    write_results(tmp_path / "b", run("b", {"PushCube-v1": [True, True]}))
    assert evaluation_cli(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "| b | 100 % [34.2, 100] | 100 % [34.2, 100] | 2 per task |" in printed
    assert (tmp_path / "comparison.md").read_text().strip() == printed.strip()
    csv = pd.read_csv(tmp_path / "comparison.csv")
    assert csv[["setting", "task", "successes"]].values.tolist() == [
        ["a", "PushCube-v1", 1],
        ["a", "average", 1],
        ["b", "PushCube-v1", 2],
        ["b", "average", 2],
    ]
    assert json.loads((tmp_path / "comparison.json").read_text())[2]["ci_low"] == pytest.approx(
        0.3424, abs=1e-4
    )
    assert evaluation_cli(["compare", str(tmp_path / "a"), str(tmp_path / "nothing")]) == 2
    assert "error: no results.json in " in capsys.readouterr().err


# -- configs and plans -----------------------------------------------------------------------
def test_comparison_settings_errors_name_the_setting():
    def parse(settings, **shared):
        return config_from_dict(ComparisonConfig, {"tasks": ["PushCube-v1"], **shared, "settings": settings})

    config = parse(
        [{"label": "none", **TINY}, {"label": "C b=15", "policy_kwargs": {"buffer": 15}}], policy="random"
    )
    [(f1, c1), (f2, c2)] = config.runs()
    assert (f1, c1.policy, c1.run_name, c1.labels()["checkpoint"]) == ("none", "stvla", "none", "tiny")
    assert (f2, c2.policy, c2.labels()["buffer"]) == ("C_b=15", "random", 15)  # the shared policy
    with pytest.raises(JobConfigError, match=r"settings\[0\]: unknown key\(s\) episodes_per_task; .* shared"):
        parse([{"label": "a", "episodes_per_task": 3}])
    with pytest.raises(
        JobConfigError, match=r"settings\[1\]: label 'a' names the same folder as settings\[0\]"
    ):
        parse([{"label": "a"}, {"label": "a"}])
    with pytest.raises(
        JobConfigError, match=r"settings\[0\]: expected a 'label' with letters or digits, found '/'"
    ):
        parse([{"label": "/"}])
    with pytest.raises(JobConfigError, match=r"settings\[0\]: policy: expected one of .*found 'stlva'"):
        parse([{"label": "a", "policy": "stlva"}])
    with pytest.raises(JobConfigError, match="settings: expected at least one"):
        parse([])
    with pytest.raises(JobConfigError, match="executor: expected one of local, ray, found 'slurm'"):
        config_from_dict(ClosedLoopConfig, {"executor": "slurm"})
    with pytest.raises(JobConfigError, match="workers: expected >= 0"):
        config_from_dict(ClosedLoopConfig, {"workers": -1})


def test_shards_cover_the_missing_episodes_only(tmp_path):
    config = ClosedLoopConfig(tasks=["PushCube-v1", "PullCube-v1"], episodes_per_task=5, shard_episodes=2)
    other = ClosedLoopConfig(tasks=["PushCube-v1"], episodes_per_task=1)
    for k in (1, 4):  # finished earlier
        path = episode_file(tmp_path / "a", "PullCube-v1", config.seed + k)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    assert plan_shards([(config, tmp_path / "a"), (other, tmp_path / "b")]) == [
        Shard(0, "PushCube-v1", (0, 1)),
        Shard(0, "PushCube-v1", (2, 3)),
        Shard(0, "PushCube-v1", (4,)),
        Shard(0, "PullCube-v1", (0, 2)),
        Shard(0, "PullCube-v1", (3,)),
        Shard(1, "PushCube-v1", (0,)),
    ]


def test_a_folder_keeps_the_episodes_of_one_setting(tmp_path):
    config = ClosedLoopConfig(tasks=["PushCube-v1"], **TINY)
    claim_folder(config, tmp_path)
    claim_folder(ClosedLoopConfig(tasks=["PullCube-v1"], episodes_per_task=50, workers=7, **TINY), tmp_path)
    with pytest.raises(
        ResultsError, match=r"holds episodes of another evaluation \(policy_kwargs: .*'tiny'.* there"
    ):
        claim_folder(ClosedLoopConfig(policy="stvla", policy_kwargs={"checkpoint": "stvla-s"}), tmp_path)


# -- in the simulator ------------------------------------------------------------------------
def frames(path: Path) -> np.ndarray:
    with av.open(str(path)) as video:
        return np.stack([f.to_ndarray(format="rgb24") for f in video.decode(video=0)])


OUTCOME = ["task", "episode", "seed", "instruction", "success", "success_at_end", "length", "video"]


@pytest.mark.sim
@pytest.mark.slow
@requires_vulkan
def test_two_workers_play_the_same_episodes_as_one_and_a_rerun_resumes(tmp_path):
    base = {"tasks": ["PushCube-v1", "PullCube-v1"], "episodes_per_task": 2, "max_steps": 6, **TINY}
    one = evaluate_closed_loop(ClosedLoopConfig(**base, workers=1), tmp_path / "one")
    progress = []
    two = evaluate_closed_loop(
        ClosedLoopConfig(**base, workers=2), tmp_path / "two", progress=lambda f, m: progress.append(m)
    )
    assert progress[0] == "0/4 episodes" and progress[-1] == "4/4 episodes"  # counted across shards
    assert [[e[k] for k in OUTCOME] for e in two["episodes"]] == [
        [e[k] for k in OUTCOME] for e in one["episodes"]
    ]
    assert [e["seed"] for e in two["episodes"]] == [EVAL_SEED_START, EVAL_SEED_START + 1] * 2
    for e in one["episodes"]:  # the same simulation, frame for frame
        np.testing.assert_array_equal(
            frames(tmp_path / "two" / e["video"]), frames(tmp_path / "one" / e["video"])
        )
    assert json.loads((tmp_path / "two" / "results.json").read_text())["summary"] == one["summary"]

    # killed after three episodes: the rerun plays only the fourth, one more episode adds two
    lost = episode_file(tmp_path / "two", "PullCube-v1", EVAL_SEED_START + 1)
    lost.unlink()
    (tmp_path / "two" / "results.json").unlink()
    kept = episode_file(tmp_path / "two", "PushCube-v1", EVAL_SEED_START).stat().st_mtime_ns
    progress.clear()
    again = evaluate_closed_loop(
        ClosedLoopConfig(**base, workers=2), tmp_path / "two", progress=lambda f, m: progress.append(m)
    )
    assert progress == ["PullCube-v1 episode 2/2"]  # one shard left: it runs in this process
    assert [[e[k] for k in OUTCOME] for e in again["episodes"]] == [
        [e[k] for k in OUTCOME] for e in one["episodes"]
    ]
    assert episode_file(tmp_path / "two", "PushCube-v1", EVAL_SEED_START).stat().st_mtime_ns == kept


@pytest.mark.sim
@pytest.mark.slow
@requires_vulkan
def test_comparison_job_writes_one_table_over_settings(tmp_path):
    m = JobManager(tmp_path / "jobs")
    config = {
        "tasks": ["PushCube-v1"],
        "episodes_per_task": 2,
        "max_steps": 3,
        "record_video": False,
        "settings": [{"label": "tiny", **TINY}, {"label": "zero", "policy": "zero"}],
    }
    job = m.wait(m.submit("evaluate_comparison", config).id, timeout=300)
    assert job.state == SUCCEEDED, m.log(job.id)
    result = m.result(job.id)
    assert result["settings"] == ["tiny", "zero"] and result["runs"] == ["tiny", "zero"]
    assert [r["PushCube-v1"] for r in result["table"]] == ["0 % [0, 65.8]"] * 2
    assert (job.dir / "comparison.md").read_text().splitlines()[0].startswith("| setting | PushCube-v1 |")
    zero = json.loads((job.dir / "zero" / "results.json").read_text())
    assert zero["labels"]["run"] == "zero" and [e["seed"] for e in zero["episodes"]] == [
        EVAL_SEED_START,
        EVAL_SEED_START + 1,
    ]
    assert job.message == "4/4 episodes"
