"""The model card's training-curves chart: a small, dependency-free SVG drawn from the training log.

Two panels side by side, the training loss and the validation macro-F1 per epoch, with the
best epoch (the weights the bundle keeps) marked. Plain string building, no plotting library,
so every bundle can carry its chart (``training_curves.svg``) without matplotlib or a browser.
Only numbers and fixed captions go into the SVG; nothing a user typed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

WIDTH, HEIGHT = 720, 260
PANEL_W, PANEL_H = 300, 170  # plotting area of each panel
LEFT, TOP = 58, 38  # offsets of the first panel's plotting area
GAP = 360  # horizontal distance between the two panels' origins
PANELS = (("train_loss", "training loss", "#7c3aed"), ("val_macro_f1", "validation macro-F1", "#059669"))


def series(rows: Sequence[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    """(epoch, value) for every log row that holds a finite number under ``key``."""
    out = []
    for i, row in enumerate(rows, 1):
        value = row.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            epoch = row.get("epoch")
            out.append((epoch if isinstance(epoch, int) else i, float(value)))
    return out


def _scale(lo: float, hi: float, size: float, flip: bool) -> Any:
    span = (hi - lo) or 1.0
    return (lambda v: size - (v - lo) / span * size) if flip else (lambda v: (v - lo) / span * size)


def _panel(points: list[tuple[int, float]], title: str, colour: str, x0: float, best_epoch: int | None) -> list[str]:
    """One panel: frame, y range labels, epoch labels, the line and its dots, the best epoch."""
    epochs = [e for e, _ in points]
    values = [v for _, v in points]
    lo, hi = min(values), max(values)
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    fx = _scale(min(epochs), max(epochs), PANEL_W, flip=False) if len(epochs) > 1 else (lambda _: PANEL_W / 2)
    fy = _scale(lo, hi, PANEL_H, flip=True)
    out = [f'<g transform="translate({x0:.0f},{TOP})">',
           f'<text x="0" y="-14" font-size="13" font-weight="600">{title}</text>',
           f'<rect x="0" y="0" width="{PANEL_W}" height="{PANEL_H}" fill="none" stroke="#d1d5db"/>',
           f'<text x="-6" y="4" font-size="11" text-anchor="end">{hi:.3g}</text>',
           f'<text x="-6" y="{PANEL_H + 4}" font-size="11" text-anchor="end">{lo:.3g}</text>',
           f'<text x="0" y="{PANEL_H + 16}" font-size="11">{epochs[0]}</text>',
           f'<text x="{PANEL_W}" y="{PANEL_H + 16}" font-size="11" text-anchor="end">{epochs[-1]}</text>',
           f'<text x="{PANEL_W / 2:.0f}" y="{PANEL_H + 30}" font-size="11" text-anchor="middle">epoch</text>']
    if best_epoch in epochs:
        bx = fx(best_epoch)
        out.append(f'<line x1="{bx:.1f}" y1="0" x2="{bx:.1f}" y2="{PANEL_H}" stroke="#9ca3af" stroke-dasharray="4 3"/>')
        out.append(f'<text x="{bx + 3:.1f}" y="12" font-size="10" fill="#6b7280">best {best_epoch}</text>')
    coords = " ".join(f"{fx(e):.1f},{fy(v):.1f}" for e, v in points)
    out.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"/>')
    out += [f'<circle cx="{fx(e):.1f}" cy="{fy(v):.1f}" r="2.5" fill="{colour}"><title>epoch {e}: {v:.4f}</title></circle>'
            for e, v in points]
    return out + ["</g>"]


def curves_svg(rows: Sequence[dict[str, Any]], best_epoch: int | None = None) -> str | None:
    """The chart of a training log (one row per epoch), or None when it holds neither curve."""
    drawn = [(series(rows, key), title, colour) for key, title, colour in PANELS]
    drawn = [d for d in drawn if d[0]]
    if not drawn:
        return None
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
             f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" fill="#111827">',
             "<title>Training curves: training loss and validation macro-F1 per epoch</title>",
             f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>']
    for k, (points, title, colour) in enumerate(drawn):
        parts += _panel(points, title, colour, LEFT + k * GAP, best_epoch)
    return "\n".join(parts + ["</svg>"]) + "\n"
