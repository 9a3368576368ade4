"""The entry point a job process runs: `python -m stvla_core.jobs.worker JOB_ID --store PATH`.

It loads the job from the store, runs its kind's function, writes `result.json` atomically and
then marks the job succeeded; any exception marks it failed with the traceback in the log; SIGTERM
(cancel) marks it cancelled. stdout/stderr are the job's log file (the runner opens it). With
`--owner PID:TOKEN` it watches the process that started it and, once that is gone, marks the job
failed and stops its whole process group: a job does not outlive the app that runs it."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
import traceback

from stvla_core.jobs.files import atomic_write_json
from stvla_core.jobs.kinds import JobContext, get_kind
from stvla_core.jobs.store import (
    CANCELLED,
    FAILED,
    LOG_NAME,
    QUEUED,
    RESULT_NAME,
    RUNNING,
    SUCCEEDED,
    JobStore,
    process_alive,
)

OWNER_POLL_S = 0.5


class Cancelled(BaseException):
    """Raised in the job's main thread by SIGTERM; a BaseException so jobs' `except Exception`
    blocks do not swallow it."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Cancelled()


def watch_owner(job_id: str, store_root: str, owner: int, token: int | None) -> None:
    """Block until `owner` is gone, then fail the job (if still running) and kill this process
    group. Runs in a daemon thread with its own store connection."""
    while process_alive(owner, token):
        time.sleep(OWNER_POLL_S)
    store = JobStore(store_root)
    why = f"the app process (pid {owner}) that ran this job stopped, so the job was stopped with it"
    sys.stdout.flush()
    store.finish(job_id, FAILED, error=why, exit_code=-9, from_states=(RUNNING,))  # logs the reason
    store.close()
    if os.getpgrp() == os.getpid():  # our own session (the local runner): take the children too
        os.killpg(os.getpgrp(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def parse_owner(text: str) -> tuple[int, int | None]:
    pid, _, token = text.partition(":")
    return int(pid), (int(token) or None) if token else None


def run_job(job_id: str, store: JobStore) -> int:
    """Runs one job in this process; returns the process exit code."""
    job = store.get(job_id)
    log = logging.getLogger(f"stvla.job.{job_id}")
    if job.state == QUEUED:  # runners claim the job before starting us; started by hand, we claim it
        store.claim(job_id)
        job = store.get(job_id)
    if job.state != RUNNING:
        log.info("job %s is %s; nothing to run", job_id, job.state)
        return 0
    store.set_process(job_id, os.getpid(), store.get(job_id).runner_ref)
    log.info("worker pid %d running %s job %s", os.getpid(), job.kind, job_id)
    started = time.time()
    try:
        kind = get_kind(job.kind)
        config = kind.parse_config(job.config)
        ctx = JobContext(job_id, job.dir, log, lambda f, m="": store.set_progress(job_id, f, m))
        result = kind.function()(config, ctx)
        if not isinstance(result, dict):
            raise TypeError(f"job kind {job.kind!r} returned {type(result).__name__}, expected a dict")
        atomic_write_json(job.dir / RESULT_NAME, result)
    except Cancelled:
        log.info("cancelled (SIGTERM) after %.1f s", time.time() - started)
        store.finish(job_id, CANCELLED, error="cancelled while running", exit_code=143)
        return 143
    except BaseException as e:
        traceback.print_exc()
        sys.stderr.flush()
        store.finish(job_id, FAILED, error=f"{type(e).__name__}: {e}", exit_code=1)
        return 1
    log.info("finished in %.1f s", time.time() - started)
    store.finish(job_id, SUCCEEDED, result=RESULT_NAME, exit_code=0)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("job_id")
    parser.add_argument("--store", required=True, help="folder of the job store")
    parser.add_argument(
        "--log-to-job",
        action="store_true",
        help="append stdout/stderr to the job's log.txt (runners that do not redirect them, e.g. Ray)",
    )
    parser.add_argument(
        "--owner",
        default=None,
        help="PID[:START_TOKEN] of the process that started the job: the job stops when it is gone",
    )
    args = parser.parse_args(argv)
    store = JobStore(args.store)
    if args.log_to_job:
        fd = os.open(store.job_dir(args.job_id) / LOG_NAME, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stdout,
        format="%(asctime)s %(levelname)s %(message)s",
        force=True,
    )
    signal.signal(signal.SIGTERM, _on_sigterm)
    if args.owner:
        owner, token = parse_owner(args.owner)
        threading.Thread(
            target=watch_owner, args=(args.job_id, args.store, owner, token), name="owner", daemon=True
        ).start()
    try:
        return run_job(args.job_id, store)
    finally:
        sys.stdout.flush()
        store.close()


if __name__ == "__main__":
    sys.exit(main())
