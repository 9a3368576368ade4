"""Job kinds: a name -> (function, config dataclass), both given as import paths so that the app
process can list and validate kinds without importing the simulator or the model.

Adding a kind is one registration, e.g. fine-tuning:

    register_kind(JobKind("finetune", "stvla_core.finetune.job:run", "stvla_core.finetune.config:FinetuneConfig"))

The function is called in the job's own process as `fn(config, ctx) -> dict`, where `config` is an
instance of the config dataclass and `ctx` a `JobContext`; the returned dict (JSON-serialisable)
becomes the job's `result.json`, written atomically."""

from __future__ import annotations

import dataclasses
import importlib
import logging
import signal
import time
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stvla_core.registry import Registry


class JobConfigError(ValueError):
    """A job's config is not valid for its kind; the message names the kind, the field, the
    expected and the found."""


@dataclass
class JobContext:
    """What a running job may use: its folder for outputs, a logger writing to its log, and a
    progress callback that the UI shows."""

    job_id: str
    dir: Path
    log: logging.Logger
    report: Callable[[float, str], None]

    def progress(self, fraction: float, message: str = "") -> None:
        self.report(fraction, message)


@dataclass(frozen=True)
class JobKind:
    name: str
    target: str  # "module:function"
    config: str  # "module:DataclassName"
    description: str = ""

    def function(self) -> Callable[[Any, JobContext], dict[str, Any]]:
        return _import(self.target)

    def config_class(self) -> type:
        return _import(self.config)

    def parse_config(self, config: dict[str, Any]) -> Any:
        """The config dataclass built from a JSON dict, with clear errors for unknown, missing
        and mistyped fields and for whatever the dataclass's own `__post_init__` rejects."""
        return config_from_dict(self.config_class(), config, where=f"job kind {self.name!r}")


JOB_KINDS: Registry[JobKind] = Registry("job kind")


def register_kind(kind: JobKind) -> JobKind:
    JOB_KINDS.register(kind.name)(lambda: kind)
    return kind


def get_kind(name: str) -> JobKind:
    return JOB_KINDS.create(name)


def _import(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


_SIMPLE = {int: (int,), float: (int, float), str: (str,), bool: (bool,)}


def _check_type(value: Any, tp: Any) -> bool:
    """A shallow check of JSON values against simple annotations; unknown annotations pass."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_check_type(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp in _SIMPLE:
        return isinstance(value, _SIMPLE[tp]) and not (tp is not bool and isinstance(value, bool))
    if origin in (list, tuple) or tp in (list, tuple):
        args = typing.get_args(tp)
        item = args[0] if args else None
        return isinstance(value, (list, tuple)) and (item is None or all(_check_type(v, item) for v in value))
    if origin is dict or tp is dict:
        return isinstance(value, dict)
    return True


def config_from_dict(cls: type, data: dict[str, Any], where: str = "config") -> Any:
    if not isinstance(data, dict):
        raise JobConfigError(f"{where}: expected a dict config, found {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise JobConfigError(
            f"{where}: unknown config field(s) {', '.join(unknown)}; expected some of {', '.join(fields)}"
        )
    hints = typing.get_type_hints(cls)
    for name, value in data.items():
        if not _check_type(value, hints[name]):
            raise JobConfigError(
                f"{where}: field {name!r} expected {_type_name(hints[name])}, found {value!r}"
            )
    missing = [
        n
        for n, f in fields.items()
        if n not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
    ]
    if missing:
        raise JobConfigError(f"{where}: missing required config field(s) {', '.join(missing)}")
    values = {k: tuple(v) if typing.get_origin(hints[k]) is tuple else v for k, v in data.items()}
    try:
        return cls(**values)
    except (ValueError, TypeError) as e:
        raise JobConfigError(f"{where}: {e}") from None


def _type_name(tp: Any) -> str:
    if typing.get_args(tp):  # list[str], int | None: their repr is the readable spelling
        return str(tp).replace("typing.", "")
    return getattr(tp, "__name__", None) or str(tp)


# -- a kind for testing the job system itself -----------------------------------------------
@dataclass
class SleepConfig:
    """`steps` steps of `seconds` each, reporting progress; `fail_at` raises at that step;
    `ignore_sigterm` makes it deaf to cancel's SIGTERM (a stuck job, for the SIGKILL fallback)."""

    steps: int = 3
    seconds: float = 0.1
    fail_at: int | None = None
    message: str = "sleeping"
    ignore_sigterm: bool = False

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps: expected >= 1, found {self.steps}")
        if self.seconds < 0:
            raise ValueError(f"seconds: expected >= 0, found {self.seconds}")


def run_sleep(config: SleepConfig, ctx: JobContext) -> dict[str, Any]:
    if config.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for i in range(config.steps):
        if config.fail_at == i:
            raise RuntimeError(f"failing at step {i} as configured (fail_at={config.fail_at})")
        ctx.log.info("%s: step %d of %d", config.message, i + 1, config.steps)
        time.sleep(config.seconds)
        ctx.progress((i + 1) / config.steps, f"step {i + 1}/{config.steps}")
    (ctx.dir / "steps.txt").write_text(f"{config.steps}\n")
    return {"steps": config.steps, "message": config.message}


register_kind(
    JobKind("sleep", "stvla_core.jobs.kinds:run_sleep", "stvla_core.jobs.kinds:SleepConfig", "test job")
)
register_kind(
    JobKind(
        "evaluate_offline",
        "stvla_core.evaluation.jobs:run_offline",
        "stvla_core.evaluation.offline:OfflineConfig",
        "action error of a policy on held-out episodes",
    )
)
register_kind(
    JobKind(
        "evaluate_closed_loop",
        "stvla_core.evaluation.jobs:run_closed_loop",
        "stvla_core.evaluation.closed_loop:ClosedLoopConfig",
        "success rate of a policy in ManiSkill3 tasks",
    )
)
register_kind(
    JobKind(
        "evaluate_comparison",
        "stvla_core.evaluation.jobs:run_comparison_job",
        "stvla_core.evaluation.comparison:ComparisonConfig",
        "success rates of several policy settings on the same seeds, in one table",
    )
)
register_kind(
    JobKind(
        "finetune",
        "stvla_core.finetune.job:run",
        "stvla_core.finetune.config:FinetuneConfig",
        "LoRA fine-tuning of the ST-VLA policy on episodes",
    )
)
