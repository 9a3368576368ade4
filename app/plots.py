"""Plotly charts. The actions chart is built once per (episode, settings, predictions so far) as a
plain JSON-ready dict; moving to another step only swaps the step marker and serialises, so
the slider never waits for plotly to rebuild seven subplots."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import plotly.graph_objects as go
from gradio.components.plot import PlotData
from plotly.subplots import make_subplots

from stvla_core.episodes import ACTION_NAMES

RECORDED_COLOR = "#1f77b4"
PREDICTED_COLOR = "#d62728"


def actions_figure(recorded: np.ndarray | None, predicted: np.ndarray, title: str = "") -> dict[str, Any]:
    """Predicted (red) vs recorded (blue) value of each of the 7 action dimensions over the
    episode. recorded (T, 7) or None; predicted (T, 7), NaN where not computed yet."""
    # plain lists: plotly would send numpy arrays as typed-array blobs
    steps = list(range(predicted.shape[0]))
    fig = make_subplots(rows=7, cols=1, shared_xaxes=True, vertical_spacing=0.012, subplot_titles=None)
    for d, name in enumerate(ACTION_NAMES):
        if recorded is not None:
            fig.add_trace(
                go.Scatter(
                    x=steps,
                    y=recorded[:, d].astype(float).tolist(),
                    mode="lines",
                    name="recorded",
                    legendgroup="recorded",
                    showlegend=d == 0,
                    line={"color": RECORDED_COLOR, "width": 1.5},
                ),
                row=d + 1,
                col=1,
            )
        fig.add_trace(
            go.Scatter(
                x=steps,
                y=[float(v) if np.isfinite(v) else None for v in predicted[:, d]],
                mode="lines",
                name="predicted",
                legendgroup="predicted",
                showlegend=d == 0,
                line={"color": PREDICTED_COLOR, "width": 1.5},
                connectgaps=False,
            ),
            row=d + 1,
            col=1,
        )
        fig.update_yaxes(title_text=name, title_font={"size": 10}, tickfont={"size": 9}, row=d + 1, col=1)
    fig.update_xaxes(title_text="step", row=7, col=1)
    fig.update_layout(
        height=620,
        margin={"l": 55, "r": 10, "t": 30 if title else 10, "b": 35},
        title={"text": title, "font": {"size": 12}} if title else None,
        legend={"orientation": "h", "y": 1.02, "x": 1, "xanchor": "right", "yanchor": "bottom"},
        template="plotly_white",
    )
    return json.loads(fig.to_json())


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
