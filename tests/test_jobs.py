"""The job store and runners with real worker processes, real SIGTERM/SIGKILL and a real
restart (a second manager on the same folder after the first one's process was killed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stvla_core.jobs import (
    CANCELLED,
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    JobConfigError,
    JobManager,
    JobStateError,
    JobStore,
    RayRunner,
    RunnerUnavailableError,
    atomic_directory,
    atomic_write_json,
)
from stvla_core.jobs.store import process_alive
from stvla_core.registry import UnknownNameError

REPO = Path(__file__).resolve().parents[1]
LONG = {"steps": 100, "seconds": 0.1}  # 10 s: always still running when a test acts on it


def wait_until(predicate, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def wait_progress(store: JobStore, job_id: str):
    return wait_until(
        lambda: (j := store.get(job_id)).progress > 0 and j.pid and j, what=f"progress of job {job_id}"
    )


@pytest.fixture
def manager(tmp_path):
    m = JobManager(tmp_path / "jobs", max_concurrent=2)
    yield m
    for job in m.list(states=(RUNNING,)):  # leave no process behind
        os.killpg(job.pid, signal.SIGKILL)


def test_sleep_job_succeeds_with_log_progress_and_result(manager):
    job = manager.submit("sleep", {"steps": 3, "seconds": 0.01, "message": "napping"})
    assert job.state in (QUEUED, RUNNING)
    done = manager.wait(job.id, timeout=30)
    assert done.state == SUCCEEDED and done.exit_code == 0 and done.progress == 1.0
    assert done.message == "step 3/3"
    assert manager.result(job.id) == {"steps": 3, "message": "napping"}
    assert json.loads((done.dir / "config.json").read_text()) == {
        "steps": 3,
        "seconds": 0.01,
        "message": "napping",
    }
    log = manager.log(job.id)
    assert "napping: step 3 of 3" in log and "job succeeded" in log
    assert (done.dir / "steps.txt").read_text() == "3\n"
    assert done.started_at >= done.created_at and done.finished_at >= done.started_at


def test_failing_job_records_error_and_traceback(manager):
    job = manager.wait(manager.submit("sleep", {"steps": 3, "seconds": 0.0, "fail_at": 1}).id, timeout=30)
    assert job.state == FAILED and job.exit_code == 1
    assert job.error == "RuntimeError: failing at step 1 as configured (fail_at=1)"
    log = manager.log(job.id)
    assert "Traceback" in log and "step 1 of 3" in log and "step 2 of 3" not in log
    assert not (job.dir / "result.json").exists()
    with pytest.raises(JobStateError, match="state is 'failed': RuntimeError: failing at step 1"):
        manager.result(job.id)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"stepz": 2},
            "unknown config field(s) stepz; expected some of steps, seconds, fail_at, message, ignore_sigterm",
        ),
        ({"steps": "many"}, "field 'steps' expected int, found 'many'"),
        ({"steps": True}, "field 'steps' expected int, found True"),
        ({"steps": 0}, "steps: expected >= 1, found 0"),
        ([1, 2], "expected a dict config, found list"),
    ],
)
def test_invalid_config_is_refused_and_nothing_is_stored(manager, config, message):
    with pytest.raises(JobConfigError) as e:
        manager.submit("sleep", config)
    assert message in str(e.value) and "job kind 'sleep'" in str(e.value)
    assert manager.list() == []


def test_unknown_kind_lists_the_valid_ones(manager):
    with pytest.raises(UnknownNameError, match="unknown job kind 'trian'; expected one of .*sleep"):
        manager.submit("trian", {})


def test_concurrency_limit_queues_and_cancel_of_queued_job(tmp_path):
    m = JobManager(tmp_path / "jobs", max_concurrent=1)
    first = m.submit("sleep", {"steps": 4, "seconds": 0.1})
    second = m.submit("sleep", {"steps": 1, "seconds": 0.0})
    third = m.submit("sleep", {"steps": 1, "seconds": 0.0})
    assert m.get(first.id).state == RUNNING
    assert m.get(second.id).state == QUEUED and m.get(third.id).state == QUEUED
    assert m.cancel(third.id).state == CANCELLED
    while not m.get(second.id).done:
        m.poll()
        assert m.store.count(RUNNING) <= 1
        time.sleep(0.02)
    assert [m.get(j.id).state for j in (first, second, third)] == [SUCCEEDED, SUCCEEDED, CANCELLED]
    assert m.get(second.id).started_at >= m.get(first.id).finished_at
    assert "job cancelled: cancelled by the user" in m.log(third.id)
    assert m.get(third.id).pid is None  # it never started


def test_cancel_running_job_terminates_its_process(manager):
    job = manager.submit("sleep", LONG)
    running = wait_progress(manager.store, job.id)
    asked = manager.cancel(job.id)
    assert asked.state == RUNNING and asked.message == "cancelling"  # until the worker has stopped
    manager.runner("local").wait(job.id, timeout=10)
    assert not process_alive(running.pid)
    job = manager.wait(job.id, timeout=10)
    assert job.state == CANCELLED and job.error == "cancelled by the user" and job.result == ""
    assert job.exit_code == 143
    log = manager.log(job.id)
    assert f"sending SIGTERM to the job (pid {running.pid})" in log and "cancelled (SIGTERM)" in log
    assert "sending SIGKILL" not in log
    assert manager.cancel(job.id).state == CANCELLED  # cancelling again changes nothing


def test_cancel_falls_back_to_sigkill_for_a_job_deaf_to_sigterm(tmp_path):
    m = JobManager(tmp_path / "jobs", runner_options={"local": {"grace_s": 0.5}})
    job = m.submit("sleep", {**LONG, "ignore_sigterm": True})
    running = wait_progress(m.store, job.id)
    m.cancel(job.id)
    m.runner("local").wait(job.id, timeout=10)
    assert not process_alive(running.pid)
    job = m.wait(job.id, timeout=10)
    assert job.state == CANCELLED and job.exit_code == -9
    assert job.error == "cancelled by the user; the job ignored SIGTERM for 0.5 s and was killed with SIGKILL"
    log = m.log(job.id)
    assert log.index("sending SIGTERM") < log.index("no exit 0.5 s after SIGTERM; sending SIGKILL")


def test_kill_9_of_a_job_marks_it_failed_and_keeps_earlier_jobs(manager):
    earlier = manager.wait(manager.submit("sleep", {"steps": 1, "seconds": 0.0}).id, timeout=30)
    job = manager.submit("sleep", LONG)
    running = wait_progress(manager.store, job.id)
    os.kill(running.pid, signal.SIGKILL)
    job = manager.wait(job.id, timeout=10)
    assert job.state == FAILED and job.exit_code == -9
    assert job.error == f"worker process (pid {running.pid}) killed by SIGKILL without reporting a result"
    assert not (job.dir / "result.json").exists()
    log = manager.log(job.id)
    assert "step 1 of 100" in log and "killed by SIGKILL" in log
    assert manager.get(earlier.id).state == SUCCEEDED
    assert manager.result(earlier.id) == {"steps": 1, "message": "sleeping"}


APP = """
import sys, time
from stvla_core.jobs import JobManager
bind = sys.argv[3] == "bind"
m = JobManager(sys.argv[1], max_concurrent=2, runner_options={"local": {"bind_to_owner": bind}})
done = m.wait(m.submit("sleep", {"steps": 1, "seconds": 0.0}).id)
job = m.submit("sleep", {"steps": int(sys.argv[2]), "seconds": 0.1})
print(done.id, job.id, flush=True)
time.sleep(60)
"""


def start_app(root: Path, steps: int, bind: bool = False) -> tuple[subprocess.Popen, str, str]:
    """An 'app' process holding a JobManager that ran one job and started a second; with `bind`
    its jobs are bound to it, as the Gradio app's are."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    app = subprocess.Popen(
        [sys.executable, "-c", APP, str(root), str(steps), "bind" if bind else "free"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    earlier_id, job_id = app.stdout.readline().split()
    return app, earlier_id, job_id


def test_store_survives_an_app_restart_after_kill_9(tmp_path):
    root = tmp_path / "jobs"
    app, earlier_id, job_id = start_app(root, steps=100)
    running = wait_progress(JobStore(root), job_id)
    os.kill(running.pid, signal.SIGKILL)  # the job process dies ...
    app.kill()  # ... and so does the app, before it could notice
    app.wait()
    app.stdout.close()
    wait_until(lambda: not process_alive(running.pid, running.pid_start), what="the killed worker to end")

    restarted = JobManager(root)
    job = restarted.get(job_id)
    assert [j.id for j in restarted.recovered] == [job_id]
    assert job.state == FAILED
    assert job.error == (
        f"found running after a restart, but its process (pid {running.pid}) is gone without reporting a result"
    )
    log = restarted.log(job_id)
    assert "step 1 of 100" in log and "job failed: found running after a restart" in log
    assert not (job.dir / "result.json").exists()
    assert restarted.get(earlier_id).state == SUCCEEDED
    assert restarted.result(earlier_id) == {"steps": 1, "message": "sleeping"}


def test_killing_the_app_stops_its_bound_jobs_and_marks_them_failed(tmp_path):
    root = tmp_path / "jobs"
    app, earlier_id, job_id = start_app(root, steps=100, bind=True)
    running = wait_progress(JobStore(root), job_id)
    app.kill()  # kill -9 of the app alone: the job's worker must notice and stop
    app.wait()
    app.stdout.close()
    deadline = time.monotonic() + 10
    while process_alive(running.pid, running.pid_start) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not process_alive(running.pid, running.pid_start), "the worker outlived its app"

    restarted = JobManager(root)
    job = restarted.get(job_id)
    assert restarted.recovered == []  # the worker already said what happened
    assert job.state == FAILED and job.exit_code == -9
    assert job.error == (
        f"the app process (pid {app.pid}) that ran this job stopped, so the job was stopped with it"
    )
    log = restarted.log(job_id)
    assert "step 1 of 100" in log and f"job failed: the app process (pid {app.pid})" in log
    assert "step 100 of 100" not in log and not (job.dir / "result.json").exists()
    assert restarted.get(earlier_id).state == SUCCEEDED
    assert restarted.result(earlier_id) == {"steps": 1, "message": "sleeping"}


def test_restart_adopts_a_job_whose_process_still_runs(tmp_path):
    """Jobs submitted from the command line are not bound: they outlive the submitting process."""
    root = tmp_path / "jobs"
    app, _, job_id = start_app(root, steps=8)
    wait_progress(JobStore(root), job_id)
    app.kill()
    app.wait()
    app.stdout.close()
    restarted = JobManager(root)
    assert restarted.recovered == [] and restarted.get(job_id).state == RUNNING
    job = restarted.wait(job_id, timeout=30)
    assert job.state == SUCCEEDED and restarted.result(job_id)["steps"] == 8


def test_queued_jobs_start_after_a_restart_and_the_table_lists_them(tmp_path):
    store = JobStore(tmp_path / "jobs")
    queued = store.create("sleep", {"steps": 1, "seconds": 0.0})  # queued by an app that then died
    m = JobManager(tmp_path / "jobs")
    assert m.wait(queued.id, timeout=30).state == SUCCEEDED
    table = m.table()
    assert table.columns.tolist() == [
        "id",
        "kind",
        "state",
        "progress",
        "message",
        "runner",
        "created",
        "seconds",
        "error",
    ]
    assert table.iloc[0][["id", "kind", "state", "progress", "runner"]].tolist() == [
        queued.id,
        "sleep",
        "succeeded",
        100.0,
        "local",
    ]


def test_recover_fails_claimed_jobs_that_never_got_a_process(tmp_path):
    store = JobStore(tmp_path)
    job = store.create("sleep", {"steps": 1})
    assert store.claim(job.id)  # a manager claimed it and died before starting the worker
    assert store.recover() == []  # within the start grace: the manager may still be starting it
    [failed] = store.recover(start_grace_s=0.0)
    assert failed.state == FAILED and "it never started a process" in failed.error


def test_worker_started_by_hand_on_a_finished_job_does_nothing(tmp_path):
    from stvla_core.jobs.worker import run_job

    store = JobStore(tmp_path)
    job = store.create("sleep", {"steps": 1, "seconds": 0.0})
    assert run_job(job.id, store) == 0  # queued: the worker claims and runs it
    assert store.get(job.id).state == SUCCEEDED and store.read_result(job.id)["steps"] == 1
    finished_at = store.get(job.id).finished_at
    assert run_job(job.id, store) == 0
    assert store.get(job.id).finished_at == finished_at


def test_atomic_directory_never_leaves_a_partial_checkpoint(tmp_path):
    target = tmp_path / "checkpoint"
    with atomic_directory(target) as d:
        (d / "weights.bin").write_bytes(b"v1")
    with pytest.raises(RuntimeError, match="disk full"), atomic_directory(target) as d:
        (d / "weights.bin").write_bytes(b"v2 half")
        raise RuntimeError("disk full")
    assert (target / "weights.bin").read_bytes() == b"v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]
    atomic_write_json(tmp_path / "r.json", {"a": 1})
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint", "r.json"]


def test_store_list_filters_and_missing_job(tmp_path):
    store = JobStore(tmp_path)
    a = store.create("sleep", {"steps": 1})
    b = store.create("sleep", {"steps": 2})
    assert [j.id for j in store.list()] == [b.id, a.id]
    assert store.claim(a.id) and not store.claim(a.id)
    assert [j.id for j in store.list(states=(RUNNING,))] == [a.id]
    assert store.finish(b.id, CANCELLED) and not store.finish(b.id, SUCCEEDED)
    assert JobStore(tmp_path).get(b.id).state == CANCELLED  # a second connection sees it
    with pytest.raises(KeyError, match="no job 'nope'"):
        store.get("nope")


def test_ray_runner_without_ray_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(RunnerUnavailableError, match="set RAY_ADDRESS"):
        RayRunner()
    for name in ("ray", "ray.job_submission"):  # as if the package were not installed
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(RunnerUnavailableError, match=r'pip install "ray\[default\]"'):
        RayRunner(address="http://127.0.0.1:8265")
    m = JobManager(tmp_path, runner_options={"ray": {"address": "http://127.0.0.1:8265"}})
    with pytest.raises(RunnerUnavailableError, match="needs the ray package"):
        m.submit("sleep", {"steps": 1}, runner="ray")
    assert m.list() == []


def test_command_line_submits_follows_and_lists(tmp_path):
    from stvla_core.jobs.__main__ import main

    store = str(tmp_path / "jobs")
    assert (
        main(["--store", store, "submit", "sleep", "--config", '{"steps": 2, "seconds": 0.0}', "--wait"]) == 0
    )
    assert main(["--store", store, "submit", "sleep", "--config", '{"steps": 0}']) == 2
    assert main(["--store", store, "log", "nope"]) == 2
    [job] = JobStore(store).list()
    assert job.state == SUCCEEDED and job.config == {"steps": 2, "seconds": 0.0}
