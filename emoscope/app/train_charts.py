"""The Train page's live figures: training loss and validation macro-F1 per epoch, and each
label's validation F1 on demand.

Plain functions from a run's epoch events (``RunState.epochs``, :mod:`emoscope.progress`) to
``plotly`` figures, testable without Streamlit. One curve per series: the single encoder, each
stage-1 model of a stack (``me5-ft full``, ``me5-ft fold-1`` …) and the meta-learner. Series
and label names come from a recipe and its data (an uploaded file's columns): user text, shown
through ``render.plot_text`` (plotly reads some HTML in its strings).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import math

import plotly.graph_objects as go

from emoscope.render import plot_text

Epochs = Sequence[dict[str, Any]]
HEIGHT = 300


def series_names(epochs: Epochs) -> list[str]:
    """The series of ``epochs`` in order of first appearance."""
    return list(dict.fromkeys(e.get("series", "model") for e in epochs))


def _by_series(epochs: Epochs) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for e in epochs:
        out.setdefault(e.get("series", "model"), []).append(e)
    return out


def _layout(fig: go.Figure, title: str, y_title: str, y_range: list[float] | None = None) -> go.Figure:
    last = max((x for trace in fig.data for x in (trace.x or ())), default=1)
    fig.update_layout(title=title, height=HEIGHT, margin={"l": 10, "r": 10, "t": 40, "b": 40},
                      xaxis={"title": "epoch", "dtick": max(1, math.ceil(last / 10))},  # whole epochs, ≤ 10 ticks
                      yaxis={"title": y_title, "range": y_range}, legend={"orientation": "h", "y": -0.25})
    return fig


def _lines(epochs: Epochs, key: str, fmt: str) -> go.Figure:
    fig = go.Figure()
    for name, rows in _by_series(epochs).items():
        fig.add_trace(go.Scatter(x=[r["epoch"] for r in rows], y=[r.get(key) for r in rows], mode="lines+markers",
                                 name=plot_text(name),
                                 hovertemplate=f"%{{fullData.name}}, epoch %{{x}}: %{{y:{fmt}}}<extra></extra>"))
    return fig


def loss_figure(epochs: Epochs, title: str = "Training loss") -> go.Figure:
    """Mean training loss per epoch, one line per series."""
    return _layout(_lines(epochs, "train_loss", ".4f"), title, "loss")


def f1_figure(epochs: Epochs, title: str = "Validation macro-F1") -> go.Figure:
    """Validation macro-F1 (at the thresholds tuned that epoch) per epoch, one line per series."""
    return _layout(_lines(epochs, "val_macro_f1", ".3f"), title, "macro-F1", [0, 1.02])


def per_class_figure(epochs: Epochs, series: str) -> go.Figure:
    """Each label's validation F1 per epoch for one series."""
    rows = _by_series(epochs).get(series, [])
    labels = list(dict.fromkeys(label for r in rows for label in (r.get("val_f1") or {})))
    fig = go.Figure()
    for label in labels:
        fig.add_trace(go.Scatter(x=[r["epoch"] for r in rows], y=[(r.get("val_f1") or {}).get(label) for r in rows],
                                 mode="lines+markers", name=plot_text(label),
                                 hovertemplate="%{fullData.name}, epoch %{x}: %{y:.3f}<extra></extra>"))
    return _layout(fig, f"Validation F1 per label: {plot_text(series)}", "F1", [0, 1.02])
