"""The backends the settings select, loaded once and shared by every view: the policy's model and
processor (tiny, or a SpatialVLA/ST-VLA checkpoint, optionally with a LoRA adapter), and the
tracker/depth options. A backend that fails to load is reported, never fatal: the app falls back
to the offline default and says so."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from app.settings import AppSettings
from stvla_core.model.shipped import STVLA_S_NAME
from stvla_core.policy import Policy, PolicyConfig
from stvla_core.traces import TraceConfig


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
        with self._lock:
            self.settings = settings
            self._policy = policy
            self.states = states
            self.generation += 1
        return states

    def trace_config(
        self, buffer: int, tracker: str, depth: str, max_traces: int, thickness: int
    ) -> TraceConfig:
        s = self.settings
        return TraceConfig(
            buffer=buffer,
            tracker=tracker,
            depth=depth,
            max_traces=max_traces,
            line_thickness=thickness,
            tracker_options=s.tracker_options(tracker),
            depth_options=s.depth_options(depth),
        )

    def policy_for(self, trace: TraceConfig) -> Policy:
        """A policy over the shared model with its own trace pipeline (builds tracker and depth
        source by name; raises their Unavailable errors when they cannot be built)."""
        with self._lock:
            base = self._policy
        return Policy(base.model, base.processor, PolicyConfig(trace=trace))

    def status_rows(self) -> list[list[str]]:
        return [[s.component, s.setting, s.state, s.detail] for s in self.states]
