"""What an explanation's scores cover, for a model with bases that read the text itself.

A stack's TF-IDF base reads the words directly, not through an encoder: gradient and attention
methods see only the encoders' path (the base's logits are constants of the text for them),
while a method that perturbs the text (LIME) changes what every part of the model reads. An
explanation of such a model says which in its diagnostics (``coverage``); a model without text
bases gets no such entry, so its explanations are what they always were.
"""

from __future__ import annotations

from emoscope.explain.model import ExplainModel

PERTURBS_TEXT = frozenset({"lime"})
"""Methods that score words by changing the text the whole model reads."""


def coverage(model: ExplainModel, method: str) -> dict[str, str]:
    """``{"coverage": ...}`` for a model with text bases, else ``{}``."""
    names = model.model.text_base_names
    if not names:
        return {}
    bases = ", ".join(names)
    if method in PERTURBS_TEXT:
        return {"coverage": f"the whole model: {method} removes words from the text, so the encoders and the text "
                            f"base(s) {bases} read every perturbed text"}
    return {"coverage": f"the encoders' path only: the text base(s) {bases} read the words directly, outside it "
                        f"({method} does not reach them; their logits stay this text's)"}
