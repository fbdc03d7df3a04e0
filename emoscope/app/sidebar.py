"""The sidebar model picker and where bundles are found: ``models_dir``, ``bundle_label``, ``pick_bundle``.

``models_dir`` and ``bundle_label`` are plain functions (no Streamlit at import, tested without
it); ``pick_bundle`` draws the picker (and, in a shared deployment, the line that says so,
``emoscope.app.access``) and imports Streamlit when it runs. A bundle's name, labels, encoders
and data names are user text: the caption escapes them (``render.escape_markdown``); the
picker's options are plain text.
"""

from __future__ import annotations

import os
from pathlib import Path
from emoscope.bundle import find_bundles, read_manifest
from emoscope.errors import EmoScopeError
from emoscope.manifest import Manifest
from emoscope.render import escape_markdown

REPO_ROOT = Path(__file__).resolve().parent.parent.parent


def models_dir() -> Path:
    """Where the app looks for bundles: ``EMOSCOPE_MODELS_DIR`` or ``models/`` in the checkout."""
    return Path(os.environ.get("EMOSCOPE_MODELS_DIR", REPO_ROOT / "models")).expanduser()


def bundle_label(manifest: Manifest) -> str:
    """A one-line description of a bundle for the model picker."""
    f1 = manifest.headline_f1()
    score = f", macro-F1 {f1:.2f}" if f1 is not None else ""
    langs = "/".join(manifest.languages) or "?"
    return f"{manifest.name or '?'} ({langs}, {manifest.n_labels} labels{score})"


def bundle_caption(manifest: Manifest) -> str:
    """What the picked bundle is: its kind, encoders, labels and training data."""
    encoders = ", ".join(escape_markdown(e.name or e.source) for e in manifest.model.encoders)
    labels = ", ".join(escape_markdown(label) for label in manifest.labels)
    n_train = manifest.n_train if manifest.n_train is not None else "?"
    return (f"{escape_markdown(manifest.model.kind)}: {encoders}  \nlabels: {labels}  \n"
            f"trained on {escape_markdown(manifest.train_data)} ({n_train} texts)")


def listed_bundles(folder: Path, preselect: str | None) -> list[Path]:
    """The bundles in ``folder``, newest first, with ``EMOSCOPE_MODEL`` first when it names one outside it."""
    bundles = find_bundles(folder)
    wanted = Path(preselect).expanduser() if preselect else None
    if wanted is not None and (wanted / "manifest.json").exists() and \
            not any(p.resolve() == wanted.resolve() for p in bundles):
        bundles.insert(0, wanted)  # a bundle outside the models folder, named explicitly
    return bundles


def pick_bundle() -> Path | None:
    """Sidebar picker over the bundles in the models folder; None when there are none."""
    import streamlit as st  # here, not at the top: models_dir and bundle_label stay Streamlit-free

    from emoscope.app.access import shared_note  # here: access imports Streamlit, this module stays free of it

    folder = models_dir()
    st.sidebar.title("EmoScope")
    shared_note()
    preselect = os.environ.get("EMOSCOPE_MODEL")
    bundles = listed_bundles(folder, preselect)
    if not bundles:
        return None
    labels = {}
    for path in bundles:
        try:
            labels[path] = bundle_label(read_manifest(path, verify=False))
        except EmoScopeError as exc:
            labels[path] = f"{path.name} (unreadable: {exc})"
    index = 0
    if preselect:
        wanted = Path(preselect).expanduser()
        match = [i for i, p in enumerate(bundles) if p.resolve() == wanted.resolve() or p.name == preselect]
        if match:
            index = match[0]
        else:
            st.sidebar.warning(f"EMOSCOPE_MODEL={preselect} is not a bundle (no manifest.json there or in {folder})")
    choice = st.sidebar.selectbox("Model", bundles, index=index, format_func=lambda p: labels[p], key="model_picker")
    try:
        st.sidebar.caption(bundle_caption(read_manifest(choice, verify=False)))
    except EmoScopeError:
        pass
    st.sidebar.caption(f"Bundles in `{folder}`")
    return choice
