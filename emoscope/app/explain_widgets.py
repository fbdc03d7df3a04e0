"""The Explain page's parameter widgets, built from each method's declared parameter specs.

One widget per :class:`~emoscope.explain.ParamSpec` that has a
:class:`~emoscope.explain.Widget`, in the method's page order:

* a choice (``choices``, or the fewer ``offered`` on the page) → a select box (radio buttons
  with ``radio``);
* a bool → a checkbox;
* a number with ``presets`` → a select slider over them;
* a number that also takes words (an attention head: a number or ``mean``), or a string →
  a text input (the registry turns ``"3"`` into 3 and names a bad value);
* any other number → a number input over the spec's range.

Bounds and choices that depend on the model are called on the ExplainModel. A parameter
whose ``only_if`` does not hold (layer and head under attention rollout) gets no widget and
keeps its default. No Streamlit import here: the page passes the container to draw in (``st``
or a column), so the builder is tested with a stand-in.
"""

from __future__ import annotations

from typing import Any

from emoscope.explain import ExplainModel, ParamSpec, RegisteredMethod
from emoscope.explain.params import resolve


def widget_key(method: str, name: str) -> str:
    """The session-state key of one parameter's widget (stable across reruns)."""
    return f"explain_{method}_{name}"


def param_widgets(method: RegisteredMethod, model: ExplainModel, ui: Any) -> dict[str, Any]:
    """Draw ``method``'s parameter widgets in ``ui`` and return the values chosen, by parameter name."""
    values: dict[str, Any] = {}
    for spec in method.page_specs():
        widget = spec.widget
        if widget is None or any(values.get(name, method.spec(name).default) != want
                                 for name, want in widget.only_if.items()):
            continue
        values[spec.name] = draw_widget(spec, model, ui, widget_key(method.name, spec.name))
    return values


def draw_widget(spec: ParamSpec, model: ExplainModel, ui: Any, key: str) -> Any:
    """One parameter's widget in ``ui`` (see the module docstring for which widget a spec gets)."""
    widget = spec.widget
    start = spec.default if widget.value is None else widget.value
    label, help_text = spec.label, spec.help
    options = resolve(widget.offered, model) if widget.offered is not None else resolve(spec.choices, model)
    if options is not None:
        options = list(options)
        index = options.index(start) if start in options else 0
        if widget.radio:
            return ui.radio(label, options, index=index, horizontal=True, help=help_text, key=key)
        return ui.selectbox(label, options, index=index, help=help_text, key=key)
    if spec.type is bool:
        return ui.checkbox(label, value=bool(start), help=help_text, key=key)
    if widget.presets:
        return ui.select_slider(label, options=list(widget.presets), value=start, help=help_text, key=key)
    if spec.words or spec.type is str:
        return ui.text_input(label, value=str(start), help=help_text, key=key)
    cast = int if spec.type is int else float
    low, high = resolve(spec.min, model), resolve(spec.max, model)
    return ui.number_input(label, min_value=None if low is None else cast(low),
                           max_value=None if high is None else cast(high), value=cast(start),
                           step=cast(1) if spec.type is int else None, help=help_text, key=key)
