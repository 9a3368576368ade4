"""Issue 7's 'done when', end to end: the real app (`python app.py`) runs an evaluation and starts
a fine-tune from the Jobs tab (through gradio_client), is killed with SIGKILL mid-job, and a new
app on the same job store shows the fine-tune failed with its log and the evaluation intact."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from app_server import launch_app, stop_app
from gradio_client import Client

from app.jobs_tab import FINETUNE, OFFLINE, finetune_config_class, form_fields
from stvla_core.jobs import JobStore
from stvla_core.jobs.store import process_alive
from stvla_core.runs import complete_checkpoints

CLOSED_LOOP_FORM = [
    [],
    3,
    50,
    "zero",
    "gpu",
    0,
    "local",
    "",
]  # unused parts of the form, as the page sends them


def finetune_form(**overrides: object) -> list[object]:
    fields = form_fields(finetune_config_class())
    values = {f.name: json.dumps(f.default) if f.kind == "json" else f.default for f in fields}
    values.update(overrides)
    return list(values.values())


def wait_job(store: JobStore, job_id: str, predicate, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = store.get(job_id)
        if predicate(job):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {store.get(job_id).state} after {timeout} s")


@pytest.mark.slow
def test_killing_the_app_mid_job_shows_it_failed_with_its_log_after_a_restart(tmp_path: Path) -> None:
    root = tmp_path / "jobs"
    store = JobStore(root)
    app, url = launch_app(jobs_dir=root)
    try:
        client = Client(url, verbose=False)
        ft_off = finetune_form(episodes=[])
        done_id, error, _ = client.predict(
            OFFLINE, *CLOSED_LOOP_FORM, ["maniskill_pick.npz"], "zero", 3, *ft_off, api_name="/submit_form"
        )
        assert error == "", error
        assert wait_job(store, done_id, lambda j: j.done, 120).state == "succeeded"
        form = finetune_form(
            episodes=["maniskill_pick.npz"], steps=10_000, buffer=4, every=3, checkpoint_every=2
        )
        job_id, error, _ = client.predict(
            FINETUNE, *CLOSED_LOOP_FORM, [], "zero", 0, *form, api_name="/submit_form"
        )
        assert error == "", error
        # once its first checkpoint is complete (progress starts while the samples are built)
        running = wait_job(
            store, job_id, lambda j: j.pid and complete_checkpoints(j.dir / "runs" / "finetune"), 180
        )
        os.kill(app.pid, signal.SIGKILL)  # the app dies mid-job, without any chance to clean up
        app.wait()
    finally:
        stop_app(app)
    deadline = time.monotonic() + 15
    while process_alive(running.pid, running.pid_start) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not process_alive(running.pid, running.pid_start), "the fine-tune outlived the app"

    again, url = launch_app(jobs_dir=root)
    try:
        client = Client(url, verbose=False)
        status, log, *_ = client.predict(job_id, api_name="/show")
        assert (
            "**failed**" in status and f"the app process (pid {app.pid}) that ran this job stopped" in status
        )
        assert "step 1/10000" in log and "job failed: the app process" in log
        status, _, table, *_ = client.predict(done_id, api_name="/show")
        assert "**succeeded**" in status and len(table["data"]) == 7  # the earlier results are intact
    finally:
        stop_app(again)
    job = store.get(job_id)
    assert job.state == "failed" and not (job.dir / "result.json").exists()
    checkpoints = sorted((job.dir / "runs" / "finetune" / "checkpoints").glob("step_*"))
    assert checkpoints, "no checkpoint was written before the kill"
    assert all((c / "COMPLETE").is_file() for c in checkpoints if not c.name.endswith(".tmp"))
