"""Training run folders, shared by fine-tuning and full training: one process per folder, complete
checkpoints marked by a COMPLETE file (written last, so a killed run never leaves one that loads
half-written), and a metrics.jsonl that a killed run may have cut mid-line."""

from __future__ import annotations

import fcntl
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

COMPLETE = "COMPLETE"


class RunInUseError(RuntimeError):
    """Another process is training in the same run folder."""


@contextmanager
def locked_run_dir(run_dir: str | Path) -> Iterator[Path]:
    """Hold the folder's lock (it dies with its holder, kill -9 included) and clear temporaries a
    killed process left behind."""
    root = Path(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunInUseError(f"run_dir {root} is in use by another training process") from None
        for stale in [*root.glob(".tmp-*"), *(root / "checkpoints").glob(".tmp-*")]:
            shutil.rmtree(stale, ignore_errors=True)
        yield root


def complete_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoint folders, oldest first; half-written ones (no COMPLETE) are skipped."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.glob("step_*") if p.is_dir() and (p / COMPLETE).is_file()]
    return sorted(found, key=lambda p: int(p.name.split("_")[1]))


def read_metrics(path: Path, upto: int) -> list[dict[str, Any]]:
    """The rows of metrics.jsonl up to step `upto` (a resumed run drops the later ones)."""
    rows = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # the last line of a killed run may be cut
                continue
            if row.get("step", upto + 1) <= upto:
                rows.append(row)
    return rows
