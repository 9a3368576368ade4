"""Where the shards of an evaluation run: `local` worker processes on this machine or `ray` actors
on a Ray cluster, behind one protocol and registry. An executor knows nothing of evaluation: it
calls a module-level function once per argument tuple, at most `workers` at a time, in processes
that live for the whole request (so each keeps its simulator and model between calls), and each
process uses one CPU thread, so N of them do not oversubscribe the cores."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from stvla_core.registry import Registry

REPO_ROOT = Path(__file__).resolve().parents[2]
POLL_S = 0.5
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


class ExecutorUnavailableError(RuntimeError):
    """An executor that cannot work here (e.g. `ray` without the package); says what to do."""


@runtime_checkable
class ShardExecutor(Protocol):
    name: str

    def run(self, fn: Callable[..., Any], calls: Sequence[tuple], poll: Callable[[], None]) -> None:
        """`fn(*args)` for every `args` in `calls`; `poll()` about every POLL_S while they run.
        Raises the first call's exception, after stopping the others."""


SHARD_EXECUTORS: Registry[ShardExecutor] = Registry("shard executor")


def one_thread_per_process() -> None:
    """Each shard process computes on one core: torch, OpenCV and BLAS default to all of them."""
    for name in THREAD_VARIABLES:
        os.environ[name] = "1"
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)


@SHARD_EXECUTORS.register("local")
class LocalProcesses:
    """`workers` spawned processes (0: one per CPU). Spawned, not forked: the caller may hold
    threads and a simulator. On an error, a cancel (SIGTERM in a job) or Ctrl-C the processes are
    terminated rather than waited for."""

    name = "local"

    def __init__(self, workers: int = 0, cpus: float = 1.0, gpus: float = 0.0) -> None:
        self.workers = workers or os.cpu_count() or 1

    def run(self, fn: Callable[..., Any], calls: Sequence[tuple], poll: Callable[[], None]) -> None:
        before = set(multiprocessing.active_children())
        pool = ProcessPoolExecutor(
            min(self.workers, len(calls)),
            mp_context=multiprocessing.get_context("spawn"),
            initializer=one_thread_per_process,
        )
        try:
            futures = [pool.submit(fn, *args) for args in calls]
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=POLL_S, return_when=FIRST_EXCEPTION)
                poll()
                for f in done:
                    f.result()  # raises the shard's exception
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            for p in set(multiprocessing.active_children()) - before:  # our pool's processes only
                p.terminate()
                p.join(5)


class _RayWorker:
    """A Ray actor: one process that runs calls one after another."""

    def __init__(self) -> None:
        one_thread_per_process()

    def call(self, fn: Callable[..., Any], args: tuple) -> Any:
        return fn(*args)


@SHARD_EXECUTORS.register("ray")
class RayActors:
    """`workers` Ray actors (0: as many as the cluster's CPUs hold at `cpus` each), each reserving
    `cpus` CPUs and `gpus` GPUs, fed one call at a time. Connects with `ray.init()` unless this
    process already is a Ray driver: inside a Ray job (the `ray` job runner) that is the job's
    cluster; elsewhere RAY_ADDRESS (the cluster's GCS address, host:6379), and without it a Ray
    instance started on this machine for the request. The arguments' paths must be visible to
    every node (the results folder on a shared file system, or a single-node cluster)."""

    name = "ray"

    def __init__(self, workers: int = 0, cpus: float = 1.0, gpus: float = 0.0) -> None:
        try:
            import ray
        except ImportError as e:
            raise ExecutorUnavailableError(
                f"the 'ray' shard executor needs the ray package ({e}); install it with "
                "`pip install \"ray[default]\"` or use the default 'local' executor"
            ) from None
        address = os.environ.get("RAY_ADDRESS", "")
        if address.startswith(("http://", "https://")) and not ray.is_initialized():
            raise ExecutorUnavailableError(
                f"RAY_ADDRESS={address} is a dashboard (Ray Jobs) address; the 'ray' shard executor "
                "connects as a driver: set RAY_ADDRESS to the cluster's GCS address (HOST:6379), or "
                "submit the evaluation as a job with the 'ray' job runner"
            )
        self.ray = ray
        self.workers, self.cpus, self.gpus = workers, cpus, gpus

    def run(self, fn: Callable[..., Any], calls: Sequence[tuple], poll: Callable[[], None]) -> None:
        ray = self.ray
        started = not ray.is_initialized()
        if started:
            ray.init(log_to_driver=False)  # the actors' own runtime_env adds to a Ray job's, not ray.init's
        workers = self.workers or max(1, int(ray.cluster_resources().get("CPU", 1) // max(self.cpus, 1e-9)))
        actor = ray.remote(_RayWorker).options(
            num_cpus=self.cpus, num_gpus=self.gpus, max_restarts=0, runtime_env=self._runtime_env()
        )
        actors = [actor.remote() for _ in range(min(workers, len(calls)))]
        queue = list(calls)
        running = {}
        try:
            for a in actors:
                running[a.call.remote(fn, queue.pop(0))] = a
            while running:
                done, _ = ray.wait(list(running), timeout=POLL_S)
                poll()
                for ref in done:
                    a = running.pop(ref)
                    ray.get(ref)  # raises the shard's exception (or the actor's death)
                    if queue:
                        running[a.call.remote(fn, queue.pop(0))] = a
        finally:
            for a in actors:
                ray.kill(a)
            if started:
                ray.shutdown()

    @staticmethod
    def _runtime_env() -> dict[str, Any]:
        env = {name: "1" for name in THREAD_VARIABLES}
        return {"env_vars": {**env, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}}


def make_executor(name: str, workers: int = 0, cpus: float = 1.0, gpus: float = 0.0) -> ShardExecutor:
    return SHARD_EXECUTORS.create(name, workers=workers, cpus=cpus, gpus=gpus)
