"""Start the real app (`python app.py`) in a subprocess on a free local port, for the client and
browser tests; stops it (and only it) afterwards."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "assets" / "episodes"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch_app(*args: str, jobs_dir: Path, timeout: float = 90.0) -> tuple[subprocess.Popen, str]:
    """Starts `python app.py` on a free port with its job store in `jobs_dir`; returns the process
    and its URL once it answers HTTP (the caller stops it with `stop_app`)."""
    port = free_port()
    env = dict(
        os.environ,
        GRADIO_ANALYTICS_ENABLED="False",
        PYTHONUNBUFFERED="1",
        STVLA_JOBS_DIR=str(jobs_dir),
        STVLA_POLICY=os.environ.get(
            "STVLA_POLICY", "tiny"
        ),  # tests of the app, not of the policy: the fast one
    )
    artifacts = REPO / "test-artifacts"
    with open(artifacts / f"app-{port}.log", "w") if artifacts.is_dir() else open(os.devnull, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port), *args],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/"
    end = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"app exited with code {proc.returncode} before serving {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            pass
        if time.monotonic() > end:
            stop_app(proc)
            raise RuntimeError(f"app did not answer on {url} within {timeout:.0f} s")
        time.sleep(0.3)


def stop_app(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def running_app(*args: str, timeout: float = 90.0, jobs_dir: Path | None = None) -> Iterator[str]:
    """Yields the app's URL once it answers HTTP. Its job store is `jobs_dir`, else a temporary
    folder (never the repository's own `jobs/`)."""
    with tempfile.TemporaryDirectory(prefix="stvla-jobs-") as scratch:
        proc, url = launch_app(*args, jobs_dir=jobs_dir or Path(scratch), timeout=timeout)
        try:
            yield url
        finally:
            stop_app(proc)
