"""Offline evaluation: a policy's action error on held-out episodes, per step and per dimension,
as a long pandas table (one row per episode x step x dimension) with summaries and plotly plots."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from stvla_core.episodes import ACTION_NAMES, Episode
from stvla_core.evaluation.policies import POLICIES, Policy, check_action, reset_policy

ERROR_COLUMNS = ("episode", "step", "dim", "predicted", "target", "error", "abs_error")


@dataclass
class OfflineConfig:
    """episodes: paths any episode loader reads. use_depth: give the policy the episode's depth
    (else None, so the policy estimates it). max_steps: first steps of each episode only."""

    episodes: list[str]
    policy: str = "zero"
    policy_kwargs: dict[str, Any] = field(default_factory=dict)
    use_depth: bool = True
    max_steps: int | None = None

    def __post_init__(self) -> None:
        if not self.episodes:
            raise ValueError("episodes: expected at least one episode path, found none")
        missing = [p for p in self.episodes if not Path(p).exists()]
        if missing:
            raise ValueError(f"episodes: {len(missing)} file(s) do not exist: {', '.join(missing)}")
        if self.policy not in POLICIES:
            raise ValueError(f"policy: expected one of {', '.join(POLICIES.names())}, found {self.policy!r}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps: expected >= 1 or None, found {self.max_steps}")


def action_errors(
    policy: Policy,
    episodes: Sequence[Episode],
    *,
    policy_name: str = "policy",
    use_depth: bool = True,
    max_steps: int | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> pd.DataFrame:
    """Runs the policy over every frame of every episode (reset per episode) and compares with the
    recorded actions. error = predicted - target, in the action's units (m, rad, gripper 0..1)."""
    for ep in episodes:
        if ep.actions is None:
            raise ValueError(f"episode {ep.name!r} has no recorded actions to compare the policy with")
    total = sum(min(ep.num_frames, max_steps or ep.num_frames) for ep in episodes)
    blocks, done = [], 0
    for ep, name in zip(episodes, _unique_names([ep.name for ep in episodes]), strict=True):
        n = min(ep.num_frames, max_steps or ep.num_frames)
        reset_policy(policy, ep.instruction, ep.intrinsics)
        predicted = np.empty((n, len(ACTION_NAMES)), np.float32)
        for t in range(n):
            depth = ep.depth[t] if use_depth and ep.depth is not None else None
            predicted[t] = check_action(policy.step(ep.frames[t], depth), policy_name, t)
            done += 1
            if progress is not None:
                progress(done / total, f"{ep.name}: step {t + 1}/{n}")
        target = ep.actions[:n]
        blocks.append(
            pd.DataFrame(
                {
                    "episode": name,
                    "step": np.repeat(np.arange(n), len(ACTION_NAMES)),
                    "dim": np.tile(ACTION_NAMES, n),
                    "predicted": predicted.ravel(),
                    "target": target.ravel(),
                }
            )
        )
    df = pd.concat(blocks, ignore_index=True)
    df["dim"] = pd.Categorical(df["dim"], categories=ACTION_NAMES, ordered=True)
    df["error"] = df["predicted"] - df["target"]
    df["abs_error"] = df["error"].abs()
    return df[list(ERROR_COLUMNS)]


def _unique_names(names: list[str]) -> list[str]:
    """Episode names as table keys; repeated names get "#2", "#3", ... so rows never merge."""
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return out


def error_summary(errors: pd.DataFrame) -> pd.DataFrame:
    """Per dimension: mean abs error, RMSE, max abs error, bias (mean signed error), count."""
    g = errors.groupby("dim", observed=True)["error"]
    return pd.DataFrame(
        {
            "mae": g.apply(lambda e: float(np.abs(e).mean())),
            "rmse": g.apply(lambda e: float(np.sqrt((e**2).mean()))),
            "max_abs": g.apply(lambda e: float(np.abs(e).max())),
            "bias": g.mean(),
            "n": g.size(),
        }
    )


def error_by_step(errors: pd.DataFrame) -> pd.DataFrame:
    """(step x dim) mean abs error over episodes."""
    return errors.pivot_table(index="step", columns="dim", values="abs_error", aggfunc="mean", observed=True)


def plot_error_per_step(errors: pd.DataFrame, title: str = "Absolute action error per step") -> go.Figure:
    table = error_by_step(errors)
    fig = go.Figure([go.Scatter(x=table.index, y=table[d], mode="lines", name=str(d)) for d in table.columns])
    fig.update_layout(title=title, xaxis_title="step", yaxis_title="|predicted - target|")
    return fig


def plot_error_per_dim(errors: pd.DataFrame, title: str = "Mean absolute error per dimension") -> go.Figure:
    s = error_summary(errors)
    fig = go.Figure(go.Bar(x=[str(d) for d in s.index], y=s["mae"], error_y={"array": s["rmse"] - s["mae"]}))
    fig.update_layout(title=title, xaxis_title="action dimension", yaxis_title="MAE (m, rad, gripper)")
    return fig


def plot_actions(errors: pd.DataFrame, episode: str) -> go.Figure:
    """Predicted vs recorded action, one row per dimension, for one episode."""
    ep = errors[errors["episode"] == episode]
    if ep.empty:
        names = ", ".join(map(str, errors["episode"].unique()))
        raise ValueError(f"no episode {episode!r} in the error table; it has {names}")
    fig = make_subplots(rows=len(ACTION_NAMES), cols=1, shared_xaxes=True, subplot_titles=ACTION_NAMES)
    for i, d in enumerate(ACTION_NAMES, start=1):
        rows = ep[ep["dim"] == d]
        for col, dash in (("target", "solid"), ("predicted", "dot")):
            fig.add_trace(
                go.Scatter(
                    x=rows["step"],
                    y=rows[col],
                    name=col,
                    line={"dash": dash, "color": "#1f77b4" if col == "target" else "#d62728"},
                    showlegend=i == 1,
                ),
                row=i,
                col=1,
            )
    fig.update_layout(height=140 * len(ACTION_NAMES), title=f"{episode}: predicted vs recorded actions")
    return fig


def load_episodes(paths: Sequence[str | Path]) -> list[Episode]:
    from stvla_core.episodes import load_episode  # the format loaders; imported when needed

    return [load_episode(p) for p in paths]


def evaluate_offline_to(
    config: OfflineConfig, out_dir: str | Path, progress: Callable[[float, str], None] | None = None
) -> dict[str, Any]:
    """Loads the episodes, runs the policy, writes errors.csv, summary.csv and plotly figures
    (JSON, reloadable with plotly.io.from_json) to `out_dir`; returns the summary."""
    from stvla_core.evaluation.policies import make_policy
    from stvla_core.jobs.files import atomic_write_text

    out_dir = Path(out_dir)
    episodes = load_episodes(config.episodes)
    policy = make_policy(config.policy, **config.policy_kwargs)
    errors = action_errors(
        policy,
        episodes,
        policy_name=config.policy,
        use_depth=config.use_depth,
        max_steps=config.max_steps,
        progress=progress,
    )
    summary = error_summary(errors)
    atomic_write_text(out_dir / "errors.csv", errors.to_csv(index=False))
    atomic_write_text(out_dir / "summary.csv", summary.to_csv())
    figures = {"error_per_step": plot_error_per_step(errors), "error_per_dim": plot_error_per_dim(errors)}
    for name, fig in figures.items():
        atomic_write_text(out_dir / f"{name}.plotly.json", fig.to_json())
    return {
        "policy": config.policy,
        "episodes": [ep.name for ep in episodes],
        "steps": int(errors[["episode", "step"]].drop_duplicates().shape[0]),
        "mae": {str(k): float(v) for k, v in summary["mae"].items()},
        "files": ["errors.csv", "summary.csv", *(f"{n}.plotly.json" for n in figures)],
    }
