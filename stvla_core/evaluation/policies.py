"""Policies that evaluation can run, by name. Any object with `reset(instruction)` and
`step(rgb, depth) -> (7,) float32` works; the registry lets configs and the UI spell them.

Action convention (the Episode's): [dx, dy, dz] metres, [droll, dpitch, dyaw] radians, both per
step in the robot base frame, and gripper in [0, 1] with 1 = open (Bridge/SpatialVLA)."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from stvla_core.episodes import ACTION_DIM, Episode
from stvla_core.registry import Registry


@runtime_checkable
class Policy(Protocol):
    def reset(self, instruction: str) -> None:
        """Start a new episode with this language instruction."""

    def step(self, rgb: np.ndarray, depth: np.ndarray | None) -> np.ndarray:
        """rgb (H, W, 3) uint8, depth (H, W) float32 metres or None -> action (7,) float32."""


POLICIES: Registry[Policy] = Registry("policy")


class PolicyOutputError(ValueError):
    """A policy returned something that is not a finite (7,) action."""


def check_action(action: object, policy: str, step: int) -> np.ndarray:
    a = np.asarray(action, dtype=np.float32)
    if a.shape != (ACTION_DIM,):
        raise PolicyOutputError(
            f"policy {policy!r} at step {step}: expected an action of shape ({ACTION_DIM},), found {a.shape}"
        )
    if not np.isfinite(a).all():
        raise PolicyOutputError(f"policy {policy!r} at step {step}: action has NaN/inf values {a.tolist()}")
    return a


def reset_policy(policy: Policy, instruction: str, intrinsics: np.ndarray | None = None) -> None:
    """`policy.reset(instruction)`, also passing the camera intrinsics (3, 3) to policies whose
    reset takes them (ST-VLA's Ego3D encoding back-projects depth with them)."""
    try:
        takes = "intrinsics" in inspect.signature(policy.reset).parameters
    except (TypeError, ValueError):
        takes = False
    if takes and intrinsics is not None:
        policy.reset(instruction, intrinsics=intrinsics)
    else:
        policy.reset(instruction)


@POLICIES.register("zero")
class ZeroPolicy:
    """Stands still: zero pose deltas, the gripper held at `gripper` (1 = open). The floor any
    learned policy must beat."""

    def __init__(self, gripper: float = 1.0) -> None:
        self.action = np.zeros(ACTION_DIM, np.float32)
        self.action[6] = gripper

    def reset(self, instruction: str) -> None:
        pass

    def step(self, rgb: np.ndarray, depth: np.ndarray | None) -> np.ndarray:
        return self.action.copy()


@POLICIES.register("random")
class RandomPolicy:
    """Uniform pose deltas within +-`scale` (metres / radians) and a random open/close gripper;
    seeded, so offline error tables of this baseline are reproducible."""

    def __init__(self, scale: float = 0.01, seed: int = 0) -> None:
        self.scale = scale
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def reset(self, instruction: str) -> None:
        self.rng = np.random.default_rng(self.seed)

    def step(self, rgb: np.ndarray, depth: np.ndarray | None) -> np.ndarray:
        a = self.rng.uniform(-self.scale, self.scale, ACTION_DIM).astype(np.float32)
        a[6] = float(self.rng.random() < 0.5)
        return a


@POLICIES.register("replay")
class ReplayPolicy:
    """Replays recorded actions open loop, one per step, then holds still with the last gripper
    value. Given `actions` (T, 7) or `episode` (a path any episode loader reads)."""

    def __init__(self, actions: np.ndarray | list | None = None, episode: str | Path | None = None) -> None:
        if (actions is None) == (episode is None):
            raise ValueError("replay policy: expected exactly one of actions=... or episode=...")
        if episode is not None:
            from stvla_core.episodes import load_episode

            ep: Episode = load_episode(episode)
            if ep.actions is None:
                raise ValueError(f"replay policy: episode {episode} has no recorded actions")
            actions = ep.actions
        a = np.asarray(actions, np.float32)
        if a.ndim != 2 or a.shape[1] != ACTION_DIM or len(a) == 0:
            raise ValueError(f"replay policy: expected actions (T, {ACTION_DIM}), found shape {a.shape}")
        self.actions = a
        self.t = 0

    def reset(self, instruction: str) -> None:
        self.t = 0

    def step(self, rgb: np.ndarray, depth: np.ndarray | None) -> np.ndarray:
        if self.t < len(self.actions):
            a = self.actions[self.t].copy()
        else:
            a = np.zeros(ACTION_DIM, np.float32)
            a[6] = self.actions[-1, 6]
        self.t += 1
        return a


def lazy(target: str) -> Callable[..., Policy]:
    """A factory importing "module:callable" only when a policy is built, so that listing
    policies never imports torch or the model."""

    def factory(**kwargs: object) -> Policy:
        module, _, attr = target.partition(":")
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj(**kwargs)

    factory.__doc__ = f"lazily built from {target}"
    return factory


@POLICIES.register("stvla")
def make_stvla(
    checkpoint: str = "default",
    variant: str | None = None,
    buffer: int | None = None,
    tracker: str | None = None,
    depth_source: str | None = None,
    depth_mode: str | None = None,
    action_ensemble: bool = True,
    ensemble_temp: float | None = None,
    seed: int = 0,
) -> Policy:
    """The ST-VLA policy from flat JSON settings: `checkpoint` a local folder or hub id of a
    SpatialVLA checkpoint, "stvla-s" (the shipped trained model), "tiny" (untrained) or "default"
    (stvla-s when shipped, else tiny); the traced depth of `variant` from a `buffer`-frame window.
    Trace settings left out are the checkpoint's own (those it was trained with, when it records
    them), else the defaults (C, 30, lk, episode depth); `depth_mode` left out is the depth input
    the checkpoint was trained on ("traced" unless it records another), "model" gives plain
    SpatialVLA. `action_ensemble` false executes each step's newest chunk[0] instead of SimplerEnv's
    temporal ensemble of the last chunks; `ensemble_temp` weighs the chunk predicted i steps ago by
    exp(temp * i) (default SimplerEnv's -0.8: newer chunks weigh more; 0 averages them alike)."""
    from dataclasses import replace

    from stvla_core.model.shipped import default_checkpoint
    from stvla_core.policy import Policy as STVLAPolicy
    from stvla_core.policy import PolicyConfig, checkpoint_depth_input, checkpoint_trace_config

    if checkpoint == "default":
        checkpoint = default_checkpoint()
    given = {"variant": variant, "buffer": buffer, "tracker": tracker, "depth": depth_source}
    trace = replace(checkpoint_trace_config(checkpoint), **{k: v for k, v in given.items() if v is not None})
    config = PolicyConfig(
        depth=depth_mode or checkpoint_depth_input(checkpoint), trace=trace, action_ensemble=action_ensemble
    )
    if ensemble_temp is not None:
        config = replace(config, ensemble_temp=float(ensemble_temp))
    if checkpoint == "tiny":
        return STVLAPolicy.tiny(config, seed)
    return STVLAPolicy.from_pretrained(checkpoint, config)


def make_policy(name: str, **kwargs: object) -> Policy:
    """The policy registered under `name`, built with `kwargs` (from a JSON config)."""
    return POLICIES.create(name, **kwargs)
