"""The backends the settings select, loaded once and shared by every view: the policy's model and
processor (tiny, or a SpatialVLA/ST-VLA checkpoint, optionally with a LoRA adapter), and the
tracker/depth options. A backend that fails to load is reported, never fatal: the app falls back
to the offline default and says so.

The Inspector may also show any other checkpoint folder (`policy_named`): loaded on first use, the
last few kept. Every checkpoint is traced as it was trained (its trace_config.json: variant,
nearest, tracker options...), with the Inspector's controls for b, tracker, depth, K and line
thickness on top."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path

from app.settings import REPO, AppSettings
from stvla_core.model.shipped import STVLA_S_NAME
from stvla_core.policy import Policy, PolicyConfig, checkpoint_trace_config
from stvla_core.traces import TraceConfig

MODELS = REPO / "assets" / "models"
KEEP_POLICIES = 3  # other checkpoints kept loaded for the Inspector


def resolve_policy(name: str) -> str:
    """A checkpoint name as `Policy.from_pretrained` takes it: "tiny", "stvla-s", a hub id, or a
    folder; a relative folder that is not under the working directory is looked up in the
    checkout (so `runs/x/model` means the same from any folder)."""
    name = name.strip()
    if name in ("tiny", STVLA_S_NAME) or Path(name).expanduser().is_absolute():
        return str(Path(name).expanduser()) if name not in ("tiny", STVLA_S_NAME) else name
    if not Path(name).exists() and (REPO / name).is_dir():
        return str(REPO / name)
    return name


def policy_choices(extra: str = "") -> list[tuple[str, str]]:
    """Dropdown (label, value) of the checkpoints on this machine: the shipped ST-VLA-S, the tiny
    model, every other assets/models/* and runs/**/model folder with a config.json; `extra` (a
    value in use) is kept."""
    out = [("stvla-s (shipped ST-VLA-S)", STVLA_S_NAME), ("tiny (untrained)", "tiny")]
    found = sorted(p for p in MODELS.glob("*") if (p / "config.json").is_file() and p.name != STVLA_S_NAME)
    runs = REPO / "runs"
    if runs.is_dir():
        found += sorted(p.parent for p in runs.glob("**/model/config.json"))
    out += [(str(p.relative_to(REPO)), str(p.relative_to(REPO))) for p in found]
    if extra and extra not in [v for _, v in out]:
        out.append((extra, extra))
    return out


@dataclass
class BackendState:
    component: str
    setting: str
    state: str  # "active", "default", "failed", "not set"
    detail: str = ""


class Backends:
    """Holds the loaded policy model; `generation` changes whenever the settings are applied, so
    cached results computed with an older backend are never served for the new one."""

    def __init__(self, settings: AppSettings) -> None:
        self._lock = threading.Lock()
        self.generation = 0
        self.settings = settings
        self.states: list[BackendState] = []
        self._base: Policy = Policy.tiny()
        self.apply(settings)

    def apply(self, settings: AppSettings) -> list[BackendState]:
        """Load what the settings name; keep running on the tiny policy when a load fails."""
        settings.validate()
        states = [
            BackendState("tracker (default)", settings.tracker, "active"),
            BackendState(
                "CoTracker3 checkpoint",
                settings.cotracker_checkpoint or "-",
                "active" if settings.cotracker_checkpoint else "not set",
                "used when the tracker is cotracker3",
            ),
            BackendState("depth source (default)", settings.depth, "active"),
            BackendState(
                "depth model (ZoeDepth / Depth Anything)",
                settings.depth_model or "-",
                "active" if settings.depth_model else "default",
                "used when the depth source is zoedepth or depth_anything"
                + ("" if settings.depth_model else " (their own default hub id)"),
            ),
        ]
        policy = self._base if settings.policy == "tiny" else None
        if policy is None:
            try:
                policy = Policy.from_pretrained(settings.policy)
                detail = (
                    "trained ST-VLA-S (shipped)" if settings.policy == STVLA_S_NAME else "checkpoint loaded"
                )
                states.append(BackendState("policy", settings.policy, "active", detail))
            except Exception as e:  # any load failure: report it and keep the offline default
                states.append(
                    BackendState("policy", settings.policy, "failed", f"{e}; using the tiny policy")
                )
                policy = Policy.tiny()
        else:
            states.append(BackendState("policy", "tiny", "active", "untrained tiny model (offline default)"))
        if settings.lora:
            from stvla_core.finetune import load_adapter  # peft: imported only when asked for

            if policy is self._base:  # adapters are injected in place: never into the shared base
                policy = Policy.tiny()
            try:
                load_adapter(policy, settings.lora)
                states.append(BackendState("LoRA adapter", settings.lora, "active", "adapter loaded"))
            except Exception as e:
                states.append(
                    BackendState("LoRA adapter", settings.lora, "failed", f"{e}; running without it")
                )
                if settings.policy == "tiny":  # a half-injected adapter must not stay behind
                    policy = self._base
        else:
            states.append(
                BackendState("LoRA adapter", "-", "not set", "load one from the Jobs tab or with --lora")
            )
        trace = policy.config.trace  # from_pretrained read the checkpoint's trace_config.json
        with self._lock:
            self.settings = settings
            self._policy = policy
            self._trace = trace
            self._others: OrderedDict[str, tuple[Policy, TraceConfig]] = OrderedDict()
            self.states = states
            self.generation += 1
        return states

    def policy_named(self, name: str) -> tuple[Policy, TraceConfig]:
        """The policy the Inspector asked for ("" or the settings' own: the loaded one, with its
        LoRA adapter) and the trace settings it was trained with. Other checkpoints are loaded
        on first use; raises (FileNotFoundError...) naming the checkpoint when one cannot be."""
        with self._lock:
            if not name or name == self.settings.policy:
                return self._policy, self._trace
            hit = self._others.get(name)
            if hit is not None:
                self._others.move_to_end(name)
                return hit
        if name == "tiny":
            loaded = (self._base, TraceConfig())
        else:
            root = resolve_policy(name)  # a missing one raises FileNotFoundError naming it
            loaded = (Policy.from_pretrained(root), checkpoint_trace_config(root))
        with self._lock:
            self._others[name] = loaded
            while len(self._others) > KEEP_POLICIES:
                self._others.popitem(last=False)
        return loaded

    def trace_config(
        self,
        buffer: int,
        tracker: str,
        depth: str,
        max_traces: int,
        thickness: int,
        trained: TraceConfig | None = None,
    ) -> TraceConfig:
        """The Inspector's controls over the trace settings a policy was trained with (`trained`:
        variant, nearest, seed...; its tracker and depth options only for the same tracker or
        depth source), then the app's own tracker/depth options."""
        s = self.settings
        t = trained or TraceConfig()
        return replace(
            t,
            buffer=buffer,
            tracker=tracker,
            depth=depth,
            max_traces=max_traces,
            line_thickness=thickness,
            tracker_options={
                **(t.tracker_options if tracker == t.tracker else {}),
                **s.tracker_options(tracker),
            },
            depth_options={**(t.depth_options if depth == t.depth else {}), **s.depth_options(depth)},
        )

    def policy_for(self, trace: TraceConfig, name: str = "") -> Policy:
        """A policy over the named model (`policy_named`) with its own trace pipeline (builds
        tracker and depth source by name; raises their Unavailable errors when they cannot be
        built)."""
        base, _ = self.policy_named(name)
        return Policy(base.model, base.processor, PolicyConfig(trace=trace))

    def status_rows(self) -> list[list[str]]:
        return [[s.component, s.setting, s.state, s.detail] for s in self.states]
