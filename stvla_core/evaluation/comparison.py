"""A comparison run: several policy settings (e.g. one checkpoint per depth input, or the buffer
lengths of Variant C) evaluated on the same tasks, episodes and seeds in one sharded request, and
one table of success rates with 95 % Wilson intervals, the shape of the paper's ablations.

    <out>/<setting>/results.json, results.csv, episodes/, videos/   one run per setting
    <out>/comparison.md, comparison.csv, comparison.json             the table (results.py)

`python -m stvla_core.evaluation compare <out>/*/` regenerates the same table from the folders."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stvla_core.evaluation.closed_loop import ClosedLoopConfig
from stvla_core.evaluation.results import comparison_cells, comparison_table, write_comparison
from stvla_core.jobs.kinds import config_from_dict

SETTING_KEYS = ("label", "policy", "policy_kwargs", "variant", "buffer", "checkpoint")


def folder_name(label: str) -> str:
    """A setting's folder: its label with anything but letters, digits and ._=+- as "_"."""
    return re.sub(r"[^\w.=+-]+", "_", label.strip())


@dataclass
class ComparisonConfig(ClosedLoopConfig):
    """The shared fields of `ClosedLoopConfig` (tasks, episodes, seeds, step limit, workers, ...)
    and `settings`, one object per row of the table: {"label": "C b=15", "policy": "stvla",
    "policy_kwargs": {"checkpoint": "runs/ablation/c15/model"}}; a setting may also give the
    row's variant, buffer and checkpoint labels, and takes the shared policy fields it leaves out."""

    settings: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.settings:
            raise ValueError(
                'settings: expected at least one {"label": ..., "policy": ..., "policy_kwargs": {...}}, found none'
            )
        self.runs()

    def runs(self) -> list[tuple[str, ClosedLoopConfig]]:
        """(folder name, run config) per setting, in order; ValueError naming a bad setting."""
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(ClosedLoopConfig)}
        out: list[tuple[str, ClosedLoopConfig]] = []
        for i, setting in enumerate(self.settings):
            where = f"settings[{i}]"
            if not isinstance(setting, dict):
                raise ValueError(f"{where}: expected an object with a label, found {setting!r}")
            unknown = sorted(set(setting) - set(SETTING_KEYS))
            if unknown:
                raise ValueError(
                    f"{where}: unknown key(s) {', '.join(unknown)}; a setting may give "
                    f"{', '.join(SETTING_KEYS)} (tasks, episodes and seeds are shared by all settings)"
                )
            label = setting.get("label")
            if not isinstance(label, str) or not folder_name(label).strip("_"):
                raise ValueError(f"{where}: expected a 'label' with letters or digits, found {label!r}")
            folder = folder_name(label)
            for j, (other, _) in enumerate(out):
                if other == folder:
                    raise ValueError(f"{where}: label {label!r} names the same folder as settings[{j}]")
            values = {**shared, **{k: v for k, v in setting.items() if k != "label"}, "run_name": label}
            out.append((folder, config_from_dict(ClosedLoopConfig, values, where=where)))
        return out


def run_comparison(
    config: ComparisonConfig, out_dir: str | Path, progress: Callable[[float, str], None] | None = None
) -> dict[str, Any]:
    """Every setting's episodes (sharded together, so the workers stay busy across settings),
    each setting's results, and the comparison table; returns the table's rows and files."""
    from stvla_core.evaluation.sharding import evaluate_runs

    out_dir = Path(out_dir)
    runs = config.runs()
    results = evaluate_runs([(c, out_dir / folder) for folder, c in runs], progress=progress)
    table = comparison_table(results)
    files = write_comparison(out_dir, table)
    cells = comparison_cells(table).reset_index()
    return {
        "settings": [c.run_name for _, c in runs],
        "runs": [folder for folder, _ in runs],
        "table": cells.to_dict(orient="records"),
        "files": files,
    }
