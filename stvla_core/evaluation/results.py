"""Closed-loop results on disk (`results.json` + `results.csv` per run folder) and the table that
compares runs: one row per run (policy, variant, buffer length, checkpoint), one column of
success rate (%) per task and their average, as the paper's tables do."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from stvla_core.jobs.files import atomic_write_json, atomic_write_text

RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
LABEL_COLUMNS = ["run", "policy", "variant", "buffer", "checkpoint"]
EPISODE_COLUMNS = [
    "task",
    "episode",
    "seed",
    "success",
    "success_at_end",
    "length",
    "seconds",
    "video",
    "instruction",
]


class ResultsError(ValueError):
    """A results folder or file that cannot be read as an evaluation run."""


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % (z = 1.96) Wilson score interval of a success rate: sensible at 0 % and 100 % and for
    the few dozen episodes a closed-loop run has, where the normal approximation is not."""
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"wilson_interval: expected 0 <= successes <= n, n > 0, found {successes}/{n}")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def summarise_episodes(episodes: Iterable[Any]) -> dict[str, dict[str, float]]:
    """task -> {episodes, success_rate (0..1), mean_length}."""
    rows = [asdict(e) if is_dataclass(e) else dict(e) for e in episodes]
    df = pd.DataFrame(rows, columns=EPISODE_COLUMNS)
    out = {}
    for task, g in df.groupby("task", sort=False):
        out[str(task)] = {
            "episodes": int(len(g)),
            "success_rate": float(g["success"].astype(bool).mean()),
            "mean_length": float(g["length"].mean()),
        }
    return out


def write_results(out_dir: str | Path, results: dict[str, Any]) -> None:
    """results.csv first, results.json last: a folder with results.json is a complete run."""
    out_dir = Path(out_dir)
    episodes = pd.DataFrame(results["episodes"], columns=EPISODE_COLUMNS)
    atomic_write_text(out_dir / RESULTS_CSV, episodes.to_csv(index=False))
    atomic_write_json(out_dir / RESULTS_JSON, results)


def load_results(folder: str | Path) -> dict[str, Any]:
    path = Path(folder)
    path = path if path.suffix == ".json" else path / RESULTS_JSON
    if not path.exists():
        raise ResultsError(f"no {RESULTS_JSON} in {path.parent}: not a finished evaluation run")
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ResultsError(f"{path}: not valid JSON ({e})") from None
    for key in ("labels", "episodes"):
        if key not in results:
            raise ResultsError(f"{path}: expected a {key!r} entry, found keys {sorted(results)}")
    return results


def episodes_table(runs: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """All episodes of all runs, one row each, with the run's labels as columns."""
    frames = []
    for r in runs:
        df = pd.DataFrame(r["episodes"], columns=EPISODE_COLUMNS)
        for col in LABEL_COLUMNS:
            df[col] = r["labels"].get(col)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)[LABEL_COLUMNS + EPISODE_COLUMNS]


def compare_runs(runs: Sequence[dict[str, Any] | str | Path]) -> pd.DataFrame:
    """Success rate (%) per task (columns, in first-seen order) and their mean ("average") per run
    (rows, labelled by run, policy, variant, buffer, checkpoint). A task a run did not evaluate
    is NaN and left out of that run's average."""
    loaded = [r if isinstance(r, dict) else load_results(r) for r in runs]
    if not loaded:
        raise ResultsError("compare_runs: expected at least one run, found none")
    eps = episodes_table(loaded)
    eps["success"] = eps["success"].astype(bool) * 100.0
    for col in LABEL_COLUMNS:  # labels as plain strings ("" when unset) so they group and print alike
        eps[col] = [_label(v) for v in eps[col]]
    tasks = list(dict.fromkeys(eps["task"]))
    runs_order = list(dict.fromkeys(map(tuple, eps[LABEL_COLUMNS].values)))
    table = eps.pivot_table(index=LABEL_COLUMNS, columns="task", values="success", aggfunc="mean", sort=False)
    table = table.reindex(index=pd.MultiIndex.from_tuples(runs_order, names=LABEL_COLUMNS), columns=tasks)
    table["average"] = table[tasks].mean(axis=1)
    table.columns.name = None
    return table


def run_label(index: tuple[str, ...]) -> str:
    """ "run (policy, variant C, buffer 30, ckpt)" from a `compare_runs` row index."""
    run, policy, variant, buffer, checkpoint = index
    parts = [policy] + [f"variant {variant}"] * bool(variant) + [f"buffer {buffer}"] * bool(buffer)
    return f"{run} ({', '.join(parts + [checkpoint] * bool(checkpoint))})"


def plot_success(table: pd.DataFrame, title: str = "Success rate per task") -> go.Figure:
    """Grouped bars of a `compare_runs` table: tasks on x, one bar per run."""
    tasks = [c for c in table.columns if c != "average"]
    fig = go.Figure(
        [go.Bar(name=run_label(idx), x=tasks, y=row[tasks].tolist()) for idx, row in table.iterrows()]
    )
    fig.update_layout(barmode="group", title=title, yaxis_title="success rate (%)", yaxis_range=[0, 100])
    return fig


def _label(v: Any) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return ""
    return str(v)


def to_markdown(table: pd.DataFrame, digits: int = 1) -> str:
    """A markdown table (no tabulate dependency), numbers rounded to `digits`."""
    flat = table.reset_index()
    header = [str(c) for c in flat.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in flat.itertuples(index=False):
        cells = [
            f"{v:.{digits}f}" if isinstance(v, float) and v == v else ("-" if v != v else str(v)) for v in row
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
