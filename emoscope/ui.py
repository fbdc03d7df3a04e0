"""Plain functions behind the Streamlit pages: finding bundles, charts and safe HTML.

Kept out of the pages so they are testable without Streamlit and shared by every page.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

from emoscope.text import is_rtl

REPO_ROOT = Path(__file__).resolve().parent.parent


def models_dir() -> Path:
    """Where the app looks for bundles: ``EMOSCOPE_MODELS_DIR`` or ``models/`` in the checkout."""
    return Path(os.environ.get("EMOSCOPE_MODELS_DIR", REPO_ROOT / "models")).expanduser()


def bundle_label(manifest: dict[str, Any]) -> str:
    """A one-line description of a bundle for the model picker."""
    metrics = manifest.get("metrics", {})
    scored = metrics.get("eval") or metrics.get("validation") or {}
    score = f", macro-F1 {scored['macro_f1']:.2f}" if isinstance(scored.get("macro_f1"), float) else ""
    langs = "/".join(manifest.get("languages", [])) or "?"
    return f"{manifest.get('name', '?')} ({langs}, {len(manifest.get('labels', []))} labels{score})"


def text_html(text: str) -> str:
    """User text as escaped HTML that reads right to left when it is Arabic.

    ``dir="auto"`` lets the browser take the direction from the first strong character;
    when Arabic letters dominate the direction is set to ``rtl`` outright, so a text that
    starts with ``@user``, a Latin word or a number still reads (and aligns) right to left.
    """
    style = "white-space: pre-wrap; font-size: 1.15rem; line-height: 1.8; unicode-bidi: isolate"
    if is_rtl(text):
        return f'<div class="emoscope-text" dir="rtl" style="{style}; text-align: right">{html.escape(text)}</div>'
    return f'<div class="emoscope-text" dir="auto" style="{style}; text-align: start">{html.escape(text)}</div>'


# Streamlit's text inputs are left to right; plaintext bidi gives each paragraph the direction
# of its first strong character, so Arabic typed into them reads and aligns right to left.
INPUT_BIDI_CSS = "<style>textarea, input[type='text'] { unicode-bidi: plaintext; text-align: start; }</style>"


def probability_figure(labels: list[str], probs: list[float], thresholds: list[float]):
    """A horizontal plotly bar per label, predicted labels highlighted, each threshold marked."""
    import plotly.graph_objects as go

    order = sorted(range(len(labels)), key=lambda i: probs[i])
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
