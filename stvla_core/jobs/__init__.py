"""Long-running work (evaluation, fine-tuning) as jobs: one folder per job indexed by a SQLite
file (rebuilt from the folders when damaged), one worker process per job, a queue with a
concurrency limit, cancel, recovery after restarts, and an optional Ray runner for scale-out."""

from stvla_core.jobs.files import atomic_directory, atomic_write_json, atomic_write_text
from stvla_core.jobs.kinds import JOB_KINDS, JobConfigError, JobContext, JobKind, get_kind, register_kind
from stvla_core.jobs.manager import JobManager
from stvla_core.jobs.runner import RUNNERS, JobRunner, LocalRunner, RayRunner, RunnerUnavailableError
from stvla_core.jobs.store import (
    CANCELLED,
    FAILED,
    QUEUED,
    RUNNING,
    STATES,
    SUCCEEDED,
    TERMINAL,
    Job,
    JobNotFoundError,
    JobStateError,
    JobStore,
    JobStoreVersionError,
)

__all__ = [
    "CANCELLED",
    "FAILED",
    "JOB_KINDS",
    "QUEUED",
    "RUNNERS",
    "RUNNING",
    "STATES",
    "SUCCEEDED",
    "TERMINAL",
    "Job",
    "JobConfigError",
    "JobContext",
    "JobKind",
    "JobManager",
    "JobNotFoundError",
    "JobRunner",
    "JobStateError",
    "JobStore",
    "JobStoreVersionError",
    "LocalRunner",
    "RayRunner",
    "RunnerUnavailableError",
    "atomic_directory",
    "atomic_write_json",
    "atomic_write_text",
    "get_kind",
    "register_kind",
]
