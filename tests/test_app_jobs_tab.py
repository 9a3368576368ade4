"""Jobs tab handlers, called directly with a real JobManager on a temporary folder and real worker
processes (no browser)."""

from __future__ import annotations

import html
import json
import os
import signal
import time
from pathlib import Path

import gradio as gr
import pandas as pd
import pytest

from app.jobs_tab import CLOSED_LOOP, COMPARISON, FINETUNE, OFFLINE, JobsTab, adapter_dir, result_plot
from stvla_core.jobs import CANCELLED, RUNNING, SUCCEEDED, JobManager

REPO = Path(__file__).resolve().parents[1]
EPISODES = REPO / "assets" / "episodes"


@pytest.fixture
def tab(tmp_path):
    manager = JobManager(tmp_path / "jobs")
    yield JobsTab(manager, tmp_path / "media", EPISODES)
    for job in manager.list(states=(RUNNING,)):  # leave no process behind
        if job.pid:
            os.killpg(job.pid, signal.SIGKILL)


def wait_for(tab: JobsTab, job_id: str, predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tab.jobs.poll()
        job = tab.jobs.get(job_id)
        if predicate(job):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {tab.jobs.get(job_id).state} after {timeout} s")


def test_sleep_job_shows_in_table_and_log_then_cancel(tab):
    job_id, error, table = tab.submit("sleep", {"steps": 200, "seconds": 0.05, "message": "dozing"})
    assert error == "" and job_id
    assert list(table["id"]) == [job_id] and table.loc[0, "kind"] == "sleep"
    wait_for(tab, job_id, lambda j: j.progress > 0)
    status, log, key = tab.status(job_id)
    assert "**running**" in status and key == f"{job_id}:running"
    assert "dozing: step 1 of 200" in log
    # the timer sends results only when the state changed
    out = tab.tick(job_id, key)
    assert out[3] == key and all(isinstance(v, type(gr.skip())) for v in out[4:])
    message, table = tab.cancel(job_id)
    assert message == "" and table.loc[0, ["state", "message"]].tolist() == [RUNNING, "cancelling"]
    job = wait_for(tab, job_id, lambda j: j.done, timeout=15)
    assert job.state == CANCELLED and job.error == "cancelled by the user" and job.exit_code == 143
    assert tab.table().loc[0, "state"] == CANCELLED
    message, _ = tab.cancel(job_id)
    assert f"job {job_id} was already cancelled" in message


def test_offline_evaluation_from_the_form_gives_a_results_table_and_plot(tab):
    form = [OFFLINE, [], 3, 50, "zero", "gpu", 0, "local", "", ["maniskill_pick.npz"], "zero", 5]
    job_id, error, table = tab.submit_form(*form)
    assert error == "", error
    assert table.loc[0, "kind"] == "evaluate_offline"
    wait_for(tab, job_id, lambda j: j.done, timeout=60)
    assert tab.jobs.get(job_id).state == SUCCEEDED, tab.jobs.log(job_id)
    status, log, key, res_table, plot, video, adapter, load = tab.show(job_id)
    assert "**succeeded**" in status and "job succeeded" in log and key == f"{job_id}:succeeded"
    assert isinstance(res_table, pd.DataFrame) and len(res_table) > 0 and "mae" in res_table.columns
    assert plot is not None and len(plot.data) > 0
    assert video is None and adapter == "" and load["visible"] is False


def comparison_form(settings: str, workers: int = 0, tasks=("PushCube-v1",), episodes=3, steps=50) -> list:
    """The Submit button's inputs for a comparison job (the other kinds' parts as the page sends them)."""
    return [
        COMPARISON,
        list(tasks),
        episodes,
        steps,
        "zero",
        "gpu",
        workers,
        "local",
        settings,
        [],
        "zero",
        0,
    ]


@pytest.mark.parametrize(
    ("form", "message"),
    [
        (
            [CLOSED_LOOP, ["PickCube-v1"], 0, 50, "zero", "gpu", 0, "local", "", [], "zero", 0],
            "episodes_per_task: expected >= 1",
        ),
        (
            [CLOSED_LOOP, [], 3, 50, "zero", "gpu", 0, "local", "", [], "zero", 0],
            "tasks: choose at least one task",
        ),
        (
            [CLOSED_LOOP, ["PickCube-v1"], 2.5, 50, "zero", "gpu", 0, "local", "", [], "zero", 0],
            "expected a whole number",
        ),
        (
            [OFFLINE, [], 3, 50, "zero", "gpu", 0, "local", "", [], "zero", 0],
            "episodes: choose at least one episode",
        ),
        (
            [OFFLINE, [], 3, 50, "zero", "gpu", 0, "local", "", ["maniskill_pick.npz"], "nope", 0],
            "policy: expected one of",
        ),
        (
            ["Train a robot", [], 3, 50, "zero", "gpu", 0, "local", "", [], "zero", 0],
            "job kind: expected one of",
        ),
        (
            comparison_form("[{'label': 'a'}]"),
            "policy settings: expected a JSON list of {label, policy, policy_kwargs}",
        ),
        (
            comparison_form('[{"label": "a"}, {"label": "a"}]'),
            "settings[1]: label 'a' names the same folder as settings[0]",
        ),
        (comparison_form('[{"label": "a"}]', workers=-1), "workers: expected >= 0"),
    ],
)
def test_bad_form_says_why_and_submits_nothing(tab, form, message):
    job_id, error, table = tab.submit_form(*form)
    assert job_id == "" and message in html.unescape(error) and "stvla-error" in error
    assert table.empty and tab.jobs.list() == []


def test_finetune_form_builds_a_valid_config(tab):
    from app.jobs_tab import KINDS, finetune_config_class, form_fields
    from stvla_core.jobs import JOB_KINDS

    cls = finetune_config_class()
    assert KINDS[FINETUNE] in JOB_KINDS
    fields = form_fields(cls)
    values = {f.name: json.dumps(f.default) if f.kind == "json" else f.default for f in fields}
    values.update(episodes=["maniskill_pick.npz"], steps=4.0, rank=2.0, learning_rate=0.01)
    config = tab.finetune_config(list(values.values()))
    assert config["episodes"] == [str(EPISODES / "maniskill_pick.npz")]
    assert config["steps"] == 4 and isinstance(config["steps"], int) and config["rank"] == 2
    assert config["target_modules"] == next(f.default for f in fields if f.name == "target_modules")
    parsed = cls(**config)
    assert parsed.steps == 4 and parsed.learning_rate == 0.01
    values["rank"] = 2.5
    with pytest.raises(ValueError, match="rank: expected a whole number, found 2.5"):
        tab.finetune_config(list(values.values()))
    assert tab.jobs.list() == []


def test_a_job_killed_with_the_app_shows_failed_with_its_log_after_restart(tmp_path):
    root = tmp_path / "jobs"
    first = JobsTab(JobManager(root), tmp_path / "media", EPISODES)
    done_id, _, _ = first.submit_form(
        OFFLINE, [], 3, 50, "zero", "gpu", 0, "local", "", ["maniskill_pick.npz"], "zero", 3
    )
    wait_for(first, done_id, lambda j: j.done, timeout=60)
    job_id, _, _ = first.submit("sleep", {"steps": 200, "seconds": 0.05})
    pid = wait_for(first, job_id, lambda j: j.progress > 0 and j.pid).pid
    os.killpg(pid, signal.SIGKILL)  # the job's process goes down with the app, before it noticed
    time.sleep(0.2)

    again = JobsTab(JobManager(root), tmp_path / "media", EPISODES)
    table = again.table().set_index("id")
    assert table.loc[job_id, "state"] == "failed" and table.loc[done_id, "state"] == SUCCEEDED
    status, log, *_ = again.show(job_id)
    assert "**failed**" in status and "found running after a restart" in status
    assert "step 1 of 200" in log and "job failed: found running after a restart" in log
    _, _, _, res_table, *_ = again.show(done_id)
    assert len(res_table) == 7 and "mae" in res_table.columns  # the earlier results are intact


def test_results_helpers_read_loss_csv_and_adapter(tmp_path):
    (tmp_path / "metrics.csv").write_text("step,loss\n0,2.0\n1,1.5\n2,0.9\n")
    fig = result_plot(tmp_path, {})
    assert list(fig.data[0].y) == [2.0, 1.5, 0.9] and list(fig.data[0].x) == [0, 1, 2]
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text(
        '{"step": 1, "loss": 3.0}\n{"step": 2, "loss": 2.5}\n{"step": 3, "lo'  # a line still being written
    )
    fig = result_plot(tmp_path, {})
    assert list(fig.data[0].y) == [3.0, 2.5] and list(fig.data[0].x) == [1, 2]
    assert "metrics.jsonl" in fig.layout.title.text
    assert adapter_dir(tmp_path, {}) is None
    (tmp_path / "checkpoint" / "adapter").mkdir(parents=True)
    (tmp_path / "checkpoint" / "adapter" / "adapter_config.json").write_text("{}")
    assert adapter_dir(tmp_path, {}) == tmp_path / "checkpoint" / "adapter"
    assert adapter_dir(tmp_path, {"adapter": "checkpoint"}) == tmp_path / "checkpoint"


def test_unknown_selection_is_explained(tab):
    status, log, key = tab.status("20990101-000000-abcdef")
    assert "no job '20990101-000000-abcdef'" in status and log == "" and key == ""
    assert tab.status("")[0] == "Select a job in the table."


@pytest.mark.sim
def test_closed_loop_job_from_the_form_shows_success_table_and_video(tab):
    from test_evaluation import vulkan_problem

    if vulkan_problem() is not None:
        pytest.skip(vulkan_problem())
    form = [CLOSED_LOOP, ["PickCube-v1"], 2, 5, "random", "gpu", 0, "local", "", [], "zero", 0]
    job_id, error, _ = tab.submit_form(*form)
    assert error == "", error
    job = wait_for(tab, job_id, lambda j: j.done, timeout=240)
    assert job.state == SUCCEEDED, tab.jobs.log(job_id)
    status, log, key, res_table, plot, video, adapter, load = tab.show(job_id)
    assert "PickCube-v1: success" in log and "\x1b" not in log
    assert res_table.to_dict("records") == [
        {
            "task": "PickCube-v1",
            "episodes": 2,
            "success (%)": res_table.loc[0, "success (%)"],
            "mean length": 5.0,
        }
    ]
    assert plot.data[0].x == ("PickCube-v1",)
    assert video is not None and Path(video).stat().st_size > 0 and Path(video).suffix == ".mp4"
    assert Path(video).is_relative_to(tab.media_dir)


@pytest.mark.slow
def test_finetune_from_the_form_runs_with_falling_loss_and_loads_into_inspector(tab):
    """The fine-tune form submitted as a user would, run to the end by a real worker process, then
    its loss curve and adapter shown and the adapter loaded into a real app context."""
    from app.inspector import AppContext
    from app.jobs_tab import finetune_config_class, form_fields, load_adapter
    from app.settings import AppSettings

    fields = form_fields(finetune_config_class())
    values = {f.name: json.dumps(f.default) if f.kind == "json" else f.default for f in fields}
    values.update(
        episodes=["maniskill_pick.npz"],
        steps=12.0,
        buffer=4.0,
        every=3.0,
        checkpoint_every=6.0,
        learning_rate=0.01,
    )
    job_id, error, _ = tab.submit_form(
        FINETUNE, [], 3, 50, "zero", "gpu", 0, "local", "", [], "zero", 0, *values.values()
    )
    assert error == "", error
    job = wait_for(tab, job_id, lambda j: j.done, timeout=400)
    assert job.state == SUCCEEDED, tab.jobs.log(job_id)
    status, log, key, res_table, plot, video, adapter, load = tab.show(job_id)
    assert "**succeeded**" in status and "step 12/12" in log
    assert res_table.set_index("key").loc["steps", "value"] == 12
    loss = list(plot.data[0].y)
    assert len(loss) == 12 and "metrics.jsonl" in plot.layout.title.text
    assert sum(loss[-3:]) < sum(loss[:3]), loss  # the curve falls
    assert Path(adapter) == job.dir / "runs" / "finetune" / "adapter" and load["visible"] is True
    ctx = AppContext.create(AppSettings(policy="tiny"))  # the model the form fine-tuned
    try:
        message = load_adapter(ctx, adapter)
        assert "LoRA adapter loaded into the Inspector" in message
        assert ctx.settings.lora == adapter
        row = next(r for r in ctx.backends.status_rows() if r[0] == "LoRA adapter")
        assert row[2] == "active"
        assert "no adapter" in load_adapter(ctx, "")
    finally:
        ctx.close()


@pytest.mark.sim
def test_comparison_job_from_the_form_shows_one_row_per_setting(tab):
    from test_evaluation import vulkan_problem

    if vulkan_problem() is not None:
        pytest.skip(vulkan_problem())
    settings = json.dumps([{"label": "still", "policy": "zero"}, {"label": "jitter", "policy": "random"}])
    job_id, error, table = tab.submit_form(*comparison_form(settings, workers=2, episodes=1, steps=3))
    assert error == "" and table.loc[0, "kind"] == "evaluate_comparison", error
    job = wait_for(tab, job_id, lambda j: j.done, timeout=300)
    assert job.state == SUCCEEDED, tab.jobs.log(job_id)
    _, log, _, res_table, plot, video, _, _ = tab.show(job_id)
    assert res_table.to_dict("records") == [
        {
            "setting": "still",
            "PushCube-v1": "0 % [0, 79.3]",
            "average": "0 % [0, 79.3]",
            "episodes": "1 per task",
        },
        {
            "setting": "jitter",
            "PushCube-v1": "0 % [0, 79.3]",
            "average": "0 % [0, 79.3]",
            "episodes": "1 per task",
        },
    ]
    assert [t.name for t in plot.data] == ["still (zero)", "jitter (random)"]
    assert video is not None and Path(video).suffix == ".mp4"  # the first setting's episode
