"""The job manager the app holds: submit (validated), a queue with a concurrency limit, cancel,
and recovery of jobs left running by an earlier app process."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from stvla_core.jobs.kinds import get_kind
from stvla_core.jobs.runner import RUNNERS, JobRunner
from stvla_core.jobs.store import CANCELLED, QUEUED, RUNNING, Job, JobStore, append_log

log = logging.getLogger(__name__)
TABLE_COLUMNS = ["id", "kind", "state", "progress", "message", "runner", "created", "seconds", "error"]


class JobManager:
    """Jobs in `root` (a `JobStore`). `poll()` reaps finished workers and starts queued jobs while
    fewer than `max_concurrent` run; call it from a UI timer, or `start_background()`.

    `runner_options` go to runner constructors by runner name, e.g. {"ray": {"address": ...}};
    runners are built on first use, so a missing optional runner only fails jobs that ask for it."""

    def __init__(
        self,
        root: str | Path,
        max_concurrent: int = 1,
        default_runner: str = "local",
        runner_options: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent: expected >= 1, found {max_concurrent}")
        RUNNERS.get(default_runner)  # unknown names fail here, listing the valid ones
        self.store = JobStore(root)
        self.max_concurrent = max_concurrent
        self.default_runner = default_runner
        self.runner_options = runner_options or {}
        self._runners: dict[str, JobRunner] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.recovered = self.store.recover()
        self.poll()

    def runner(self, name: str) -> JobRunner:
        with self._lock:
            if name not in self._runners:
                self._runners[name] = RUNNERS.create(name, **self.runner_options.get(name, {}))
            return self._runners[name]

    # -- user actions -----------------------------------------------------------------------
    def submit(self, kind: str, config: dict[str, Any] | None = None, runner: str | None = None) -> Job:
        """Validate the config against the kind (JobConfigError on bad input; nothing is stored)
        and queue the job; it starts at once if a slot is free."""
        config = {} if config is None else config
        get_kind(kind).parse_config(config)
        config = dict(config)
        runner = runner or self.default_runner
        self.runner(runner)  # a runner that cannot work here fails now, not in the queue
        job = self.store.create(kind, config, runner=runner)
        self.poll()
        return self.store.get(job.id)

    def cancel(self, job_id: str, wait_s: float = 0.0) -> Job:
        """A queued job is dropped at once. A running one gets a cancel request that the owner of
        its worker carries out (runner.py: SIGTERM, then SIGKILL), so it completes without this
        process; the job stays running until its worker has stopped, then ends cancelled. Waits
        up to `wait_s` for that. A finished job is left as it is."""
        with self._lock:
            job = self.store.get(job_id)
            if job.done:
                return job
            if self.store.finish(job_id, CANCELLED, error="cancelled by the user", from_states=(QUEUED,)):
                return self.store.get(job_id)
            self.runner(job.runner).cancel(self.store.get(job_id), self.store)
        deadline = time.monotonic() + wait_s
        while True:
            self.poll()
            job = self.store.get(job_id)
            if job.done or time.monotonic() >= deadline:
                return job
            time.sleep(0.05)

    def get(self, job_id: str) -> Job:
        return self.store.get(job_id)

    def list(self, states: tuple[str, ...] | None = None) -> list[Job]:
        return self.store.list(states)

    def log(self, job_id: str, tail_chars: int | None = None) -> str:
        return self.store.read_log(job_id, tail_chars)

    def result(self, job_id: str) -> dict[str, Any]:
        return self.store.read_result(job_id)

    def table(self, states: tuple[str, ...] | None = None) -> pd.DataFrame:
        """One row per job, newest first, for a jobs table in the UI."""
        rows = [
            {
                "id": j.id,
                "kind": j.kind,
                "state": j.state,
                "progress": round(100 * j.progress, 1),
                "message": j.message,
                "runner": j.runner,
                "created": datetime.fromtimestamp(j.created_at, UTC).strftime("%Y-%m-%d %H:%M:%S"),
                "seconds": None if j.duration is None else round(j.duration, 1),
                "error": j.error,
            }
            for j in self.store.list(states)
        ]
        return pd.DataFrame(rows, columns=TABLE_COLUMNS)

    # -- scheduling -------------------------------------------------------------------------
    def poll(self) -> None:
        with self._lock:
            for job in self.store.list(states=(RUNNING,)):
                try:
                    self.runner(job.runner).check(job, self.store)
                except Exception as e:  # a runner that cannot be reached must not stop the queue
                    append_log(job.log_path, f"could not check the job: {type(e).__name__}: {e}")
            free = self.max_concurrent - self.store.count(RUNNING)
            for job in reversed(self.store.list(states=(QUEUED,))):  # oldest first
                if free <= 0:
                    break
                if not self.store.claim(job.id):
                    continue
                free -= 1
                try:
                    self.runner(job.runner).start(self.store.get(job.id), self.store)
                except Exception as e:
                    self.store.finish(job.id, "failed", error=f"could not start: {type(e).__name__}: {e}")

    def wait(self, job_id: str, timeout: float = 60.0, interval: float = 0.05) -> Job:
        """Poll until the job is finished; TimeoutError naming its state otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            job = self.store.get(job_id)
            if job.done:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job.state} after {timeout:g} s")
            time.sleep(interval)

    def start_background(self, interval: float = 0.5) -> None:
        """A daemon thread that calls `poll()` every `interval` seconds until `stop()`."""
        if self._thread is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.poll()
                except sqlite3.DatabaseError as e:  # damaged since it was opened: check, repair
                    log.warning("job store: %s; checking the index", e)
                    for warning in self.store.verify():
                        log.warning("job store: %s", warning)
                except Exception:  # the loop must outlive one bad poll
                    log.exception("job store: poll failed")

        self._thread = threading.Thread(target=loop, name="stvla-jobs", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
