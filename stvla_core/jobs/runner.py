"""Job runners: where a job's worker process runs. `local` (default) starts a process on this
machine; `ray` submits the same worker command to a Ray cluster through Ray Jobs."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Protocol, runtime_checkable

from stvla_core.jobs.store import (
    CANCELLED,
    FAILED,
    LOG_NAME,
    Job,
    JobStore,
    append_log,
    process_alive,
    process_start_token,
)
from stvla_core.registry import Registry

REPO_ROOT = Path(__file__).resolve().parents[2]


class RunnerUnavailableError(RuntimeError):
    """A runner that cannot work here (e.g. `ray` without the package or a cluster address)."""


@runtime_checkable
class JobRunner(Protocol):
    name: str

    def start(self, job: Job, store: JobStore) -> None:
        """Start the worker for a claimed (running) job and record its pid or reference."""

    def check(self, job: Job, store: JobStore) -> None:
        """Called for running jobs: mark the job failed if its worker is gone without reporting."""

    def cancel(self, job: Job, store: JobStore) -> None:
        """Have the worker of a running job stopped; the job ends cancelled once it has."""


RUNNERS: Registry[JobRunner] = Registry("job runner")


def worker_command(
    job_id: str, store_root: Path, python: str = sys.executable, owner: int | None = None
) -> list[str]:
    """The worker's command line; with `owner` (a pid) the worker stops, marking its job failed,
    as soon as that process is gone."""
    cmd = [python, "-m", "stvla_core.jobs.worker", job_id, "--store", str(store_root)]
    if owner is not None:
        cmd += ["--owner", f"{owner}:{process_start_token(owner) or 0}"]
    return cmd


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


@RUNNERS.register("local")
class LocalRunner:
    """One process per job, in its own session (so cancel reaches its children), stdout/stderr to
    the job's log.

    Cancel writes a request into the job folder; the worker's own watcher carries it out (SIGTERM
    to its process group, SIGKILL `grace_s` later; worker.py), so it completes even when the
    process that asked (e.g. the command line) has exited. As a backstop for a worker too stuck to
    act (stopped, or holding the GIL in native code), `check` sends SIGKILL itself once
    `grace_s + backstop_s` have passed since the request, from whichever manager polls.

    With `bind_to_owner` (what the app uses) a job lives only as long as the process that started
    it: when that process dies, even by kill -9, the worker marks its job failed, says why in the
    log, and stops. Without it (the command line) a job outlives the command that submitted it,
    and a later manager adopts it."""

    name = "local"

    def __init__(self, grace_s: float = 5.0, bind_to_owner: bool = False, backstop_s: float = 10.0) -> None:
        self.grace_s = grace_s
        self.bind_to_owner = bind_to_owner
        self.backstop_s = backstop_s
        self._procs: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()

    def start(self, job: Job, store: JobStore) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        with open(job.dir / LOG_NAME, "ab") as log:
            proc = subprocess.Popen(
                worker_command(job.id, store.root, owner=os.getpid() if self.bind_to_owner else None),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=job.dir,
                env=env,
                start_new_session=True,
            )
        with self._lock:
            self._procs[job.id] = proc
        store.set_process(job.id, proc.pid)

    def _exit_code(self, job: Job) -> tuple[bool, int | None]:
        """(alive, exit code if known). Reaps our own children; others are checked by pid."""
        with self._lock:
            proc = self._procs.get(job.id)
        if proc is not None:
            code = proc.poll()
            if code is not None:
                with self._lock:
                    self._procs.pop(job.id, None)
            return code is None, code
        return process_alive(job.pid, job.pid_start), None

    def check(self, job: Job, store: JobStore) -> None:
        if job.pid is None:
            return  # claimed but not started yet (start() is in progress)
        alive, code = self._exit_code(job)
        if alive:
            self._backstop(job, store)
            return
        if code is not None and code < 0:
            why = f"killed by {_signal_name(code)}"
        elif code is not None:
            why = f"exited with code {code}"
        else:
            why = "ended"
        store.finish_gone(job, f"worker process (pid {job.pid}) {why}", exit_code=code)

    def _backstop(self, job: Job, store: JobStore) -> None:
        request = store.cancel_request(job.id)
        if request is None:
            return
        waited = time.time() - float(request.get("requested_at", 0.0))
        if waited < float(request.get("grace_s", self.grace_s)) + self.backstop_s:
            return
        if not process_alive(job.pid, job.pid_start):
            return
        append_log(
            job.log_path,
            f"the worker has not stopped {waited:.0f} s after the cancel request; "
            f"the job manager (pid {os.getpid()}) sends SIGKILL",
        )
        try:
            os.killpg(job.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def cancel(self, job: Job, store: JobStore) -> None:
        store.request_cancel(job.id, self.grace_s)

    def wait(self, job_id: str, timeout: float | None = None) -> None:
        """Reap our own child (tests and shutdown)."""
        with self._lock:
            proc = self._procs.get(job_id)
        if proc is not None:
            proc.wait(timeout)


_RAY_TERMINAL = {"FAILED": FAILED, "STOPPED": CANCELLED}


@RUNNERS.register("ray")
class RayRunner:
    """Submits `python -m stvla_core.jobs.worker JOB_ID --store ROOT --log-to-job` as a Ray Job.

    The worker writes progress, state and its log into the same store, so the store folder must
    be visible to the worker at the same path. Ray runs job entrypoints on the head node by
    default, so a store on the head node works as is (tested with a local Ray 2.60 cluster).
    `num_gpus`/`num_cpus` reserve resources for the worker, which lets Ray place it on another
    node; the store must then be on a shared file system, and SQLite's WAL mode does not support
    network file systems, so prefer the head node. When the worker never got to report (the Ray
    job failed to start, or the store is not visible), `check` copies Ray's status and logs into
    the store. Install with `pip install "ray[default]"`; the address comes from the argument or
    `RAY_ADDRESS` (e.g. http://head-node:8265)."""

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        python: str = "python",
        num_cpus: float | None = None,
        num_gpus: float | None = None,
    ) -> None:
        address = address or os.environ.get("RAY_ADDRESS")
        if not address:
            raise RunnerUnavailableError(
                "the 'ray' job runner needs a cluster address: set RAY_ADDRESS "
                "(e.g. http://127.0.0.1:8265) or pass address=..."
            )
        try:
            from ray.job_submission import JobSubmissionClient
        except ImportError as e:
            raise RunnerUnavailableError(
                f"the 'ray' job runner needs the ray package ({e}); install it with "
                "`pip install \"ray[default]\"` or use the default 'local' runner"
            ) from None
        self.address = address
        self.python = python
        # Reserving resources for the entrypoint lets Ray place the worker on a node that has them
        # (e.g. a GPU node for fine-tuning) instead of the head node.
        self.resources = {
            k: v for k, v in (("entrypoint_num_cpus", num_cpus), ("entrypoint_num_gpus", num_gpus)) if v
        }
        self.client = JobSubmissionClient(address)

    def start(self, job: Job, store: JobStore) -> None:
        submission_id = f"stvla-{job.id}"
        entrypoint = shlex.join([*worker_command(job.id, store.root, self.python), "--log-to-job"])
        self.client.submit_job(
            entrypoint=entrypoint,
            submission_id=submission_id,
            runtime_env={"env_vars": {"PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}},
            metadata={"stvla_job": job.id, "kind": job.kind},
            **self.resources,
        )
        store.set_process(job.id, None, runner_ref=submission_id)
        append_log(job.log_path, f"submitted to Ray at {self.address} as {submission_id}")

    def check(self, job: Job, store: JobStore) -> None:
        if not job.runner_ref:
            return
        status = str(self.client.get_job_status(job.runner_ref)).rsplit(".", 1)[-1]
        if status == "SUCCEEDED" and not (job.dir / "result.json").exists():
            status = "FAILED"  # the worker exited 0 but its result never reached the shared store
        if status in _RAY_TERMINAL:
            logs = self.client.get_job_logs(job.runner_ref)
            append_log(job.log_path, f"Ray job {job.runner_ref} ended {status}; its log follows")
            with open(job.log_path, "a", encoding="utf-8") as f:
                f.write(logs)
            store.finish(
                job.id,
                _RAY_TERMINAL[status],
                error=f"Ray job {job.runner_ref} ended {status} without reporting to the store",
                from_states=("running",),
            )

    def cancel(self, job: Job, store: JobStore) -> None:
        """Ray stops the job (SIGTERM, then SIGKILL) from its own job supervisor."""
        store.request_cancel(job.id, 5.0)
        if job.runner_ref:
            self.client.stop_job(job.runner_ref)
