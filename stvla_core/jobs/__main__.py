"""Command line for the job store (the same store the app uses).

  python -m stvla_core.jobs --store runs/jobs submit sleep --config '{"steps": 3}' [--wait] [--runner ray]
  python -m stvla_core.jobs --store runs/jobs list
  python -m stvla_core.jobs --store runs/jobs log JOB_ID
  python -m stvla_core.jobs --store runs/jobs cancel JOB_ID [--grace-s 5] [--no-wait]
  python -m stvla_core.jobs --store runs/jobs serve        # start queued jobs until none is left

A submitted job's process outlives this command; queued jobs beyond `--max-concurrent` start
when a manager (the app, `serve`, or another `submit`) polls the store. `cancel` leaves a request
that the job's worker carries out itself (SIGTERM, then SIGKILL after the grace period), so it
completes even if this command is interrupted; by default the command waits to report the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from stvla_core.jobs.kinds import JOB_KINDS, JobConfigError
from stvla_core.jobs.manager import JobManager
from stvla_core.jobs.runner import RunnerUnavailableError
from stvla_core.jobs.store import QUEUED, RUNNING, JobNotFoundError, JobStoreVersionError
from stvla_core.registry import UnknownNameError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m stvla_core.jobs", description=__doc__.split("\n")[0])
    p.add_argument("--store", required=True, help="job store folder")
    p.add_argument("--max-concurrent", type=int, default=1)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("submit", help=f"queue a job; kinds: {', '.join(JOB_KINDS.names())}")
    s.add_argument("kind")
    s.add_argument("--config", default="{}", help="JSON object")
    s.add_argument("--runner", default=None, help="local (default) or ray")
    s.add_argument("--wait", action="store_true", help="follow progress until the job ends")
    sub.add_parser("list", help="all jobs, newest first")
    for name in ("log", "show"):
        sub.add_parser(name).add_argument("job_id")
    c = sub.add_parser("cancel", help="stop a queued or running job")
    c.add_argument("job_id")
    c.add_argument("--grace-s", type=float, default=5.0, help="seconds between SIGTERM and SIGKILL")
    c.add_argument("--no-wait", action="store_true", help="return once the request is recorded")
    sub.add_parser("serve", help="poll until no job is queued or running")
    return p


def _follow(m: JobManager, job_id: str) -> int:
    last = None
    while True:
        m.poll()
        job = m.get(job_id)
        line = f"{job.state} {100 * job.progress:5.1f}% {job.message}"
        if line != last:
            print(line, flush=True)
            last = line
        if job.done:
            if job.error:
                print(f"error: {job.error}", file=sys.stderr)
            return 0 if job.state == "succeeded" else 1
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        grace = {"local": {"grace_s": args.grace_s}} if args.command == "cancel" else None
        m = JobManager(args.store, max_concurrent=args.max_concurrent, runner_options=grace)
        for warning in m.store.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        for job in m.recovered:
            print(f"recovered: {job.id} marked failed ({job.error})", file=sys.stderr)
        if args.command == "submit":
            job = m.submit(args.kind, json.loads(args.config), runner=args.runner)
            print(job.id)
            return _follow(m, job.id) if args.wait else 0
        if args.command == "list":
            print(m.table().to_string(index=False))
        elif args.command == "log":
            print(m.log(args.job_id), end="")
        elif args.command == "cancel":
            job = m.cancel(args.job_id, wait_s=0.0 if args.no_wait else args.grace_s + 5.0)
            print(job.state if job.done else f"{job.state} ({job.message}: the worker stops it)")
            if job.done and job.error:
                print(job.error)
        elif args.command == "show":
            job = m.get(args.job_id)
            print(json.dumps({**job.__dict__, "dir": str(job.dir)}, indent=2, default=str))
        elif args.command == "serve":
            while m.list(states=(QUEUED, RUNNING)):
                m.poll()
                time.sleep(0.5)
    except (
        JobConfigError,
        JobNotFoundError,
        UnknownNameError,
        RunnerUnavailableError,
        JobStoreVersionError,
        json.JSONDecodeError,
    ) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
