"""Generate the demonstration dataset: the scripted Panda expert over consecutive training seeds
of each task, successful demonstrations only, written as one LeRobot v3.0 dataset.

Seeds: training demonstrations use seeds from `TRAIN_SEED_START` (0) up; closed-loop evaluation
uses seeds from `EVAL_SEED_START` (100000) up (`stvla_core.sim.tasks`), so the two never meet.
Shard k of a task holds the successful demonstrations among seeds [k * shard_size, (k+1) *
shard_size); shards are recorded in parallel processes, whole shards are kept until a task has
`episodes_per_task` successes, so the dataset does not depend on the number of workers. A
re-run with the same settings skips the shards already written (resumable)."""

from __future__ import annotations

import itertools
import json
import math
import multiprocessing as mp
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stvla_core.data.lerobot_writer import LeRobotWriter
from stvla_core.sim.expert import STATE_NAMES, Perturbation, Recorder, expert_task
from stvla_core.sim.tasks import EVAL_SEED_START, TRAIN_SEED_START, task_spec

DEFAULT_TASKS = ("PickCube-v1", "PushCube-v1", "PullCube-v1")
MAX_SHARDS_PER_TASK = 100  # one task index holds shard ids [task * 100, task * 100 + 100)


@dataclass
class GenerateConfig:
    out: str
    tasks: list[str] = field(default_factory=lambda: list(DEFAULT_TASKS))
    episodes_per_task: int = 200
    shard_size: int = 25
    workers: int = 2
    crf: int = 23  # H.264 quality of the RGB videos (lower is closer to lossless)
    max_frames: int = 120
    # first training seed: a second dataset from a later seed_start adds demonstrations unseen by the first
    seed_start: int = TRAIN_SEED_START
    # DART-style demonstrations (`stvla_core.sim.expert.Perturbation`): noise of this scale (m per
    # axis) on a fraction of the executed actions, the expert's corrections recorded
    perturb_m: float = 0.0
    perturb_prob: float = 0.0

    @property
    def perturbation(self) -> Perturbation:
        return Perturbation(self.perturb_m, self.perturb_prob)

    def validate(self) -> None:
        self.tasks = [expert_task(t) for t in self.tasks]
        self.perturbation.validate()
        last = self.seed_start + MAX_SHARDS_PER_TASK * self.shard_size
        if self.seed_start < TRAIN_SEED_START or last > EVAL_SEED_START:
            raise ValueError(
                f"seed_start: seeds [{self.seed_start}, {last}) must stay in the training range "
                f"[{TRAIN_SEED_START}, {EVAL_SEED_START})"
            )
        if not self.tasks:
            raise ValueError("tasks: expected at least one task")
        for name in ("episodes_per_task", "shard_size", "workers", "max_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, found {getattr(self, name)}")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"crf: expected 0..51, found {self.crf}")
        sizes = {task_spec(t).image_size for t in self.tasks}
        fps = {task_spec(t).control_freq for t in self.tasks}
        if len(sizes) > 1 or len(fps) > 1:
            raise ValueError(f"tasks must share one image size and control rate, found {sizes} and {fps}")


_RECORDERS: dict[tuple[str, Perturbation, int], Recorder] = {}


def _shard_seeds(shard: int, size: int, start: int) -> range:
    k = shard % MAX_SHARDS_PER_TASK
    return range(start + k * size, start + (k + 1) * size)


def _record_shard(args: tuple[dict[str, Any], str, int]) -> tuple[int, int, int]:
    """Worker: record one shard, write it; returns (shard, successes, attempts)."""
    cfg, task, shard = args
    config = GenerateConfig(**cfg)
    spec = task_spec(task)
    writer = LeRobotWriter(config.out, spec.camera, spec.control_freq, spec.image_size, config.crf)
    key = (task, config.perturbation, config.max_frames)
    if key not in _RECORDERS:
        _RECORDERS[key] = Recorder(task, max_frames=config.max_frames, perturbation=config.perturbation)
    rec = _RECORDERS[key]
    kept, failed = [], []
    seeds = _shard_seeds(shard, config.shard_size, config.seed_start)
    for seed in seeds:
        episode, state = rec.record_with_state(seed)
        if episode.metadata["success"] and not episode.metadata["truncated"]:
            kept.append((episode, state))
        else:
            failed.append(seed)
    if kept:
        writer.write_shard(
            shard, kept, {"task": task, "seeds": [seeds.start, seeds.stop], "failed_seeds": failed}
        )
    else:  # nothing to write: remember the failures anyway
        writer.staging.mkdir(parents=True, exist_ok=True)
        (writer.staging / f"shard-{shard:03d}.empty.json").write_text(json.dumps({"failed_seeds": failed}))
    return shard, len(kept), len(seeds)


def _written(args: tuple[dict[str, Any], str, int]) -> tuple[int, int, int] | None:
    """(shard, successes, attempts) of a shard an earlier, interrupted run already wrote."""
    cfg, _, shard = args
    staging = Path(cfg["out"]) / ".shards"
    for name in (f"shard-{shard:03d}.json", f"shard-{shard:03d}.empty.json"):
        if (staging / name).is_file():
            data = json.loads((staging / name).read_text())
            kept = len(data.get("episodes", []))
            return shard, kept, kept + len(data.get("report", data).get("failed_seeds", []))
    return None


def generate(config: GenerateConfig, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Record and write the dataset; returns the expert's per-task success summary."""
    config.validate()
    spec = task_spec(config.tasks[0])
    out = Path(config.out)
    if (out / "meta" / "info.json").exists():
        raise FileExistsError(f"{out} already holds a dataset (meta/info.json); choose a new folder")
    writer = LeRobotWriter(out, spec.camera, spec.control_freq, spec.image_size, config.crf)
    successes = {t: 0 for t in config.tasks}
    attempts = {t: 0 for t in config.tasks}
    done: dict[str, list[int]] = {t: [] for t in config.tasks}
    next_shard = {t: 0 for t in config.tasks}
    start = time.perf_counter()
    ctx = mp.get_context("spawn")
    with ctx.Pool(config.workers) as pool:
        while True:
            todo = []
            for ti, task in enumerate(config.tasks):
                need = config.episodes_per_task - successes[task]
                # enough shards for the remaining successes at the rate seen so far (or 1:1 at first)
                rate = successes[task] / attempts[task] if attempts[task] else 1.0
                n = math.ceil(need / max(rate, 0.05) / config.shard_size) if need > 0 else 0
                for _ in range(n):
                    k = next_shard[task]
                    if k >= MAX_SHARDS_PER_TASK:
                        raise RuntimeError(
                            f"{task}: the expert succeeded too rarely ({successes[task]}/{attempts[task]})"
                        )
                    next_shard[task] += 1
                    todo.append((asdict(config), task, ti * MAX_SHARDS_PER_TASK + k))
            if not todo:
                break
            earlier = [w for w in map(_written, todo) if w is not None]
            fresh = [t for t in todo if _written(t) is None]
            for shard, ok, tried in itertools.chain(earlier, pool.imap_unordered(_record_shard, fresh)):
                task = config.tasks[shard // MAX_SHARDS_PER_TASK]
                successes[task] += ok
                attempts[task] += tried
                if ok:
                    done[task].append(shard)
                progress(
                    f"{task} shard {shard % MAX_SHARDS_PER_TASK}: {ok}/{tried} succeeded; "
                    f"{successes[task]} demonstrations so far ({time.perf_counter() - start:.0f} s)"
                )
    expert = {
        t: {
            "successes": successes[t],
            "attempts": attempts[t],
            "success_rate": round(successes[t] / attempts[t], 4),
            "seeds": [config.seed_start, config.seed_start + next_shard[t] * config.shard_size],
        }
        for t in config.tasks
    }
    shards = [s for t in config.tasks for s in sorted(done[t])]
    info = writer.finish(
        shards,
        STATE_NAMES,
        {
            "stvla": {
                "generator": "python -m stvla_core.data generate",
                "config": asdict(config),
                "expert": expert,
                "train_seeds": f"[{TRAIN_SEED_START}, {EVAL_SEED_START})",
                "eval_seeds": f"[{EVAL_SEED_START}, ...) are never recorded here",
                "setup": {t: _setup(t) for t in config.tasks},
                "seconds": round(time.perf_counter() - start, 1),
            }
        },
    )
    return info["stvla"]


def _setup(task: str) -> dict[str, Any]:
    s = task_spec(task)
    cam = s.camera_setup
    return {
        "instruction": s.instruction,
        "camera": s.camera,
        "camera_setup": asdict(cam) if cam else None,
        "image_size": s.image_size,
        "control_mode": s.control_mode,
        "control_freq": s.control_freq,
        "max_steps": s.max_steps,
        "shown": list(s.shown),
    }
