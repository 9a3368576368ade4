"""Plotly charts, written as plotly JSON specs. The actions chart is built once per (episode,
settings, predictions so far); moving to another step only swaps the step marker and serialises,
so the slider never waits for a figure to be rebuilt."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from gradio.components.plot import PlotData

from stvla_core.episodes import ACTION_NAMES

RECORDED_COLOR = "#1f77b4"
PREDICTED_COLOR = "#d62728"
GAP = 0.012  # vertical space between subplots, share of the figure height


def _series(values: np.ndarray) -> list[float | None]:
    """Plain JSON numbers, None for NaN (a gap): plotly would send numpy arrays as binary blobs."""
    return [float(v) if np.isfinite(v) else None for v in values]


def actions_figure(recorded: np.ndarray | None, predicted: np.ndarray) -> dict[str, Any]:
    """Predicted (red) vs recorded (blue) value of each of the 7 action dimensions over the
    episode, one subplot per dimension sharing the step axis. recorded (T, 7) or None;
    predicted (T, 7), NaN where not computed yet."""
    steps = list(range(predicted.shape[0]))
    n = len(ACTION_NAMES)
    height = (1.0 - GAP * (n - 1)) / n
    data: list[dict[str, Any]] = []
    layout: dict[str, Any] = {
        "height": 620,
        "margin": {"l": 55, "r": 10, "t": 10, "b": 35},
        "template": {"layout": {"plot_bgcolor": "white", "paper_bgcolor": "white"}},
        "legend": {"orientation": "h", "y": 1.0, "x": 1, "xanchor": "right", "yanchor": "bottom"},
        "hovermode": "x",
        "showlegend": True,
    }
    for d, name in enumerate(ACTION_NAMES):
        suffix = "" if d == 0 else str(d + 1)
        top = 1.0 - d * (height + GAP)
        layout[f"yaxis{suffix}"] = {
            "domain": [top - height, top],
            "anchor": f"x{suffix}",
            "title": {"text": name, "font": {"size": 10}},
            "tickfont": {"size": 9},
            "gridcolor": "#eee",
            "zeroline": False,
        }
        layout[f"xaxis{suffix}"] = {
            "anchor": f"y{suffix}",
            # a fixed range: moving the step marker then redraws only the marker, not the axes
            "range": [-0.5, max(len(steps) - 0.5, 0.5)],
            "autorange": False,
            "showticklabels": d == n - 1,
            "gridcolor": "#eee",
            **({"matches": "x"} if d else {}),
            **({"title": {"text": "step"}} if d == n - 1 else {}),
        }
        axes = {"xaxis": f"x{suffix}", "yaxis": f"y{suffix}"}
        if recorded is not None:
            data.append(
                {
                    "type": "scatter",
                    "mode": "lines",
                    "name": "recorded",
                    "legendgroup": "recorded",
                    "showlegend": d == 0,
                    "x": steps,
                    "y": _series(recorded[:, d]),
                    "line": {"color": RECORDED_COLOR, "width": 1.5},
                    **axes,
                }
            )
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": "predicted",
                "legendgroup": "predicted",
                "showlegend": d == 0,
                "x": steps,
                "y": _series(predicted[:, d]),
                "line": {"color": PREDICTED_COLOR, "width": 1.5},
                **axes,
            }
        )
    return {"data": data, "layout": layout}


def with_step(figure: dict[str, Any], t: int) -> PlotData:
    """The cached figure with a vertical marker at step t across all subplots, ready for gr.Plot."""
    marker = {
        "type": "line",
        "xref": "x",
        "yref": "paper",
        "x0": t,
        "x1": t,
        "y0": 0,
        "y1": 1,
        "line": {"color": "#444", "width": 1.5, "dash": "dot"},
    }
    layout = {**figure["layout"], "shapes": [marker]}
    return PlotData(type="plotly", plot=json.dumps({**figure, "layout": layout}))


MODE_COLORS = {"model": "#7f7f7f", "raw": "#1f77b4", "A": "#2ca02c", "B": "#9467bd", "C": "#d62728"}


def errors_figure(errors: np.ndarray, modes: list[str], labels: dict[str, str]) -> dict[str, Any]:
    """Action error per step, one line per depth input. errors (T, len(modes)), NaN where not
    computed yet."""
    steps = list(range(errors.shape[0]))
    data = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "marker": {"size": 3},
            "name": labels[m],
            "x": steps,
            "y": _series(errors[:, i]),
            "line": {"color": MODE_COLORS.get(m, "#333"), "width": 1.5},
        }
        for i, m in enumerate(modes)
    ]
    layout = {
        "height": 300,
        "margin": {"l": 55, "r": 10, "t": 10, "b": 35},
        "template": {"layout": {"plot_bgcolor": "white", "paper_bgcolor": "white"}},
        "legend": {"orientation": "h", "y": 1.0, "x": 1, "xanchor": "right", "yanchor": "bottom"},
        "hovermode": "x",
        "xaxis": {
            "title": {"text": "step"},
            "range": [-0.5, max(len(steps) - 0.5, 0.5)],
            "gridcolor": "#eee",
        },
        "yaxis": {"title": {"text": "mean |pred − recorded|"}, "gridcolor": "#eee", "rangemode": "tozero"},
    }
    return {"data": data, "layout": layout}


def plot_data(figure: dict[str, Any]) -> PlotData:
    return PlotData(type="plotly", plot=json.dumps(figure))
