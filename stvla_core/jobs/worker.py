"""The entry point a job process runs: `python -m stvla_core.jobs.worker JOB_ID --store PATH`.

It loads the job from the store, runs its kind's function, writes `result.json` atomically and
then marks the job succeeded; any exception marks it failed with the traceback in the log; SIGTERM
marks it cancelled. stdout/stderr are the job's log file (the runner opens it).

A watcher thread owns the job's end, so it does not depend on the process that asked for it:
- a cancel request (`cancel.json` in the job folder, written by `JobStore.request_cancel` from
  the app or the command line) makes it send SIGTERM to the job's process group, and SIGKILL
  after the request's grace period if the job has not stopped; both are logged and the job ends
  cancelled with the exit code of what stopped it (143 for SIGTERM, -9 for SIGKILL);
- with `--owner PID:TOKEN` it watches the process that started it and, once that is gone, marks
  the job failed and stops its whole process group: a job does not outlive the app that runs it.
"""

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
    append_log,
    process_alive,
    read_cancel_request,
)

WATCH_POLL_S = 0.1


class Cancelled(BaseException):
    """Raised in the job's main thread by SIGTERM; a BaseException so jobs' `except Exception`
    blocks do not swallow it."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Cancelled()


def _signal_group(sig: signal.Signals) -> None:
    """`sig` to this process and its children: the whole group when we lead it (the local runner
    starts each worker in its own session), else this process alone (e.g. under Ray)."""
    if os.getpgrp() == os.getpid():
        os.killpg(os.getpgrp(), sig)
    else:
        os.kill(os.getpid(), sig)


def watch(
    job_id: str, store: JobStore, owner: int | None, token: int | None, started: threading.Event
) -> None:
    """The watcher thread (a daemon: it ends with the process). Polls for a cancel request (acted
    on once the job's function runs: `started`; run_job handles one that came earlier) and, with
    an owner, for the owner's end; acts on whichever comes first."""
    folder = store.job_dir(job_id)
    while True:
        request = read_cancel_request(folder) if started.is_set() else None
        if request is not None:
            carry_out_cancel(job_id, store, float(request.get("grace_s", 5.0)))
            return
        if owner is not None and not process_alive(owner, token):
            owner_gone(job_id, store, owner)
            return
        time.sleep(WATCH_POLL_S)


def carry_out_cancel(job_id: str, store: JobStore, grace_s: float) -> None:
    """SIGTERM to the job; if it has not ended `grace_s` later, record that and SIGKILL it. Exiting
    normally (the main thread handles SIGTERM, run_job) ends the process and this thread."""
    log = store.job_dir(job_id) / LOG_NAME
    sys.stdout.flush()
    append_log(log, f"sending SIGTERM to the job (pid {os.getpid()})")
    _signal_group(signal.SIGTERM)
    time.sleep(grace_s)
    if store.get(job_id).state != RUNNING:  # it ended meanwhile (its exit is on the way)
        return
    append_log(log, f"no exit {grace_s:g} s after SIGTERM; sending SIGKILL")
    error = f"cancelled by the user; the job ignored SIGTERM for {grace_s:g} s and was killed with SIGKILL"
    # Recorded before the kill, since nothing runs after it in this process.
    if store.finish(job_id, CANCELLED, error=error, exit_code=-9, from_states=(RUNNING,)):
        sys.stdout.flush()
        _signal_group(signal.SIGKILL)


def owner_gone(job_id: str, store: JobStore, owner: int) -> None:
    """Fail the job (if still running) and kill this process group."""
    why = f"the app process (pid {owner}) that ran this job stopped, so the job was stopped with it"
    sys.stdout.flush()
    store.finish(job_id, FAILED, error=why, exit_code=-9, from_states=(RUNNING,))  # logs the reason
    _signal_group(signal.SIGKILL)


def parse_owner(text: str) -> tuple[int, int | None]:
    pid, _, token = text.partition(":")
    return int(pid), (int(token) or None) if token else None


def run_job(job_id: str, store: JobStore, started: threading.Event | None = None) -> int:
    """Runs one job in this process; returns the process exit code. `started` is set once the
    job's function is about to run (the watcher's cue that a cancel can now be carried out)."""
    job = store.get(job_id)
    log = logging.getLogger(f"stvla.job.{job_id}")
    if job.state == QUEUED:  # runners claim the job before starting us; started by hand, we claim it
        store.claim(job_id)
        job = store.get(job_id)
    if job.state != RUNNING:
        log.info("job %s is %s; nothing to run", job_id, job.state)
        return 0
    if store.cancel_request(job_id) is not None:  # cancelled between the claim and this start
        store.finish(job_id, CANCELLED, error="cancelled by the user before it started", exit_code=0)
        return 0
    store.set_process(job_id, os.getpid(), store.get(job_id).runner_ref)
    log.info("worker pid %d running %s job %s", os.getpid(), job.kind, job_id)
    began = time.time()
    if started is not None:
        started.set()
    try:
        kind = get_kind(job.kind)
        config = kind.parse_config(job.config)
        ctx = JobContext(job_id, job.dir, log, lambda f, m="": store.set_progress(job_id, f, m))
        result = kind.function()(config, ctx)
        if not isinstance(result, dict):
            raise TypeError(f"job kind {job.kind!r} returned {type(result).__name__}, expected a dict")
        atomic_write_json(job.dir / RESULT_NAME, result)
    except Cancelled:
        log.info("cancelled (SIGTERM) after %.1f s", time.time() - began)
        asked = store.cancel_request(job_id) is not None
        error = "cancelled by the user" if asked else "stopped by a SIGTERM from outside the job system"
        store.finish(job_id, CANCELLED, error=error, exit_code=143)
        return 143
    except BaseException as e:
        traceback.print_exc()
        sys.stderr.flush()
        store.finish(job_id, FAILED, error=f"{type(e).__name__}: {e}", exit_code=1)
        return 1
    log.info("finished in %.1f s", time.time() - began)
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
    owner, token = parse_owner(args.owner) if args.owner else (None, None)
    started = threading.Event()
    threading.Thread(
        target=watch, args=(args.job_id, store, owner, token, started), name="watch", daemon=True
    ).start()
    try:
        return run_job(args.job_id, store, started)
    finally:
        sys.stdout.flush()
        store.close()


if __name__ == "__main__":
    sys.exit(main())
