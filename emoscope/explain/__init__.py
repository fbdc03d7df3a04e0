"""Word-level explanations of EmoScope's own multi-label models: LIME, attention, Integrated Gradients.

One interface for every method and every bundle: ``explain(model, text, method, labels, params)``
returns an :class:`Explanation` holding, for each requested label, one score per word of the
*original* text (with character offsets, so the text can be highlighted exactly as typed), the
label's probability, the method and its resolved parameters, the runtime and quality
diagnostics. Words are the project's own segmentation (``emoscope.text.segment_words``):
diacritised Arabic stays whole, an emoji is a word, and every encoder of a stack maps its
sub-words onto the same words.

One module per concern:

* ``results``: :class:`Explanation`, :class:`LabelExplanation`, JSON both ways;
* ``model``: :class:`ExplainModel`, the loaded bundle as the explainers see it;
* ``params``: :class:`ParamSpec` (each method's declared parameters: name, type, default, help,
  range or choices) and :class:`Widget` (how the Explain page shows one);
* ``registry``: :func:`register_method`, :func:`resolve_params`, progress, :func:`explain`,
  :func:`explain_progressive` (estimates as they arrive, marked partial; Stop keeps them),
  :func:`explain_cached` (and :func:`cached_explanation`, a look-up that computes nothing);
* ``lime``, ``attention``, ``ig``, ``layer_ig``: one method each (registered on import, in the order the
  Explain page lists them: ig, lime, attention, layer-ig); ``layer_ig`` also in a batched form
  over many texts (the dataset view);
* ``faithfulness``: ERASER comprehensiveness and sufficiency, the random control,
  :func:`evaluate_methods`.

All user HTML goes through ``emoscope.render`` (``render_html`` is re-exported here).
"""

from __future__ import annotations

from emoscope.explain.model import ExplainModel, as_explain_model
from emoscope.explain.params import ParamSpec, Widget
from emoscope.explain.registry import (
    CACHE_SIZE,
    MAX_EXPLAIN_CHARS,
    METHODS,
    RegisteredMethod,
    Estimate,
    cached_explanation,
    estimates_wanted,
    explain,
    explain_cached,
    explain_progressive,
    method_info,
    parse_param,
    register_method,
    report_progress,
    resolve_params,
)
from emoscope.explain.results import Explanation, LabelExplanation

# the methods register themselves on import; this order is the order the Explain page lists them in
from emoscope.explain import ig, lime, attention, layer_ig  # noqa: E402,F401  isort: skip
from emoscope.explain.faithfulness import FRACTIONS, evaluate_methods, faithfulness, paired_summary, random_scores
from emoscope.explain.ig import ig_word_attributions
from emoscope.render import render_html

__all__ = ["CACHE_SIZE", "Estimate", "Explanation", "ExplainModel", "FRACTIONS", "LabelExplanation",
           "MAX_EXPLAIN_CHARS", "METHODS", "ParamSpec", "RegisteredMethod", "Widget", "as_explain_model",
           "cached_explanation", "estimates_wanted", "evaluate_methods", "explain", "explain_cached",
           "explain_progressive", "faithfulness", "ig_word_attributions", "method_info", "paired_summary",
           "parse_param", "random_scores", "register_method", "render_html", "report_progress", "resolve_params"]
