"""The job store: one folder per job (`<root>/<id>/`: job.json, config.json, log.txt, results) and
an index over them in one SQLite file (WAL), `<root>/jobs.sqlite`.

The app, the job manager and every worker process open the same file, each with its own
connection, so state and progress survive restarts of any of them. State changes are conditional
updates (`... WHERE state IN (...)`), so a worker finishing after a cancel cannot undo the cancel.

The folders are the source of truth: every state change also rewrites the folder's job.json
(atomically, inside the same transaction). Opening a store checks the index (SQLite's integrity
check, the schema version, every row's JSON); a damaged index is moved aside and rebuilt from the
folders, and folders missing from a sound index are added back, each time with a warning in
`JobStore.warnings`. An index written by a newer app (a newer schema) raises
`JobStoreVersionError` and is left untouched. See repair.py."""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stvla_core.jobs.files import atomic_write_json
from stvla_core.jobs.repair import (
    CONFIG_NAME,
    JOB_FILE,
    LOG_NAME,
    check_database,
    describe_non_file,
    job_folders,
    row_from_folder,
    set_aside,
    write_job_file,
)
from stvla_core.jobs.repair import RESULT_NAME as RESULT_NAME  # re-exported: workers write it
from stvla_core.jobs.repair import JobStoreVersionError as JobStoreVersionError

QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
TERMINAL = (SUCCEEDED, FAILED, CANCELLED)

DB_NAME = "jobs.sqlite"
LOCK_NAME = ".jobs.lock"  # held while the index is checked or rebuilt
CANCEL_NAME = "cancel.json"  # a cancel request, carried out by the worker's owner (worker.py)

_SCHEMA_VERSION = 1
_DAMAGE = ("SQLITE_CORRUPT", "SQLITE_NOTADB")  # errors that mean the file itself is damaged
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    config      TEXT NOT NULL,
    state       TEXT NOT NULL,
    runner      TEXT NOT NULL,
    runner_ref  TEXT NOT NULL DEFAULT '',
    progress    REAL NOT NULL DEFAULT 0,
    message     TEXT NOT NULL DEFAULT '',
    error       TEXT NOT NULL DEFAULT '',
    pid         INTEGER,
    pid_start   INTEGER,
    exit_code   INTEGER,
    created_at  REAL NOT NULL,
    started_at  REAL,
    finished_at REAL,
    result      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class JobNotFoundError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


class JobStateError(RuntimeError):
    """An operation that the job's current state does not allow (e.g. reading a failed job's
    result)."""


@dataclass(frozen=True)
class Job:
    """One row of the store. Times are UNIX seconds; `result` is the result file's name inside the
    job folder, set only once the result was written completely."""

    id: str
    kind: str
    config: dict[str, Any]
    state: str
    runner: str
    runner_ref: str
    progress: float
    message: str
    error: str
    pid: int | None
    pid_start: int | None
    exit_code: int | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    result: str
    dir: Path

    @property
    def log_path(self) -> Path:
        return self.dir / LOG_NAME

    @property
    def result_path(self) -> Path | None:
        return self.dir / self.result if self.result else None

    @property
    def done(self) -> bool:
        return self.state in TERMINAL

    @property
    def duration(self) -> float | None:
        if self.started_at is None:
            return None
        return (self.finished_at or time.time()) - self.started_at


def new_job_id() -> str:
    """Sortable by creation time and readable in a table: `20260101-120000-a1b2c3`."""
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def process_start_token(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux /proc), stored beside the pid so a
    recycled pid is not mistaken for the job's process. None where /proc is unavailable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


def process_alive(pid: int | None, start_token: int | None = None) -> bool:
    """True while `pid` runs and is the same process (start token) and not a zombie."""
    if pid is None:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: fall back to a signal-0 probe
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return False
    return start_token is None or int(fields[19]) == start_token


def read_cancel_request(folder: Path) -> dict[str, Any] | None:
    """The job's pending cancel request ({"requested_at": UNIX s, "grace_s": s}), or None."""
    try:
        request = json.loads((folder / CANCEL_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return request if isinstance(request, dict) else None


def append_log(path: Path, line: str) -> None:
    """Append a line stamped by the job system (not by the job) to a job log."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(f"[stvla-jobs {stamp}] {line}\n")


class JobStore:
    """Jobs on disk under `root`. Safe to use from several threads and processes at once.

    `warnings` lists what opening the store had to repair (shown by the app's Jobs tab)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.db_path = self.root / DB_NAME
        self.warnings: list[str] = []
        self._local = threading.local()
        self._verified: tuple[int, int] | None = None
        self._verify_lock = threading.Lock()
        self.verify()

    # -- checking and repairing the index -------------------------------------------------
    def verify(self) -> list[str]:
        """Check the index; move a damaged one aside and rebuild it from the job folders; add
        folders missing from it. Runs when the store is opened and whenever the file was replaced
        since (e.g. by another process's repair). Returns this check's warnings."""
        with self._verify_lock, _exclusive(self.root / LOCK_NAME):
            problem = describe_non_file(self.db_path)
            if problem is None:
                try:
                    problem = self._check()
                except sqlite3.DatabaseError as e:
                    if e.sqlite_errorname not in _DAMAGE:
                        raise  # busy, locked, read-only, disk full: not the file's fault
                    problem = f"SQLite cannot read it: {e}"
            if problem is None:
                new = self._index_folders()
            else:
                aside = set_aside(self.db_path)
                count, notes = self._rebuild()
                new = [
                    f"the job index {self.db_path} was damaged ({problem}); it was moved aside to "
                    f"{aside.name} (kept) and rebuilt from {count} job folder(s){notes}"
                ]
            self._verified = _identity(self.db_path)
        self.warnings += new
        return new

    def _check(self) -> str | None:
        con = sqlite3.connect(self.db_path, timeout=30.0, isolation_level=None)
        try:
            problem = check_database(con, _SCHEMA_VERSION)
            if problem is None:
                _create_schema(con)
            return problem
        finally:
            con.close()

    def _index_folders(self) -> list[str]:
        """Add job folders that the (sound) index lacks, e.g. after it was emptied or deleted;
        write job.json into folders from before it existed."""
        con = _connect(self.db_path)
        try:
            with _Transaction(con):
                known = {r[0]: r for r in con.execute("SELECT * FROM jobs")}
                added, notes = [], []
                for folder in job_folders(self.root):
                    if folder.name in known:
                        if not (folder / JOB_FILE).exists():
                            write_job_file(folder, dict(known[folder.name]))
                        continue
                    row, note = row_from_folder(folder)
                    _insert(con, row)
                    added.append(folder.name)
                    if note:
                        notes.append(folder.name)
                        write_job_file(folder, row)
        finally:
            con.close()
        if not added:
            return []
        shown = ", ".join(added[:5]) + (f" and {len(added) - 5} more" if len(added) > 5 else "")
        return [
            f"the job index {self.db_path} did not list {len(added)} job folder(s) found on disk (it was "
            f"new, emptied or truncated); they were added back from their folders: {shown}"
            f"{_legacy_note(notes)}"
        ]

    def _rebuild(self) -> tuple[int, str]:
        """A new index from the job folders, written beside the old name and renamed into place."""
        tmp = self.db_path.with_name(DB_NAME + ".rebuild")
        for stale in (tmp, tmp.with_name(tmp.name + "-journal")):
            stale.unlink(missing_ok=True)
        con = sqlite3.connect(tmp, isolation_level=None)
        notes = []
        try:
            _create_schema(con)
            folders = job_folders(self.root)
            with _Transaction(con):
                for folder in folders:
                    row, note = row_from_folder(folder)
                    _insert(con, row)
                    if note:
                        notes.append(folder.name)
                        write_job_file(folder, row)
        finally:
            con.close()
        os.replace(tmp, self.db_path)
        return len(folders), _legacy_note(notes)

    # -- connection -------------------------------------------------------------------------
    def _con(self) -> sqlite3.Connection:
        """This thread's connection, reopened (after a check) when the file was replaced."""
        ident = _identity(self.db_path)
        local = self._local
        con = getattr(local, "con", None)
        if con is None or getattr(local, "pid", None) != os.getpid() or local.ident != ident:
            if ident is None or ident != self._verified:
                self.verify()
                ident = self._verified
            if con is not None and local.pid == os.getpid():
                con.close()
            con = _connect(self.db_path)
            local.con, local.pid, local.ident = con, os.getpid(), ident
        return con

    def _tx(self) -> _Transaction:
        return _Transaction(self._con())

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None

    # -- reading ----------------------------------------------------------------------------
    def job_dir(self, job_id: str) -> Path:
        return self.root / job_id

    def _row_to_job(self, row: sqlite3.Row) -> Job:
        d = dict(row)
        d["config"] = json.loads(d["config"])
        return Job(**d, dir=self.job_dir(d["id"]))

    def get(self, job_id: str) -> Job:
        row = self._con().execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFoundError(f"no job {job_id!r} in {self.db_path}")
        return self._row_to_job(row)

    def list(self, states: tuple[str, ...] | None = None, kind: str | None = None) -> list[Job]:
        """Newest first."""
        sql, args = "SELECT * FROM jobs WHERE 1=1", []
        if states is not None:
            sql += f" AND state IN ({','.join('?' * len(states))})"
            args += list(states)
        if kind is not None:
            sql += " AND kind = ?"
            args.append(kind)
        rows = self._con().execute(sql + " ORDER BY created_at DESC, id DESC", args).fetchall()
        return [self._row_to_job(r) for r in rows]

    def count(self, state: str) -> int:
        return self._con().execute("SELECT COUNT(*) FROM jobs WHERE state = ?", (state,)).fetchone()[0]

    def read_log(self, job_id: str, tail_chars: int | None = None) -> str:
        path = self.get(job_id).log_path
        if not path.exists():
            return ""
        text = path.read_text(encoding="utf-8", errors="replace")
        return text if tail_chars is None else text[-tail_chars:]

    def read_result(self, job_id: str) -> dict[str, Any]:
        """The result of a succeeded job; a clear error for any other state."""
        job = self.get(job_id)
        if job.state != SUCCEEDED or job.result_path is None:
            detail = f": {job.error}" if job.error else ""
            raise JobStateError(f"job {job_id} has no result: state is {job.state!r}{detail}")
        return json.loads(job.result_path.read_text(encoding="utf-8"))

    def cancel_request(self, job_id: str) -> dict[str, Any] | None:
        return read_cancel_request(self.job_dir(job_id))

    # -- writing ----------------------------------------------------------------------------
    def _update(self, job_id: str, sql: str, args: tuple[Any, ...]) -> bool:
        """One conditional UPDATE of a job's row; when it changed the row, the folder's job.json
        is rewritten in the same transaction (so writers keep it in the index's order)."""
        with self._tx() as con:
            changed = con.execute(sql, args).rowcount == 1
            if changed:
                row = con.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
                write_job_file(self.job_dir(job_id), dict(row))
        return changed

    def create(self, kind: str, config: dict[str, Any], runner: str = "local") -> Job:
        job_id = new_job_id()
        text = json.dumps(config, sort_keys=True)
        folder = self.job_dir(job_id)
        row = {
            "id": job_id,
            "kind": kind,
            "config": text,
            "state": QUEUED,
            "runner": runner,
            "runner_ref": "",
            "progress": 0.0,
            "message": "",
            "error": "",
            "pid": None,
            "pid_start": None,
            "exit_code": None,
            "created_at": time.time(),
            "started_at": None,
            "finished_at": None,
            "result": "",
        }
        # In the write transaction: a store being opened meanwhile never finds the folder unindexed.
        with self._tx() as con:
            folder.mkdir(parents=True)
            (folder / CONFIG_NAME).write_text(text + "\n", encoding="utf-8")
            append_log(folder / LOG_NAME, f"job {job_id} ({kind}) queued for the {runner} runner")
            _insert(con, row)
            write_job_file(folder, row)
        return self.get(job_id)

    def claim(self, job_id: str) -> bool:
        """queued -> running; False when another manager claimed it first or it was cancelled."""
        return self._update(
            job_id,
            "UPDATE jobs SET state = ?, started_at = ?, message = 'starting' WHERE id = ? AND state = ?",
            (RUNNING, time.time(), job_id, QUEUED),
        )

    def set_process(self, job_id: str, pid: int | None = None, runner_ref: str = "") -> None:
        token = process_start_token(pid) if pid is not None else None
        self._update(
            job_id,
            "UPDATE jobs SET pid = ?, pid_start = ?, runner_ref = ? WHERE id = ?",
            (pid, token, runner_ref, job_id),
        )

    def set_progress(self, job_id: str, progress: float, message: str = "") -> None:
        """Progress goes to the index only (job.json gets it with the next state change)."""
        progress = min(max(float(progress), 0.0), 1.0)
        with self._tx() as con:
            con.execute(
                "UPDATE jobs SET progress = ?, message = ? WHERE id = ? AND state = ?",
                (progress, message, job_id, RUNNING),
            )

    def request_cancel(self, job_id: str, grace_s: float) -> None:
        """Ask a running job's worker to stop: SIGTERM, then SIGKILL after `grace_s`. Whoever owns
        the worker carries it out (worker.py's watcher; the manager as a backstop), so the request
        survives the process that made it. The job stays running until its worker has stopped."""
        atomic_write_json(
            self.job_dir(job_id) / CANCEL_NAME, {"requested_at": time.time(), "grace_s": grace_s}
        )
        with self._tx() as con:
            con.execute(
                "UPDATE jobs SET message = 'cancelling' WHERE id = ? AND state = ?", (job_id, RUNNING)
            )
        append_log(
            self.job_dir(job_id) / LOG_NAME, f"cancel requested (SIGTERM, then SIGKILL after {grace_s:g} s)"
        )

    def finish(
        self,
        job_id: str,
        state: str,
        *,
        error: str = "",
        result: str = "",
        exit_code: int | None = None,
        from_states: tuple[str, ...] = (QUEUED, RUNNING),
    ) -> bool:
        """Move a job to a terminal state if it is still in one of `from_states`; returns whether
        it moved. A reason for failures and cancels is also appended to the job log."""
        if state not in TERMINAL:
            raise ValueError(f"finish: expected one of {TERMINAL}, found {state!r}")
        moved = self._update(
            job_id,
            f"UPDATE jobs SET state = ?, error = ?, result = ?, exit_code = ?, finished_at = ?,"
            f" progress = CASE WHEN ? = '{SUCCEEDED}' THEN 1.0 ELSE progress END"
            f" WHERE id = ? AND state IN ({','.join('?' * len(from_states))})",
            (state, error, result, exit_code, time.time(), state, job_id, *from_states),
        )
        if moved:
            reason = f": {error}" if error else ""
            append_log(self.job_dir(job_id) / LOG_NAME, f"job {state}{reason}")
        return moved

    def finish_gone(self, job: Job, gone: str, exit_code: int | None = None) -> bool:
        """A running job whose worker is `gone` (e.g. "worker process (pid 7) killed by SIGKILL")
        without reporting: cancelled when a cancel was requested, else failed."""
        if self.cancel_request(job.id) is not None:
            state, error = CANCELLED, f"cancelled by the user; {gone}"
        else:
            state, error = FAILED, f"{gone} without reporting a result"
        return self.finish(job.id, state, error=error, exit_code=exit_code, from_states=(RUNNING,))

    def recover(self, start_grace_s: float = 60.0) -> list[Job]:
        """After a restart: every running job whose process is gone is marked failed (cancelled
        if a cancel was pending), with the reason in its log. Jobs whose process still runs are
        left running (their worker keeps reporting and finishes them). Jobs of other runners (Ray)
        are left to their runner, and jobs claimed less than `start_grace_s` ago without a pid yet
        to the manager starting them. Returns the jobs so marked."""
        ended = []
        for job in self.list(states=(RUNNING,)):
            if job.runner != "local" or process_alive(job.pid, job.pid_start):
                continue
            if job.pid is None and time.time() - (job.started_at or 0.0) < start_grace_s:
                continue
            who = f"its process (pid {job.pid})" if job.pid else "it never started a process"
            if self.finish_gone(job, f"found running after a restart, but {who} is gone"):
                ended.append(self.get(job.id))
        return ended


def _legacy_note(ids: list[str]) -> str:
    if not ids:
        return ""
    return (
        f"; {len(ids)} folder(s) had no readable {JOB_FILE} and were read from {CONFIG_NAME} and "
        f"{LOG_NAME} ({', '.join(ids[:5])})"
    )


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _connect(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    con.row_factory = sqlite3.Row
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    return con


def _create_schema(con: sqlite3.Connection) -> None:
    """Tables of a new index (idempotent); a new file also records the app version writing it."""
    from stvla_core import __version__

    con.executescript(_SCHEMA)  # executescript commits on its own
    con.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('app_version', ?)", (__version__,))
    con.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")


def _insert(con: sqlite3.Connection, row: dict[str, Any]) -> None:
    names = list(row)
    con.execute(
        f"INSERT INTO jobs ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
        [row[n] for n in names],
    )


@contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """An exclusive lock between processes (flock) on `path`."""
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class _Transaction:
    """`BEGIN IMMEDIATE ... COMMIT` on an autocommit connection: writers queue instead of failing."""

    def __init__(self, con: sqlite3.Connection) -> None:
        self.con = con

    def __enter__(self) -> sqlite3.Connection:
        if self.con.in_transaction:
            # Left open by a signal handler that raised (the worker's SIGTERM -> Cancelled) after
            # BEGIN but before the `with` body: nothing of it was written, so it is dropped, and
            # the write that follows (the cancel being recorded) still happens.
            self.con.execute("ROLLBACK")
        self.con.execute("BEGIN IMMEDIATE")
        return self.con

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.con.execute("ROLLBACK" if exc_type else "COMMIT")
