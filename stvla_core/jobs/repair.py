"""Checking the job index (`jobs.sqlite`) and rebuilding it from the job folders.

The folders are the source of truth: each holds `job.json` (the job's row, rewritten atomically on
every state change), `config.json`, `log.txt` and its results. The database is an index over them
that makes listing, queueing and conditional state changes cheap; when it is damaged it is moved
aside (kept, for inspection) and rebuilt from the folders."""

from __future__ import annotations

import json
import os
import re
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stvla_core.jobs.files import atomic_write_json

JOB_FILE = "job.json"
CONFIG_NAME = "config.json"
LOG_NAME = "log.txt"
RESULT_NAME = "result.json"
JOB_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{6}$")
COLUMNS = (
    "id",
    "kind",
    "config",
    "state",
    "runner",
    "runner_ref",
    "progress",
    "message",
    "error",
    "pid",
    "pid_start",
    "exit_code",
    "created_at",
    "started_at",
    "finished_at",
    "result",
)
_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
_QUEUED_LINE = re.compile(r"\] job (\S+) \((\S+)\) queued for the (\S+) runner$")
_END_LINE = re.compile(r"^\[stvla-jobs [^\]]*\] job (succeeded|failed|cancelled)(?:: (.*))?$")


class JobStoreVersionError(RuntimeError):
    """The job index was written by a newer version of the app (a newer schema); it is left as it
    is, and the message names the version that wrote it."""


def check_database(con: sqlite3.Connection, schema_version: int) -> str | None:
    """What is wrong with an open, existing job index, or None. Raises JobStoreVersionError for a
    newer schema and sqlite3.DatabaseError where SQLite cannot read the file at all."""
    version = con.execute("PRAGMA user_version").fetchone()[0]
    if version > schema_version:
        raise JobStoreVersionError(newer_schema_message(con, version, schema_version))
    problems = [r[0] for r in con.execute("PRAGMA integrity_check(5)").fetchall()]
    if problems != ["ok"]:
        return "integrity check: " + "; ".join(problems)
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if version == 0 and "jobs" not in tables:
        return None  # a new (or emptied) file: the schema is created and the folders indexed
    if "jobs" not in tables:
        return f"schema version {version} but no jobs table"
    columns = tuple(r[1] for r in con.execute("PRAGMA table_info(jobs)"))
    if columns != COLUMNS:
        return f"jobs table has columns {', '.join(columns)}; expected {', '.join(COLUMNS)}"
    for job_id, config, state in con.execute("SELECT id, config, state FROM jobs"):
        try:
            parsed = json.loads(config)
        except (json.JSONDecodeError, TypeError) as e:
            return f"job {job_id}: config is not valid JSON ({e})"
        if not isinstance(parsed, dict):
            return f"job {job_id}: config is a JSON {type(parsed).__name__}, expected an object"
        if state not in _STATES:
            return f"job {job_id}: unknown state {state!r}"
    return None


def newer_schema_message(con: sqlite3.Connection, version: int, schema_version: int) -> str:
    from stvla_core import __version__

    try:
        row = con.execute("SELECT value FROM meta WHERE key = 'app_version'").fetchone()
    except sqlite3.DatabaseError:
        row = None
    writer = f"ST-VLA Studio {row[0]}" if row else "a newer ST-VLA Studio (its version is not recorded)"
    return (
        f"the job store's index {con_path(con)} has schema version {version}, written by {writer}; "
        f"this ST-VLA Studio {__version__} reads schema version {schema_version} and leaves the file "
        "as it is. Use that version of the app for these jobs, or another job folder"
    )


def con_path(con: sqlite3.Connection) -> str:
    return next((r[2] for r in con.execute("PRAGMA database_list") if r[1] == "main"), "?")


def describe_non_file(path: Path) -> str | None:
    """Why `path` cannot be the database file (a folder, a socket...), or None when it is a regular
    file or absent."""
    if not path.exists() and not path.is_symlink():
        return None
    if path.is_file():
        return None
    if path.is_dir():
        return f"{path.name} is a folder, not a database file"
    if not path.exists():
        return f"{path.name} is a broken symbolic link"
    return f"{path.name} is not a regular file"


def set_aside(path: Path) -> Path:
    """Rename a damaged index (file or folder) and its -wal/-shm files to
    `jobs.sqlite.damaged-<UTC time>[-n]`; returns the new name of the main file."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    aside = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while aside.exists() or aside.is_symlink():
        n += 1
        aside = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    os.rename(path, aside)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            os.rename(side, aside.with_name(aside.name + suffix))
    return aside


def job_folders(root: Path) -> list[Path]:
    """The job folders under root (named like a job id and holding job.json or config.json)."""
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return []
    return sorted(
        Path(e.path)
        for e in entries
        if JOB_ID.match(e.name)
        and e.is_dir(follow_symlinks=False)
        and (Path(e.path, JOB_FILE).is_file() or Path(e.path, CONFIG_NAME).is_file())
    )


def job_record(row: dict[str, Any]) -> dict[str, Any]:
    """A row as job.json holds it (the config as a JSON object, not text)."""
    record = {c: row[c] for c in COLUMNS}
    if isinstance(record["config"], str):
        record["config"] = json.loads(record["config"])
    return record


def write_job_file(folder: Path, row: dict[str, Any]) -> None:
    atomic_write_json(folder / JOB_FILE, job_record(row))


def row_from_folder(folder: Path) -> tuple[dict[str, Any], str]:
    """The index row of a job folder and where it came from ("" from job.json, else a note).
    Folders written before job.json existed are read from config.json and the log's job-system
    lines; a state the log does not settle becomes failed, saying why."""
    try:
        record = json.loads((folder / JOB_FILE).read_text(encoding="utf-8"))
        return _validated(record, folder), ""
    except (OSError, ValueError, TypeError, KeyError) as e:
        why = f"{JOB_FILE}: {e}" if (folder / JOB_FILE).exists() else f"no {JOB_FILE}"
    return _row_from_log(folder), why


def _validated(record: dict[str, Any], folder: Path) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise TypeError(f"expected an object, found {type(record).__name__}")
    row = {c: record[c] for c in COLUMNS}
    if row["id"] != folder.name:
        raise ValueError(f"id {row['id']!r} is not the folder's name")
    if row["state"] not in _STATES:
        raise ValueError(f"unknown state {row['state']!r}")
    if not isinstance(row["config"], dict) or not isinstance(row["kind"], str):
        raise TypeError("config must be an object and kind a string")
    if not isinstance(row["created_at"], (int, float)):
        raise TypeError("created_at must be a number")
    row["config"] = json.dumps(row["config"], sort_keys=True)
    return row


def _row_from_log(folder: Path) -> dict[str, Any]:
    try:
        config = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    try:
        lines = (folder / LOG_NAME).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    kind, runner = "unknown", "local"
    for line in lines:
        if m := _QUEUED_LINE.search(line):
            kind, runner = m.group(2), m.group(3)
            break
    ends = [m for line in lines if (m := _END_LINE.match(line))]
    if ends:
        state, error = ends[-1].group(1), ends[-1].group(2) or ""
    else:
        state = "failed"
        error = (
            "state unknown: the job index was rebuilt and this folder's log does not say how the job ended"
        )
    created = datetime.strptime(folder.name[:15], "%Y%m%d-%H%M%S").replace(tzinfo=UTC).timestamp()
    succeeded = state == "succeeded" and (folder / RESULT_NAME).is_file()
    return {
        "id": folder.name,
        "kind": kind,
        "config": json.dumps(config if isinstance(config, dict) else {}, sort_keys=True),
        "state": state if state != "succeeded" or succeeded else "failed",
        "runner": runner,
        "runner_ref": "",
        "progress": 1.0 if succeeded else 0.0,
        "message": "",
        "error": error if state != "succeeded" or succeeded else f"no {RESULT_NAME} in the job folder",
        "pid": None,
        "pid_start": None,
        "exit_code": None,
        "created_at": created,
        "started_at": None,
        "finished_at": None,
        "result": RESULT_NAME if succeeded else "",
    }
