"""Sharded closed-loop evaluation: one request (one or more runs, each a config and a results
folder) splits into shards of a few episodes of one task, which run in parallel on a shard
executor (`stvla_core.evaluation.executors`: local processes or Ray actors) and merge into each
run's `results.json` / `results.csv`, the same files a sequential run writes.

Every finished episode is a file, `<run>/episodes/<task>/seed<seed>.json`, written atomically
once its video is complete; so a killed evaluation resumes where it stopped (the episodes on disk
are kept, the rest run), a longer run of the same settings adds to a shorter one, and progress
across shards is the count of those files. `<run>/episodes/settings.json` records what decides an
episode's outcome (policy, its settings, step limit, camera, ...): a folder holding episodes of
other settings is refused rather than mixed. Each episode resets the env with its own seed and
the policy, so a shard's episodes do not depend on which others its process ran before: the same
seeds give the same episodes however the request is split (tests compare them)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from stvla_core.evaluation.closed_loop import (
    ClosedLoopConfig,
    EpisodeResult,
    check_task_assets,
    default_step_limit,
    make_env,
    play_episode,
    require_maniskill,
)
from stvla_core.evaluation.executors import make_executor
from stvla_core.evaluation.policies import Policy, make_policy
from stvla_core.evaluation.results import RESULTS_JSON, ResultsError, summarise_episodes, write_results
from stvla_core.jobs.files import atomic_write_json
from stvla_core.sim.tasks import task_spec

EPISODES_DIR = "episodes"
SETTINGS_NAME = "settings.json"
Run = tuple[ClosedLoopConfig, Path]
Progress = Callable[[float, str], None]


def episode_settings(config: ClosedLoopConfig) -> dict[str, Any]:
    """The config fields that decide what an episode of a given task and seed does."""
    keys = (
        "policy",
        "policy_kwargs",
        "max_steps",
        "image_size",
        "action_scale",
        "record_video",
        "render_backend",
    )
    return {k: getattr(config, k) for k in keys}


def episode_file(out_dir: Path, task: str, seed: int) -> Path:
    return out_dir / EPISODES_DIR / task / f"seed{seed}.json"


def claim_folder(config: ClosedLoopConfig, out_dir: Path) -> None:
    """Record the run's episode settings in `out_dir`, or check them against those recorded."""
    path = out_dir / EPISODES_DIR / SETTINGS_NAME
    wanted = json.loads(json.dumps(episode_settings(config)))  # as JSON reads it back
    if path.exists():
        found = json.loads(path.read_text())
        if found != wanted:
            diff = ", ".join(
                f"{k}: {found.get(k)!r} there, {wanted[k]!r} here"
                for k in wanted
                if found.get(k) != wanted[k]
            )
            raise ResultsError(
                f"{out_dir} holds episodes of another evaluation ({diff}); "
                f"choose another results folder or delete {out_dir / EPISODES_DIR}"
            )
        return
    atomic_write_json(path, wanted)


@dataclass(frozen=True)
class Shard:
    """Episodes `episodes` (indices k, seed = config.seed + k) of one task of run `run`."""

    run: int
    task: str
    episodes: tuple[int, ...]


def plan_shards(runs: Sequence[Run]) -> list[Shard]:
    """The episodes not yet on disk, in runs of at most `shard_episodes` consecutive episodes of
    one task, ordered run by run and task by task (so a process keeps its env and model long)."""
    shards = []
    for i, (config, out_dir) in enumerate(runs):
        for task in config.tasks:
            todo = [
                k
                for k in range(config.episodes_per_task)
                if not episode_file(out_dir, task, config.seed + k).exists()
            ]
            size = config.shard_episodes
            shards += [Shard(i, task, tuple(todo[j : j + size])) for j in range(0, len(todo), size)]
    return shards


# One process runs many shards: it keeps each task's env and the latest policy between them, since
# building an env (a few seconds) or loading a checkpoint costs as much as an episode.
_ENVS: dict[tuple[Any, ...], Any] = {}
_POLICY: dict[str, Policy] = {}


def _cached_env(task: str, config: ClosedLoopConfig) -> Any:
    key = (task, config.image_size, config.max_steps, config.render_backend)
    if key not in _ENVS:
        _ENVS[key] = make_env(task_spec(task), config)
    return _ENVS[key]


def _cached_policy(config: ClosedLoopConfig) -> Policy:
    key = json.dumps([config.policy, config.policy_kwargs], sort_keys=True)
    if key not in _POLICY:
        _POLICY.clear()  # one model in memory at a time
        _POLICY[key] = make_policy(config.policy, **config.policy_kwargs)
    return _POLICY[key]


def save_episode(out_dir: Path, result: EpisodeResult) -> None:
    atomic_write_json(episode_file(out_dir, result.task, result.seed), asdict(result))


def run_shard(config: ClosedLoopConfig, task: str, episodes: tuple[int, ...], out_dir: Path) -> None:
    """A shard process's work: the episodes, each written to its file as soon as it ends."""
    env, policy = _cached_env(task, config), _cached_policy(config)
    for k in episodes:
        save_episode(out_dir, play_episode(env, task, policy, config, k, out_dir))


def merge(config: ClosedLoopConfig, out_dir: Path) -> dict[str, Any]:
    """results.json / results.csv of the run from its episode files, tasks in config order."""
    episodes = []
    for task in config.tasks:
        for k in range(config.episodes_per_task):
            row = json.loads(episode_file(out_dir, task, config.seed + k).read_text())
            episodes.append({**row, "episode": k})
    results = {
        "config": asdict(config),
        "labels": config.labels(),
        "episodes": episodes,
        "summary": summarise_episodes(episodes),
    }
    write_results(out_dir, results)
    return results


def evaluate_runs(
    runs: Sequence[Run], policy: Policy | None = None, progress: Progress | None = None
) -> list[dict[str, Any]]:
    """Every run's missing episodes, then every run's results (list in the order of `runs`). The
    first run's execution settings (workers, executor, shard resources) apply to all. The shards
    run on the executor unless one process suffices (one shard, or one local worker) or `policy`
    is given (an object, which cannot be sent to other processes): then they run here, with
    progress reported within episodes too."""
    require_maniskill()
    for config, _ in runs:
        for task in config.tasks:
            check_task_assets(task)
    for config, out_dir in runs:
        claim_folder(config, out_dir)
    shards = plan_shards(runs)
    for i in {s.run for s in shards}:  # a folder with results.json is a complete run (results.py)
        (runs[i][1] / RESULTS_JSON).unlink(missing_ok=True)
    lead = runs[0][0]
    one_process = lead.executor == "local" and min(lead.workers or os.cpu_count() or 1, len(shards)) <= 1
    if policy is not None or (shards and one_process):
        _run_here(runs, shards, policy, progress)
    elif shards:
        executor = make_executor(lead.executor, lead.workers, lead.shard_cpus, lead.shard_gpus)
        calls = [(runs[s.run][0], s.task, s.episodes, runs[s.run][1]) for s in shards]
        executor.run(run_shard, calls, _file_counter(runs, shards, progress))
    return [merge(config, out_dir) for config, out_dir in runs]


def _total(runs: Sequence[Run]) -> int:
    return sum(len(config.tasks) * config.episodes_per_task for config, _ in runs)


def _file_counter(
    runs: Sequence[Run], shards: Sequence[Shard], progress: Progress | None
) -> Callable[[], None]:
    """A poll that reports episodes done (counted by their files) whenever the count changes."""
    total = _total(runs)
    todo = [episode_file(runs[s.run][1], s.task, runs[s.run][0].seed + k) for s in shards for k in s.episodes]
    before = total - len(todo)
    last = [-1]

    def poll() -> None:
        done = before + sum(p.exists() for p in todo)
        if progress is not None and done != last[0]:
            last[0] = done
            progress(done / total, f"{done}/{total} episodes")

    return poll


def _run_here(
    runs: Sequence[Run], shards: Sequence[Shard], policy: Policy | None, progress: Progress | None
) -> None:
    """The shards in this process: one env per task and run, one policy per run (or `policy`)."""
    total = _total(runs)
    done = total - sum(len(s.episodes) for s in shards)
    for i, (config, out_dir) in enumerate(runs):
        mine = [s for s in shards if s.run == i]
        if not mine:
            continue
        run_policy = policy if policy is not None else make_policy(config.policy, **config.policy_kwargs)
        prefix = f"{config.labels()['run']}: " if len(runs) > 1 else ""
        for task in dict.fromkeys(s.task for s in mine):
            env = make_env(task_spec(task), config)
            limit = config.max_steps or default_step_limit(task)
            try:
                for k in (k for s in mine if s.task == task for k in s.episodes):
                    label = f"{prefix}{task} episode {k + 1}/{config.episodes_per_task}"
                    on_step = _step_reporter(progress, done, total, limit, label)
                    save_episode(out_dir, play_episode(env, task, run_policy, config, k, out_dir, on_step))
                    done += 1
                    if progress is not None:
                        progress(done / total, label)
            finally:
                env.close()


def _step_reporter(
    progress: Progress | None, episodes_done: int, total: int, limit: int, label: str
) -> Callable[[int], None] | None:
    """Progress within an episode, every 10 steps (each report is a write to the job store)."""
    if progress is None:
        return None

    def on_step(t: int) -> None:
        if t % 10 == 0:
            progress((episodes_done + t / limit) / total, f"{label}, step {t}")

    return on_step
