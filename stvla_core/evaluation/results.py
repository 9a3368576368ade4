"""Closed-loop results on disk (`results.json` + `results.csv` per run folder) and the tables that
compare runs: `compare_runs` (success rate per task and run, numeric, for plots) and
`comparison_table` (one row per policy setting, one column per task and the average, each cell a
success rate with its 95 % Wilson interval, as the paper's ablation tables read)."""

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


def summarise_episodes(episodes: Iterable[Any]) -> dict[str, dict[str, Any]]:
    """task -> {episodes, successes, success_rate (0..1), success_ci95 [lo, hi] (Wilson),
    mean_length}."""
    rows = [asdict(e) if is_dataclass(e) else dict(e) for e in episodes]
    df = pd.DataFrame(rows, columns=EPISODE_COLUMNS)
    out = {}
    for task, g in df.groupby("task", sort=False):
        successes = int(g["success"].astype(bool).sum())
        out[str(task)] = {
            "episodes": int(len(g)),
            "successes": successes,
            "success_rate": successes / len(g),
            "success_ci95": list(wilson_interval(successes, len(g))),
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


COMPARISON_COLUMNS = ["setting", "task", "episodes", "successes", "success_rate", "ci_low", "ci_high"]
AVERAGE = "average"


def comparison_table(
    runs: Sequence[dict[str, Any] | str | Path],
    labels: Sequence[str] | None = None,
    first: int | None = None,
) -> pd.DataFrame:
    """One row per (setting, task), tasks in first-seen order, then each setting's "average":
    episodes, successes, success_rate (0..1) and its 95 % Wilson interval (ci_low, ci_high). A
    setting is labelled by `labels` (one per run) or else by the run's own label (run_name, or the
    policy's name); runs with one label are one setting (e.g. one run per task), as long as they
    share no (task, seed). `first` keeps each setting's first episodes of every task by seed, so
    settings evaluated on more seeds are compared on the same ones. The average pools the
    setting's episodes over the tasks it ran, which is the mean of the task rates when every task
    has as many episodes."""
    loaded = [r if isinstance(r, dict) else load_results(r) for r in runs]
    if not loaded:
        raise ResultsError("comparison: expected at least one run, found none")
    if labels is not None and len(labels) != len(loaded):
        raise ResultsError(f"comparison: expected one label per run ({len(loaded)}), found {len(labels)}")
    if first is not None and first < 1:
        raise ResultsError(f"comparison: first must be >= 1 episode, found {first}")
    names = list(labels) if labels is not None else [_label(r["labels"].get("run")) for r in loaded]
    for i, name in enumerate(names):
        if not name:
            raise ResultsError(f"comparison: run {i + 1} has an empty label; give one with --label")
    eps = pd.concat(
        [
            pd.DataFrame(r["episodes"], columns=EPISODE_COLUMNS).assign(setting=n, run=i + 1)
            for i, (r, n) in enumerate(zip(loaded, names, strict=True))
        ],
        ignore_index=True,
    )
    if eps.empty:
        raise ResultsError("comparison: the runs hold no episodes")
    twice = eps[eps.duplicated(["setting", "task", "seed"], keep=False)]
    if not twice.empty:
        a, b = twice.iloc[0], twice[twice["run"] != twice.iloc[0]["run"]].iloc[0]
        raise ResultsError(
            f"comparison: runs {a['run']} and {b['run']} are both labelled {a['setting']!r} and both hold "
            f"{a['task']} seed {a['seed']}; give each run its own label (--label)"
        )
    if first is not None:
        eps = eps.sort_values("seed", kind="stable").groupby(["setting", "task"], sort=False).head(first)
    eps["success"] = eps["success"].astype(bool)
    tasks = list(dict.fromkeys(eps.sort_index()["task"]))
    rows = []
    for name in dict.fromkeys(names):
        mine = eps[eps["setting"] == name]
        groups = [(t, mine[mine["task"] == t]) for t in tasks] + [(AVERAGE, mine)]
        for task, g in groups:
            if g.empty:
                continue
            n, k = len(g), int(g["success"].sum())
            lo, hi = wilson_interval(k, n)
            rows.append([name, task, n, k, k / n, lo, hi])
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def _percent(x: float) -> str:
    """46.2, 7.1, 0, 100: one decimal, none when it is 0."""
    return f"{100 * x:.1f}".removesuffix(".0")


def comparison_cells(table: pd.DataFrame) -> pd.DataFrame:
    """The wide form of a `comparison_table`: rows = settings, columns = tasks + average, cells
    "60 % [46.2, 72.4]" ("-" where a setting did not run a task), and the episodes per task."""
    settings = list(dict.fromkeys(table["setting"]))
    tasks = [t for t in dict.fromkeys(table["task"]) if t != AVERAGE] + [AVERAGE]
    cells = pd.DataFrame("-", index=pd.Index(settings, name="setting"), columns=tasks)
    for r in table.itertuples(index=False):
        cells.loc[r.setting, r.task] = (
            f"{_percent(r.success_rate)} % [{_percent(r.ci_low)}, {_percent(r.ci_high)}]"
        )
    per_task = table[table["task"] != AVERAGE].groupby("setting", sort=False)["episodes"]
    cells["episodes"] = [
        f"{counts.iloc[0]} per task" if counts.nunique() == 1 else ", ".join(map(str, counts))
        for counts in (per_task.get_group(s) for s in settings)
    ]
    return cells


def write_comparison(out_dir: str | Path, table: pd.DataFrame, name: str = "comparison") -> dict[str, str]:
    """`<name>.md` (the wide table), `<name>.csv` and `<name>.json` (the long, numeric one) in
    `out_dir`; returns the file names by format."""
    out_dir = Path(out_dir)
    files = {"markdown": f"{name}.md", "csv": f"{name}.csv", "json": f"{name}.json"}
    atomic_write_text(out_dir / files["markdown"], to_markdown(comparison_cells(table)) + "\n")
    atomic_write_text(out_dir / files["csv"], table.to_csv(index=False))
    atomic_write_json(out_dir / files["json"], table.to_dict(orient="records"))
    return files


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
