"""What each depth input does to the policy's actions: the chunk predicted at a step under no
depth (the policy's own estimate), the raw depth and the traced maps A, B and C, side by side with
the recorded actions, which tokens changed, and the action error over the episode per input.

Pure functions over `Prediction`s, so tests can hand-check the numbers; the cache (app/cache.py)
computes one `StepComparison` per step in the background."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from stvla_core.episodes import ACTION_NAMES
from stvla_core.policy import Prediction
from stvla_core.traces import VARIANTS

COMPARE_MODES = ("model", "raw", *VARIANTS)  # Policy.predict_modes names
MODE_LABELS = {
    "model": "none (policy's own depth estimate)",
    "raw": "raw depth",
    **{v: f"traced {v}" for v in VARIANTS},
}


@dataclass
class StepComparison:
    """The predictions of one step under each depth input. chunks: mode -> (k, 7) float32;
    token_ids / token_probs: mode -> (3k,); recorded: (k, 7) float32 recorded actions of steps
    t..t+k-1 (NaN past the episode's end) or None; reference: the mode the policy itself is fed."""

    index: int
    chunks: dict[str, np.ndarray]
    token_ids: dict[str, np.ndarray]
    token_probs: dict[str, np.ndarray]
    recorded: np.ndarray | None
    reference: str
    html: str = ""

    def error(self, mode: str) -> float:
        """Mean |predicted - recorded| of the first action (the one executed), over the 7 axes;
        NaN without recorded actions."""
        if self.recorded is None:
            return float("nan")
        return float(np.abs(self.chunks[mode][0] - self.recorded[0]).mean())

    def changed(self, mode: str) -> np.ndarray:
        """(3k,) bool: tokens that differ from the reference input's."""
        return self.token_ids[mode] != self.token_ids[self.reference]


def recorded_chunk(actions: np.ndarray | None, t: int, k: int) -> np.ndarray | None:
    """(k, 7) recorded actions t..t+k-1, NaN rows past the end; None without actions."""
    if actions is None:
        return None
    out = np.full((k, actions.shape[1]), np.nan, np.float32)
    part = actions[t : t + k]
    out[: len(part)] = part
    return out


def compare_step(
    preds: Mapping[str, Prediction], recorded_actions: np.ndarray | None, reference: str
) -> StepComparison:
    first = next(iter(preds.values()))
    k = first.chunk.shape[0]
    cmp = StepComparison(
        index=first.index,
        chunks={m: p.chunk.astype(np.float32) for m, p in preds.items()},
        token_ids={m: p.token_ids for m, p in preds.items()},
        token_probs={m: p.token_probs for m, p in preds.items()},
        recorded=recorded_chunk(recorded_actions, first.index, k),
        reference=reference if reference in preds else next(iter(preds)),
    )
    cmp.html = comparison_html(cmp)
    return cmp


def _num(v: float) -> str:
    return "–" if not np.isfinite(v) else f"{v:+.3f}"


def comparison_html(cmp: StepComparison) -> str:
    """Two tables: the first action of each chunk with its difference to the recorded one per
    axis (the closest input marked), then every action token per input, those that differ from
    the reference input's highlighted. The full chunks follow in a collapsed block."""
    modes = list(cmp.chunks)
    head = "".join(f"<th>{n}</th>" for n in ACTION_NAMES)
    rows = []
    if cmp.recorded is not None:
        cells = "".join(f"<td>{_num(v)}</td>" for v in cmp.recorded[0])
        rows.append(f"<tr class='stvla-recorded'><td>recorded</td>{cells}<td></td><td></td></tr>")
    errors = {m: cmp.error(m) for m in modes}
    finite = [e for e in errors.values() if np.isfinite(e)]
    best = min(finite) if finite else None
    for m in modes:
        a = cmp.chunks[m][0]
        diff = a - cmp.recorded[0] if cmp.recorded is not None else np.full_like(a, np.nan)
        cells = "".join(
            f"<td>{_num(v)}<br><small>Δ {_num(d)}</small></td>" for v, d in zip(a, diff, strict=True)
        )
        mark = " ◀ closest" if best is not None and errors[m] == best else ""
        changed = int(cmp.changed(m).sum())
        ref = " (the policy's input)" if m == cmp.reference else ""
        rows.append(
            f"<tr data-mode='{m}'><td>{html.escape(MODE_LABELS[m])}{ref}</td>{cells}"
            f"<td>{'–' if not np.isfinite(errors[m]) else f'{errors[m]:.4f}'}{mark}</td>"
            f"<td>{changed} of {len(cmp.token_ids[m])}</td></tr>"
        )
    actions = (
        f"<table class='stvla-compare-actions'><tr><th>depth input</th>{head}"
        "<th>mean |Δ| vs recorded</th><th>tokens changed</th></tr>" + "".join(rows) + "</table>"
    )
    n_tok = len(cmp.token_ids[cmp.reference])
    per_action = n_tok // cmp.chunks[cmp.reference].shape[0]
    tok_rows = []
    for i in range(n_tok):
        cells = []
        for m in modes:
            cls = " class='stvla-changed'" if cmp.changed(m)[i] else ""
            cells.append(f"<td{cls}>{int(cmp.token_ids[m][i])} · {float(cmp.token_probs[m][i]):.3f}</td>")
        tok_rows.append(f"<tr><td>{i // per_action}.{i % per_action}</td>{''.join(cells)}</tr>")
    tokens = (
        "<table class='stvla-compare-tokens'><tr><th>action.token</th>"
        + "".join(f"<th>{html.escape(MODE_LABELS[m])}</th>" for m in modes)
        + "</tr>"
        + "".join(tok_rows)
        + "</table>"
    )
    chunk_rows = []
    for m in (["recorded"] if cmp.recorded is not None else []) + modes:
        chunk = cmp.recorded if m == "recorded" else cmp.chunks[m]
        label = m if m == "recorded" else MODE_LABELS[m]
        for j, a in enumerate(chunk):
            vals = "".join(f"<td>{_num(v)}</td>" for v in a)
            chunk_rows.append(f"<tr><td>{html.escape(label)}</td><td>t+{j}</td>{vals}</tr>")
    chunks = (
        "<details><summary>full chunks</summary><table class='stvla-compare-chunks'>"
        f"<tr><th>depth input</th><th>step</th>{head}</tr>" + "".join(chunk_rows) + "</table></details>"
    )
    return (
        f"<div class='stvla-compare' data-step='{cmp.index}'>"
        f"<p><b>Step {cmp.index}</b>: first action of each predicted chunk (Δ = predicted − recorded)</p>"
        f"{actions}<p>Action tokens (id · probability); highlighted where they differ from "
        f"<i>{html.escape(MODE_LABELS[cmp.reference])}</i>, the policy's own input</p>{tokens}{chunks}</div>"
    )


def pending_html(t: int) -> str:
    return (
        f"<div class='stvla-compare' data-step='{t}' data-pending='1'><i>comparing depth inputs for step "
        f"{t} in the background…</i></div>"
    )


def step_errors(comparisons: Sequence[StepComparison | None], modes: Sequence[str]) -> np.ndarray:
    """(T, len(modes)) float64 per-step error of each input (`StepComparison.error`), NaN where
    not computed yet."""
    out = np.full((len(comparisons), len(modes)), np.nan)
    for t, c in enumerate(comparisons):
        if c is not None:
            out[t] = [c.error(m) for m in modes]
    return out


def error_table(comparisons: Sequence[StepComparison | None], modes: Sequence[str]) -> pd.DataFrame:
    """One row per depth input: mean |predicted - recorded| of the executed action per axis and
    over all axes, across the steps compared so far."""
    done = [c for c in comparisons if c is not None and c.recorded is not None]
    rows = []
    for m in modes:
        diff = (
            np.abs(np.stack([c.chunks[m][0] - c.recorded[0] for c in done]))  # type: ignore[index]
            if done
            else np.full((1, len(ACTION_NAMES)), np.nan)
        )
        row = {"depth input": MODE_LABELS[m], "steps": len(done)}
        row |= {n: float(np.nanmean(diff[:, d])) if done else np.nan for d, n in enumerate(ACTION_NAMES)}
        row["all axes"] = float(np.nanmean(diff)) if done else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def error_table_html(table: pd.DataFrame, total: int) -> str:
    if table.empty or int(table["steps"].iloc[0]) == 0:
        return f"<div class='stvla-compare-errors'><i>action error per depth input: 0 of {total} steps compared (needs recorded actions)</i></div>"
    best = table["all axes"].idxmin()
    shown = table.copy()
    shown["depth input"] = [
        f"{n} ◀ closest" if i == best else n for i, n in zip(shown.index, shown["depth input"], strict=True)
    ]
    body = shown.to_html(index=False, border=0, float_format=lambda v: f"{v:.4f}")
    return (
        f"<div class='stvla-compare-errors'><p>Mean |predicted − recorded| of the executed action over "
        f"{int(table['steps'].iloc[0])} of {total} steps</p>{body}</div>"
    )
