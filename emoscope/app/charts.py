"""The app's plotly figures: probabilities, confusion matrices, co-occurrence, PR curves,
reliability, top words and attention maps.

Plain functions from arrays to ``plotly`` figures, testable without Streamlit; the pages
pass them to ``st.plotly_chart``. Every label name and word is user text, and plotly.js reads
a subset of HTML in its strings (links, bold, line breaks), so each goes through
``render.plot_text`` first: escaped, shown as typed. Words are wrapped in Unicode first-strong
isolates so Arabic and English words keep their own direction in the axis labels. Hover texts
take a label through ``%{fullData.name}`` rather than pasting it into the template.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from emoscope.render import plot_text


def probability_figure(labels: list[str], probs: list[float], thresholds: list[float]):
    """A horizontal plotly bar per label, predicted labels highlighted, each threshold marked."""
    order = sorted(range(len(labels)), key=lambda i: probs[i])
    labels = [plot_text(label) for label in labels]
    colours = ["#7c3aed" if probs[i] >= thresholds[i] else "#c4b5fd" for i in order]
    fig = go.Figure(go.Bar(
        x=[probs[i] for i in order], y=[labels[i] for i in order], orientation="h", marker_color=colours,
        text=[f"{probs[i]:.2f}" for i in order], textposition="outside",
        hovertemplate="%{y}: %{x:.3f}<extra></extra>", name="probability"))
    fig.add_trace(go.Scatter(
        x=[thresholds[i] for i in order], y=[labels[i] for i in order], mode="markers",
        marker={"symbol": "line-ns-open", "size": 22, "color": "#111827", "line": {"width": 3, "color": "#111827"}},
        name="threshold", hovertemplate="threshold %{x:.2f}<extra></extra>"))
    fig.update_layout(xaxis={"range": [0, 1.08], "title": "probability"}, height=60 + 34 * len(labels),
                      margin={"l": 10, "r": 10, "t": 10, "b": 40}, showlegend=False)
    return fig


def confusion_grid(matrices, labels: list[str]):
    """One 2x2 heatmap per label (counts, with row rates in the hover)."""
    cols = min(4, len(labels))
    rows = -(-len(labels) // cols)
    labels = [plot_text(label) for label in labels]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=labels, horizontal_spacing=0.06, vertical_spacing=0.12)
    for k, (label, m) in enumerate(zip(labels, matrices)):
        m = np.asarray(m)
        rates = m / np.maximum(m.sum(1, keepdims=True), 1)
        text = [[f"{m[i, j]}<br>{rates[i, j]:.0%}" for j in range(2)] for i in range(2)]
        fig.add_trace(go.Heatmap(z=rates, x=["pred 0", "pred 1"], y=["gold 0", "gold 1"], text=text,
                                 texttemplate="%{text}", colorscale="Purples", zmin=0, zmax=1, showscale=False, name=label,
                                 hovertemplate="%{fullData.name}: %{y}, %{x}<br>%{text}<extra></extra>"),
                      row=k // cols + 1, col=k % cols + 1)
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(height=230 * rows, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def cooccurrence_figure(matrix, labels: list[str], title: str):
    """A label × label heatmap of P(column | row)."""
    labels = [plot_text(label) for label in labels]
    fig = go.Figure(go.Heatmap(z=matrix, x=labels, y=labels, colorscale="Purples", zmin=0, zmax=1,
                               texttemplate="%{z:.2f}", hovertemplate="P(%{x} | %{y}) = %{z:.2f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title=plot_text(title), height=120 + 32 * len(labels), margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def pr_curve_figure(curve: dict, point: tuple[float, float], label: str):
    """One label's precision–recall curve, its current threshold marked."""
    label = plot_text(label)
    fig = go.Figure(go.Scatter(x=curve["recall"], y=curve["precision"], mode="lines", name=label,
                               customdata=curve["thresholds"],
                               hovertemplate="threshold %{customdata:.3f}<br>recall %{x:.2f}, precision %{y:.2f}<extra></extra>"))
    fig.add_trace(go.Scatter(x=[point[0]], y=[point[1]], mode="markers", marker={"size": 13, "color": "#dc2626"},
                             name="current threshold"))
    fig.update_layout(xaxis={"title": "recall", "range": [0, 1.02]}, yaxis={"title": "precision", "range": [0, 1.02]},
                      height=320, margin={"l": 10, "r": 10, "t": 30, "b": 10}, title=f"{label}: precision–recall")
    return fig


def reliability_figure(table, label: str):
    """Observed frequency against mean predicted probability per bin, beside the diagonal."""
    label = plot_text(label)
    fig = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "#9ca3af"},
                               name="perfect"))
    fig.add_trace(go.Scatter(x=table["predicted"], y=table["observed"], mode="lines+markers", name=label,
                             text=table["count"], hovertemplate="predicted %{x:.2f}, observed %{y:.2f} (n=%{text})<extra></extra>"))
    fig.update_layout(xaxis={"title": "mean predicted probability", "range": [0, 1]},
                      yaxis={"title": "observed frequency", "range": [0, 1]}, height=300,
                      margin={"l": 10, "r": 10, "t": 30, "b": 10}, title=f"{label}: reliability", showlegend=False)
    return fig


def top_words_figure(pairs: list[tuple[str, float]], label: str):
    """The highest-scoring words for a label as horizontal bars (orange for, purple against)."""
    pairs = list(reversed(pairs))
    fig = go.Figure(go.Bar(x=[s for _, s in pairs], y=[plot_text(w, isolate=True) for w, _ in pairs], orientation="h",
                           marker_color=["#e66101" if s > 0 else "#5e3c99" for _, s in pairs],
                           hovertemplate="%{y}: %{x:.4f}<extra></extra>"))
    fig.update_layout(title=f"top words for {plot_text(label)}", height=80 + 26 * len(pairs),
                      margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def attention_figure(matrix, words: list[str], title: str):
    """A word × word attention heatmap."""
    isolated = [plot_text(w, isolate=True) for w in words]
    fig = go.Figure(go.Heatmap(z=matrix, x=isolated, y=isolated, colorscale="Purples",
                               hovertemplate="%{y} → %{x}: %{z:.3f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title=plot_text(title), height=160 + 22 * len(words), margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig
