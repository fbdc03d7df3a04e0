"""The Model page's training curves as plotly figures, from a bundle's training log.

Plain functions from the log's rows (one dict per epoch, ``bundle.read_training_log``) to
figures, testable without Streamlit, like ``emoscope.app.charts``: the training loss and the
validation F1 per epoch with the kept (best) epoch marked, and the training loss of each label.
Label names are user text: they go through ``render.plot_text`` before plotly, whose text takes some tags.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from emoscope.card_svg import series
from emoscope.render import plot_text

F1_CURVES = (("val_macro_f1", "validation macro-F1", "#059669"), ("val_micro_f1", "validation micro-F1", "#93c5fd"))


def training_curves_figure(rows: Sequence[dict[str, Any]], best_epoch: int | None = None) -> go.Figure | None:
    """Training loss (left) and validation macro/micro-F1 (right) per epoch; None without a loss or F1 curve."""
    loss = series(rows, "train_loss")
    f1 = [(series(rows, key), name, colour) for key, name, colour in F1_CURVES]
    if not loss and not any(points for points, _, _ in f1):
        return None
    fig = make_subplots(rows=1, cols=2, subplot_titles=("training loss", "validation F1"), horizontal_spacing=0.1)
    if loss:
        fig.add_trace(go.Scatter(x=[e for e, _ in loss], y=[v for _, v in loss], mode="lines+markers", name="training loss",
                                 line={"color": "#7c3aed"}, hovertemplate="epoch %{x}: %{y:.4f}<extra></extra>"),
                      row=1, col=1)
    for points, name, colour in f1:
        if points:
            fig.add_trace(go.Scatter(x=[e for e, _ in points], y=[v for _, v in points], mode="lines+markers", name=name,
                                     line={"color": colour}, hovertemplate=f"{name}, epoch %{{x}}: %{{y:.4f}}<extra></extra>"),
                          row=1, col=2)
    if best_epoch is not None:
        for col in (1, 2):
            fig.add_vline(x=best_epoch, line_dash="dash", line_color="#9ca3af", row=1, col=col)
        fig.add_annotation(x=best_epoch, y=0, yref="y2 domain", xref="x2", text=f" kept: epoch {best_epoch}",
                           showarrow=False, xanchor="left", yanchor="bottom", font={"size": 11, "color": "#6b7280"})
    fig.update_xaxes(title_text="epoch")
    fig.update_layout(height=320, margin={"l": 10, "r": 10, "t": 40, "b": 10}, legend={"orientation": "h", "y": -0.25})
    return fig


def class_loss_figure(rows: Sequence[dict[str, Any]], labels: Sequence[str]) -> go.Figure | None:
    """Each label's training loss per epoch (``train_loss_per_class``); None when the log has none."""
    fig = go.Figure()
    for label in labels:
        points = [(row.get("epoch", i), per[label]) for i, row in enumerate(rows, 1)
                  if isinstance(per := row.get("train_loss_per_class"), dict) and isinstance(per.get(label), (int, float))]
        if points:
            fig.add_trace(go.Scatter(x=[e for e, _ in points], y=[v for _, v in points], mode="lines",
                                     name=plot_text(label),
                                     hovertemplate="%{fullData.name}, epoch %{x}: %{y:.4f}<extra></extra>"))
    if not fig.data:
        return None
    fig.update_layout(height=320, xaxis_title="epoch", yaxis_title="training loss",
                      margin={"l": 10, "r": 10, "t": 20, "b": 10})
    return fig
