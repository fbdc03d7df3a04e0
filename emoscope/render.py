"""The one place user text becomes markup: escaped, direction-aware HTML for the app and the CLI,
and escaped Markdown (``escape_markdown``) for the model card and Streamlit captions.

Every HTML function here HTML-escapes each piece of user text it is given and returns
:class:`SafeHtml`, the only kind of string the app puts on a page as HTML
(``emoscope.app.markup.show_html`` refuses anything else). No Streamlit here, so the CLI
(``emoscope explain --format html``) and the tests use the same renderer as the pages.
"""

from __future__ import annotations

import html
import re
from typing import TYPE_CHECKING, Any

import numpy as np

from emoscope.errors import InputError
from emoscope.text import is_rtl

if TYPE_CHECKING:  # annotations only: emoscope.explain imports this module
    from emoscope.explain import Explanation


class SafeHtml(str):
    """Markup built by this module from escaped user text (a plain ``str`` everywhere else)."""


# Streamlit's text inputs are left to right; plaintext bidi gives each paragraph the direction
# of its first strong character, so Arabic typed into them reads and aligns right to left.
INPUT_BIDI_CSS = SafeHtml("<style>textarea, input[type='text'] { unicode-bidi: plaintext; text-align: start; }</style>")


def text_html(text: str) -> SafeHtml:
    """User text as escaped HTML that reads right to left when it is Arabic.

    ``dir="auto"`` lets the browser take the direction from the first strong character;
    when Arabic letters dominate the direction is set to ``rtl`` outright, so a text that
    starts with ``@user``, a Latin word or a number still reads (and aligns) right to left.
    """
    style = "white-space: pre-wrap; font-size: 1.15rem; line-height: 1.8; unicode-bidi: isolate"
    if is_rtl(text):
        return SafeHtml(f'<div class="emoscope-text" dir="rtl" style="{style}; text-align: right">'
                        f'{html.escape(text)}</div>')
    return SafeHtml(f'<div class="emoscope-text" dir="auto" style="{style}; text-align: start">{html.escape(text)}</div>')


def _colour(score: float, scale: float) -> str:
    """Diverging orange (supports the label) / purple (speaks against it), alpha by |score|."""
    if scale <= 0 or score == 0:
        return "transparent"
    alpha = min(1.0, abs(score) / scale) * 0.75
    r, g, b = (230, 97, 1) if score > 0 else (94, 60, 153)
    return f"rgba({r}, {g}, {b}, {alpha:.3f})"


def render_html(explanation: Explanation, label: str | None = None) -> SafeHtml:
    """The text as typed, each word a coloured span; safe for any user text.

    Every piece of user text is HTML-escaped; the container has ``dir="auto"``, the text block
    the direction of its script (right to left when Arabic dominates), and each word is a
    bidi-isolated span (``unicode-bidi: isolate``, ``dir="auto"``), so Arabic reads right to left
    while embedded English words and numbers keep their order; whitespace between words is kept.
    """
    if label is None:
        label = next(iter(explanation.labels))
    if label not in explanation.labels:
        raise InputError(f"label '{label}' was not explained; explained: {', '.join(explanation.labels)}")
    exp = explanation.labels[label]
    scores = np.asarray(exp.scores, dtype=float)
    scale = float(np.abs(scores).max()) if len(scores) else 0.0
    parts, cursor = [], 0
    text = explanation.text
    for word, score in zip(explanation.words, scores):
        parts.append(html.escape(text[cursor:word.start]))
        title = html.escape(f"{label}: {score:+.4f}", quote=True)
        parts.append(f'<span class="es-word" dir="auto" title="{title}" data-score="{score:.6f}" '
                     f'style="unicode-bidi: isolate; background-color: {_colour(score, scale)}; '
                     f'border-radius: 3px; padding: 0 2px">{html.escape(word.text)}</span>')
        cursor = word.end
    parts.append(html.escape(text[cursor:]))
    header = html.escape(f"{label} · p = {exp.probability:.3f} · {explanation.method}")
    # Every word is an isolate, so the browser's dir="auto" would find no strong character
    # outside them and fall back to left to right: the text's own direction is set explicitly.
    direction = "rtl" if is_rtl(text) else "ltr"
    align = "right" if direction == "rtl" else "left"
    return SafeHtml(f'<div class="emoscope-explanation" dir="auto">'
                    f'<div class="es-header" style="font-size: 0.85rem; opacity: 0.8">{header}</div>'
                    f'<div class="es-text" dir="{direction}" style="unicode-bidi: isolate; white-space: pre-wrap; '
                    f'line-height: 2; font-size: 1.1rem; text-align: {align}">{"".join(parts)}</div></div>')


def highlight_html(text: str, start: int, end: int, score: float, caption: str = "") -> SafeHtml:
    """``text`` with the word at ``[start, end)`` highlighted in the colour of ``score`` (orange:
    raises the label, purple: lowers it), the rest plain; an optional caption above. Escaped and
    direction-aware as :func:`render_html` is (the word a bidi-isolated span)."""
    if not 0 <= start <= end <= len(text):
        raise InputError(f"the word's offsets {start}..{end} are outside a text of {len(text)} characters")
    title = html.escape(f"{score:+.4f}", quote=True)
    word = (f'<span class="es-word" dir="auto" title="{title}" data-score="{score:.6f}" style="unicode-bidi: isolate; '
            f'background-color: {_colour(score, abs(score))}; border-radius: 3px; padding: 0 2px">'
            f'{html.escape(text[start:end])}</span>')
    direction = "rtl" if is_rtl(text) else "ltr"
    align = "right" if direction == "rtl" else "left"
    header = (f'<div class="es-header" style="font-size: 0.85rem; opacity: 0.8">{html.escape(caption)}</div>'
              if caption else "")
    return SafeHtml(f'<div class="emoscope-explanation" dir="auto">{header}'
                    f'<div class="es-text" dir="{direction}" style="unicode-bidi: isolate; white-space: pre-wrap; '
                    f'line-height: 2; font-size: 1.05rem; text-align: {align}">{html.escape(text[:start])}{word}'
                    f'{html.escape(text[end:])}</div></div>')


__all__ = ["INPUT_BIDI_CSS", "SafeHtml", "contain_bidi", "escape_markdown", "highlight_html", "isolate_bidi", "plot_text",
           "render_html", "text_html"]


# Explicit direction controls (UAX #9): embeddings and overrides, closed by PDF; isolates, closed by PDI.
_EMBEDDINGS, _PDF = "\u202a\u202b\u202d\u202e", "\u202c"
_ISOLATES, _PDI = "\u2066\u2067\u2068", "\u2069"
BIDI_CONTROLS = frozenset(_EMBEDDINGS + _PDF + _ISOLATES + _PDI)


def isolate_bidi(text: str) -> str:
    """``text`` between a first-strong isolate and its PDI, its own direction controls balanced.

    A right-to-left override (U+202E) or an isolate left open in user text would otherwise reorder
    what the page prints after it, and a stray PDI would close the isolate around it. Here every
    opener the text leaves open is closed at its end, and a closer with nothing of the text's own
    to close (which the bidi algorithm ignores, or which would close ours) is dropped: the text
    reads exactly as it does on its own, and nothing around it moves."""
    out, open_ = [], []
    for char in text:
        if char in _EMBEDDINGS or char in _ISOLATES:
            open_.append(_PDF if char in _EMBEDDINGS else _PDI)
        elif char == _PDF:
            if not open_ or open_[-1] != _PDF:
                continue  # closes nothing of the text's own (inside one of its isolates it cannot)
            open_.pop()
        elif char == _PDI:
            if _PDI not in open_:
                continue  # would close the isolate this function puts around the text
            while open_.pop() != _PDI:  # a PDI also ends the embeddings opened inside its isolate
                pass
        out.append(char)
    return "\u2068" + "".join(out) + "".join(reversed(open_)) + "\u2069"


def contain_bidi(text: str) -> str:
    """``text`` unchanged, or through :func:`isolate_bidi` when it holds explicit direction controls."""
    return isolate_bidi(text) if any(char in BIDI_CONTROLS for char in text) else text


def plot_text(text: Any, isolate: bool = False) -> str:
    """User text for a plotly label, title, legend or hover: plotly.js reads a subset of HTML in
    every string (``<a href>``, ``<b>``, ``<br>``, ``<span style>``…) and turns entities back into
    characters, so the HTML-escaped text shows as typed and never as markup or a link; direction
    controls are contained (``isolate`` wraps it in a first-strong isolate even without any, so an
    Arabic word keeps its own direction among English ones)."""
    text = str(text)
    return html.escape(isolate_bidi(text) if isolate else contain_bidi(text), quote=False)


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#!|~$<>])")
_MD_LINE_START = re.compile(r"^(\d+)([.)])|^([-+=])")  # what would open a list or a heading
_AUTOLINK = re.compile(r"(?<=[A-Za-z])(?=://)|(?<=www)(?=\.)", re.IGNORECASE)  # GFM's bare links


def escape_markdown(text: Any) -> str:
    """User text as Markdown that shows exactly that text on one line, never as markup, a link or
    a list: HTML-escaped; Markdown's (and Streamlit's ``$``) punctuation backslash-escaped; a
    leading list or heading marker and GFM's bare-link openings (``://``, ``www.``) broken; its
    direction controls contained (:func:`contain_bidi`), so it cannot reverse the text around it."""
    one_line = " ".join(str(text).split())
    escaped = _MD_SPECIAL.sub(r"\\\1", html.escape(one_line, quote=False))
    escaped = _MD_LINE_START.sub(lambda m: f"{m[1]}\\{m[2]}" if m[1] else f"\\{m[3]}", escaped)
    return contain_bidi(_AUTOLINK.sub("\\\\", escaped))
