"""Ray for real, on the session's loopback cluster (conftest.ray_cluster): the Ray job runner
(success, failure, cancel, a worker killed under it) and sharded evaluation on Ray actors, from
this process and from inside a job that the Ray runner submitted."""

from __future__ import annotations

import os
import signal
import sys

import pytest
from test_evaluation import requires_vulkan
from test_jobs import LONG, wait_progress, wait_until

from stvla_core.evaluation import ClosedLoopConfig, evaluate_closed_loop
from stvla_core.evaluation.closed_loop import EVAL_SEED_START
from stvla_core.evaluation.executors import ExecutorUnavailableError, make_executor
from stvla_core.jobs import CANCELLED, FAILED, SUCCEEDED, JobManager

TINY = {"policy": "stvla", "policy_kwargs": {"checkpoint": "tiny"}}
OUTCOME = ["task", "episode", "seed", "instruction", "success", "success_at_end", "length"]


@pytest.fixture
def ray_jobs(tmp_path, ray_cluster):
    options = {"ray": {"address": ray_cluster.dashboard, "python": sys.executable}}
    return JobManager(tmp_path / "jobs", default_runner="ray", max_concurrent=3, runner_options=options)


@pytest.mark.slow
def test_ray_runner_runs_fails_and_cancels_jobs_on_the_cluster(ray_jobs):
    m = ray_jobs
    ok = m.submit("sleep", {"steps": 2, "seconds": 0.0})
    bad = m.submit("sleep", {"steps": 2, "seconds": 0.0, "fail_at": 1})
    long = m.submit("sleep", LONG)
    job = m.wait(ok.id, timeout=300)
    assert job.state == SUCCEEDED and job.runner_ref == f"stvla-{job.id}"
    assert m.result(ok.id) == {"steps": 2, "message": "sleeping"}
    assert "sleeping: step 2 of 2" in m.log(ok.id)  # the worker's output reaches the job log
    assert m.wait(bad.id, timeout=300).error == "RuntimeError: failing at step 1 as configured (fail_at=1)"
    wait_progress(m.store, long.id)
    assert m.cancel(long.id, wait_s=30).state == CANCELLED
    wait_until(lambda: "cancelled (SIGTERM)" in m.log(long.id), what="the Ray worker to stop")


@pytest.mark.slow
def test_a_killed_ray_worker_fails_its_job_and_keeps_the_log(ray_jobs):
    m = ray_jobs
    job = m.submit("sleep", LONG)
    running = wait_progress(m.store, job.id)
    os.kill(running.pid, signal.SIGKILL)  # the worker process inside the Ray job, not the job system
    job = m.wait(job.id, timeout=120)
    assert job.state == FAILED
    assert job.error == f"Ray job stvla-{job.id} ended FAILED without reporting to the store"
    log = m.log(job.id)
    assert "sleeping: step 1 of 100" in log  # what the worker wrote before it died
    assert f"Ray job stvla-{job.id} ended FAILED; its log follows" in log


def test_the_ray_executor_refuses_a_dashboard_address(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:8265")
    with pytest.raises(ExecutorUnavailableError, match=r"dashboard \(Ray Jobs\) address; .* \(HOST:6379\)"):
        make_executor("ray")


@pytest.mark.sim
@pytest.mark.slow
@requires_vulkan
def test_shards_on_ray_actors_play_the_same_episodes_as_one_process(tmp_path, ray_cluster, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", ray_cluster.gcs)
    base = {"tasks": ["PushCube-v1"], "episodes_per_task": 2, "max_steps": 5, "record_video": False, **TINY}
    one = evaluate_closed_loop(ClosedLoopConfig(**base, workers=1), tmp_path / "one")
    progress = []
    on_ray = evaluate_closed_loop(
        ClosedLoopConfig(**base, executor="ray", workers=2),
        tmp_path / "ray",
        progress=lambda f, m: progress.append(m),
    )
    assert [[e[k] for k in OUTCOME] for e in on_ray["episodes"]] == [
        [e[k] for k in OUTCOME] for e in one["episodes"]
    ]
    assert progress[-1] == "2/2 episodes"


@pytest.mark.sim
@pytest.mark.slow
@requires_vulkan
def test_a_comparison_job_on_the_ray_runner_shards_on_the_same_cluster(ray_jobs):
    config = {
        "tasks": ["PushCube-v1"],
        "episodes_per_task": 1,
        "max_steps": 3,
        "record_video": False,
        "executor": "ray",
        "workers": 2,
        "settings": [{"label": "zero", "policy": "zero"}, {"label": "random", "policy": "random"}],
    }
    job = ray_jobs.wait(ray_jobs.submit("evaluate_comparison", config).id, timeout=400)
    assert job.state == SUCCEEDED, ray_jobs.log(job.id)
    assert "Started a local Ray instance" not in ray_jobs.log(job.id)  # the job's cluster took the shards
    assert [row["setting"] for row in ray_jobs.result(job.id)["table"]] == ["zero", "random"]
    assert (job.dir / "random" / "episodes" / "PushCube-v1" / f"seed{EVAL_SEED_START}.json").exists()
