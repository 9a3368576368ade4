"""Shared test fixtures: small synthetic episodes whose every pixel is known, and a Ray cluster
on loopback for the tests of the Ray job runner and shard executor."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from stvla_core.episodes import Episode


def textured(h: int, w: int, seed: int = 0) -> np.ndarray:
    """(h, w) uint8 smooth random texture LK can lock on to."""
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 1.5)
    noise = (noise - noise.min()) / (noise.max() - noise.min())
    return (noise * 255).astype(np.uint8)


def translating_episode(
    t: int = 24, h: int = 64, w: int = 80, dx: float = 1.0, dy: float = 0.0, name: str = "translate"
) -> Episode:
    """Frames of a texture shifted by (dx, dy) px per frame (content moves right/down), with a
    depth ramp 0.5..2.0 m left to right and ground-truth points that move with the texture."""
    tex = textured(h + 80, w + 80)
    frames = []
    for k in range(t):
        m = np.float32([[1, 0, dx * k - 40], [0, 1, dy * k - 40]])
        g = cv2.warpAffine(tex, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        frames.append(np.repeat(g[..., None], 3, axis=2))
    depth = np.tile(np.linspace(0.5, 2.0, w, dtype=np.float32)[None, None], (t, h, 1))
    start = np.array([[20.0, 20.0], [40.0, 30.0], [30.0, 45.0]], np.float32)
    gt = np.stack([start + np.float32([dx * k, dy * k]) for k in range(t)]).astype(np.float32)
    vis = (gt[..., 0] >= 0) & (gt[..., 0] <= w - 1) & (gt[..., 1] >= 0) & (gt[..., 1] <= h - 1)
    actions = np.zeros((t, 7), np.float32)
    actions[:, 0] = dx * 0.01
    return Episode(
        frames=np.stack(frames),
        depth=depth,
        actions=actions,
        gt_points=gt,
        gt_visible=vis,
        instruction="follow the texture",
        name=name,
    )


@pytest.fixture
def translating() -> Episode:
    return translating_episode()


@dataclass(frozen=True)
class RayCluster:
    gcs: str  # host:port, what drivers (ray.init, the shard executor) connect to
    dashboard: str  # http://host:port, what Ray Jobs (the job runner) submit to


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    """A one-node Ray cluster for the session: `ray start --head --block` on 127.0.0.1 with 2 CPUs,
    a dashboard for Ray Jobs and its own ports (another cluster on the machine is left alone);
    SIGTERM to that command stops every process of the cluster."""
    from ray.job_submission import JobSubmissionClient

    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray's socket paths are limited
    ports = {
        name: str(_free_port())
        for name in (
            "dashboard-port",
            "ray-client-server-port",
            "dashboard-agent-listen-port",
            "dashboard-agent-grpc-port",
        )
    }
    command = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block", "--port", "0"]
    command += [
        "--node-ip-address",
        "127.0.0.1",
        "--dashboard-host",
        "127.0.0.1",
        "--include-dashboard",
        "true",
    ]
    command += ["--num-cpus", "2", "--num-gpus", "0", "--object-store-memory", str(100 * 2**20)]
    command += ["--temp-dir", str(temp), "--disable-usage-stats"]
    command += [arg for name, port in ports.items() for arg in (f"--{name}", port)]
    log = open(temp / "ray-start.log", "wb")  # open for the whole session
    # Ray 2.5x turns token authentication on for a new head once ~/.ray/auth_token exists (any
    # earlier local `ray.init()` writes one), and clients that were not told so send no token: the
    # test cluster says which mode it runs in rather than depend on the home folder.
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    head = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    dashboard = f"http://127.0.0.1:{ports['dashboard-port']}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if head.poll() is not None:
                raise RuntimeError(
                    f"ray start exited with {head.returncode}: {(temp / 'ray-start.log').read_text()}"
                )
            address_file = temp / "ray_current_cluster"
            try:
                if address_file.exists():
                    JobSubmissionClient(dashboard)
                    break
            except (ConnectionError, RuntimeError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the Ray head did not come up in 180 s: {(temp / 'ray-start.log').read_text()}"
                )
            time.sleep(1.0)
        yield RayCluster(address_file.read_text().strip(), dashboard)
    finally:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(60)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="session")
def vulkan() -> None:
    """Skips a simulator test where ManiSkill cannot render. Probed once, in a child process: a
    driver problem can abort the interpreter."""
    import importlib.util

    if importlib.util.find_spec("mani_skill") is None:
        pytest.skip("mani_skill is not installed")
    probe = "import sapien; sapien.render.RenderSystem()"
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or [f"exit code {r.returncode}"])[-1]
        pytest.skip(f"no Vulkan device for SAPIEN ({last}); install mesa-vulkan-drivers >= 24.3")
