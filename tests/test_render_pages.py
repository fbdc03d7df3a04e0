"""User text rendered as text on every page (issue 16, item 3), through AppTest on real tiny bundles.

Two bundles are trained the same way on the same texts: one with plain label names, one whose
label names, name and description hold Markdown, HTML, bidi controls and ``$math$``. Every page
that shows user text (Predict, Explain, Errors, Evaluate on the validation set and on an upload,
Batch and its preview, Words across a dataset, Thresholds, Model, Train's failed-run line, and the
sidebar) is visited
the same way twice: with the plain bundle and plain texts, and with the payload bundle and
payload texts (typed, uploaded, in the validation set, in a run's log). The pages must draw the
same elements both times: every Markdown-bearing string (bodies, widget and tab labels) renders
to the same tags (CommonMark with raw HTML on, tables and strikethrough: stricter than
Streamlit), with no unescaped ``$`` (math) or bare link opening more than the plain run has;
plotly strings carry the same tags (plotly.js reads ``<a>``, ``<b>``, ``<br>``…); HTML bodies
hold only the renderer's ``div``/``span``/``style`` with the text inside exactly as typed; tables
hold the text verbatim; and every direction control user text brings is closed where it opened.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
from markdown_it import MarkdownIt  # installed with the pinned huggingface-hub (typer → rich → markdown-it-py)
from streamlit.testing.v1 import AppTest

from conftest import make_rows, tiny_config, write_brighter_csv

APP = str(Path(__file__).parent.parent / "app.py")
LABELS = ("anger", "fear", "joy", "sadness")
PAYLOAD_LABELS = {"anger": "**x** <script>alert(1)</script> :red[x]",
                  "fear": "[a](http://evil) ![p](http://evil/t.png)",
                  "joy": "joy \u202e $math$ <img src=x onerror=alert(2)>",
                  "sadness": "# h \u2066sad _i_"}
PAYLOAD = ("so furious **x** [a](http://evil) ![p](http://evil/t.png)\n\n# h <script>alert(1)</script> "
           "<img src=x onerror=alert(2)> \u202eevil\u202c \u2066iso\u2069\u2069 \u2067open $math$ http://evil.example "
           "www.evil.example")
PLAIN = "so furious today and we went home and it felt sad"
MD = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
MARKDOWN_KINDS = {"markdown", "caption", "header", "subheader", "title", "error", "warning", "info", "success"}
MATH = re.compile(r"(?<!\\)\$")
BARE_LINK = re.compile(r"[A-Za-z]://|www\.", re.IGNORECASE)
TAG = re.compile(r"<\s*(/?\s*[A-Za-z][A-Za-z0-9]*)")
OPENERS, CLOSERS = {"\u202a": "\u202c", "\u202b": "\u202c", "\u202d": "\u202c", "\u202e": "\u202c",
                    "\u2066": "\u2069", "\u2067": "\u2069", "\u2068": "\u2069"}, {"\u202c", "\u2069"}


class Parsed(HTMLParser):
    """Start tags with their attributes, and the text, of an HTML string."""

    def __init__(self, markup: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(markup)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def bidi_balanced(text: str) -> bool:
    """Every direction control opened in ``text`` is closed in it, and nothing closes what it did not open."""
    stack: list[str] = []
    for char in text:
        if char in OPENERS:
            stack.append(OPENERS[char])
        elif char in CLOSERS:
            if char not in stack:
                return False
            while stack.pop() != char:
                pass
    return not stack


def markdown_signature(source: str) -> tuple:
    return tuple(tag for tag, _ in Parsed(MD.render(source)).tags), len(MATH.findall(source)), \
        len(BARE_LINK.findall(source))


def walk(node):
    yield node
    for child in (getattr(node, "children", None) or {}).values():
        yield from walk(child)


def page_view(at) -> dict:
    """What a page drew: each Markdown string's signature, plotly tags, HTML bodies, table cells."""
    view = {"markdown": [], "sources": [], "plotly": [], "html": [], "cells": []}
    for node in walk(at._tree):
        kind = getattr(node, "type", None)
        if kind in MARKDOWN_KINDS:
            view["sources"].append(node.value)
            view["markdown"].append((kind, markdown_signature(node.value)))
        if isinstance(getattr(node, "label", None), str):
            view["sources"].append(node.label)
            view["markdown"].append((f"{kind} label", markdown_signature(node.label)))
        if kind == "html":
            view["html"].append(node.proto.body)
        if kind == "plotly_chart":
            strings = [s for s in re.findall(r'"((?:[^"\\]|\\.)*)"', node.proto.spec)]
            view["sources"] += [json.loads(f'"{s}"') for s in strings]
            view["plotly"].append(sorted(set(m.replace(" ", "") for s in strings for m in TAG.findall(json.loads(f'"{s}"')))))
        if kind == "dataframe":
            frame = node.value
            view["cells"] += [str(c) for c in frame.columns] + [str(v) for v in frame.astype(str).to_numpy().ravel()]
    return view


def _train(tiny_encoder, folder: Path, labels: dict[str, str], name: str, description: str) -> Path:
    def rows(n, seed):
        return [{labels.get(k, k): v for k, v in r.items()} for r in make_rows(n, seed)]

    data = {"train": write_brighter_csv(folder / "train.csv", rows(160, 1)),
            "dev": write_brighter_csv(folder / "dev.csv", rows(60, 2))}
    from emoscope.training import train  # torch: only when the fixture trains

    config = tiny_config(tiny_encoder, data, epochs=2).replace(name=name, description=description)
    return train(config, folder / "bundle", progress=False, log=lambda _: None)


@pytest.fixture(scope="module")
def bundles(tiny_encoder, tmp_path_factory):
    root = tmp_path_factory.mktemp("render-bundles")
    plain = _train(tiny_encoder, root / "plain", {}, "plain", "a plain description of a plain model")
    payload = _train(tiny_encoder, root / "payload", PAYLOAD_LABELS, "**n** [n](http://evil) <script>x</script>",
                     "**d** <img src=x onerror=alert(2)> \u202e $d$")
    return {"plain": (plain, list(LABELS), PLAIN), "payload": (payload, [PAYLOAD_LABELS[k] for k in LABELS], PAYLOAD)}


def _upload_csv(labels: list[str], text: str, rows: int = 6) -> bytes:
    """A labelled CSV: the text column, then one 0/1 column per label (a mix of both)."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["text", *labels])
    for i in range(rows):
        writer.writerow([f"{text} {i}", *[(i + j) % 2 for j in range(len(labels))]])
    return out.getvalue().encode("utf-8")


def _fake_failed_run(models: Path, reason: str) -> None:
    import subprocess
    import sys

    from emoscope import jobs

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    folder = jobs.runs_dir(models)
    folder.mkdir(parents=True)
    (folder / "r1.log").write_text(f"emoscope train: error: {reason}\n", encoding="utf-8")
    info = {"id": "r1", "pid": proc.pid, "recipe": "x.toml", "name": "x", "log": str(folder / "r1.log"),
            "started": time.time() - 60, "state": "running", "epochs": 1, "kind": "encoder-classifier", "encoders": ["e"]}
    (folder / "r1.json").write_text(json.dumps(info), encoding="utf-8")


def _button(at, label: str):
    return next(b for b in at.button if b.label.startswith(label))


def visit_every_page(tmp_path, monkeypatch, bundle: Path, labels: list[str], text: str) -> dict[str, dict]:
    """Every page that shows user text, driven the same way; what each drew."""
    from emoscope.app import state

    models = tmp_path / "models"
    shutil.copytree(bundle, models / "bundle")
    _fake_failed_run(models, f"the data at line 3 reads {text}")
    (tmp_path / "recipes").mkdir()
    monkeypatch.setenv("EMOSCOPE_MODELS_DIR", str(models))
    monkeypatch.setenv("EMOSCOPE_RECIPES_DIR", str(tmp_path / "recipes"))
    monkeypatch.setenv("EMOSCOPE_CACHE_DIR", str(tmp_path / "cache"))  # the Words page's attributions
    read_validation = state.read_validation
    monkeypatch.setattr(state, "read_validation", lambda path, manifest: dataclasses.replace(
        read_validation(path, manifest), texts=[f"{text} {t}" for t in read_validation(path, manifest).texts]))
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state[f"thresholds::{models / 'bundle'}"] = [0.0] * len(labels)  # every label predicted, both runs
    at.session_state["explain_labels"] = [labels[0]]
    at.run()
    at.text_area(key="predict_text").input(text).run()
    seen = {"predict": page_view(at)}
    at.switch_page("pages/explain.py").run()
    at.text_area(key="explain_text").input(text).run()
    at.radio(key="explain_method").set_value("attention").run()
    _button(at, "Explain").click().run()
    seen["explain"] = page_view(at)
    at.switch_page("pages/errors.py").run()
    seen["errors"] = page_view(at)
    at.switch_page("pages/evaluate.py").run()
    seen["evaluate"] = page_view(at)
    at.radio[0].set_value("an uploaded labelled file").run()
    at.get("file_uploader")[0].upload("labelled.csv", _upload_csv(labels, text), "text/csv")
    at.run()
    seen["evaluate upload"] = page_view(at)
    at.switch_page("pages/batch.py").run()
    at.get("file_uploader")[0].upload("rows.csv", _upload_csv([f"{text} column"], text), "text/csv")
    at.run()
    _button(at, "Predict").click().run()
    seen["batch"] = page_view(at)
    at.switch_page("pages/words.py").run()
    at.select_slider(key="words_steps").set_value(4).run()
    _button(at, "Explain the dataset").click().run()
    seen["words"] = page_view(at)
    for page in ("thresholds", "model", "train"):
        at.switch_page(f"pages/{page}.py").run()
        seen[page] = page_view(at)
    assert not at.exception, at.exception
    return seen


@pytest.fixture(scope="module")
def views(bundles, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    try:
        out = {}
        for run, (bundle, labels, text) in bundles.items():
            out[run] = visit_every_page(tmp_path_factory.mktemp(run), mp, bundle, labels, text)
            mp.undo()
        return out
    finally:
        mp.undo()


PAGES = ("predict", "explain", "errors", "evaluate", "evaluate upload", "batch", "words", "thresholds", "model", "train")


@pytest.mark.parametrize("page", PAGES)
def test_user_text_adds_no_markdown_element(views, page):
    plain, payload = views["plain"][page]["markdown"], views["payload"][page]["markdown"]
    assert len(plain) == len(payload), (plain, payload)
    for mine, theirs in zip(plain, payload):
        assert mine == theirs, f"{page}: the payload drew {theirs}, the plain text {mine}"


@pytest.mark.parametrize("page", PAGES)
def test_user_text_adds_no_plotly_markup(views, page):
    assert views["plain"][page]["plotly"] == views["payload"][page]["plotly"]


@pytest.mark.parametrize("page", ["predict", "explain", "errors", "words"])
def test_html_holds_only_the_renderers_spans_with_the_text_exactly_as_typed(views, page):
    bodies = [b for b in views["payload"][page]["html"] if "<style>" not in b]
    assert bodies, page
    for body in bodies:
        parsed = Parsed(body)
        for tag, attrs in parsed.tags:
            assert tag in ("div", "span"), (page, tag)
            assert set(attrs) <= {"class", "dir", "style", "title", "data-score"}, (page, attrs)
            assert tag == "div" or attrs.get("class") == "es-word", (page, attrs)
        text = "".join(parsed.text)
        assert PAYLOAD in text, (page, text)  # shown whole, as typed: nothing stripped, nothing turned into markup


@pytest.mark.parametrize("page", PAGES)
def test_direction_controls_from_user_text_are_closed_where_they_open(views, page):
    for source in views["payload"][page]["sources"]:
        assert bidi_balanced(source), (page, source)


def test_the_payload_reaches_the_pages_as_text(views):
    shown = views["payload"]
    rendered = " ".join("".join(Parsed(MD.render(s)).text) for page in shown.values() for s in page["sources"])
    plain = "".join(c for c in rendered if c not in OPENERS and c not in CLOSERS)
    for label in PAYLOAD_LABELS.values():  # the label names, visible as typed (on one line)
        assert "".join(c for c in " ".join(label.split()) if c not in OPENERS and c not in CLOSERS) in plain, label
    cells = shown["errors"]["cells"] + shown["batch"]["cells"]
    assert any(PAYLOAD in cell for cell in shown["errors"]["cells"])  # the table: verbatim
    assert f"{PAYLOAD} column" in cells and any(cell.startswith(f"{PAYLOAD} 0") for cell in cells)


def _first_run_view(tmp_path: Path, monkeypatch, name: str, text: str) -> dict:
    """The first-run screen (no bundle yet) following a run whose name and stage line hold ``text``."""
    from emoscope import jobs

    models = tmp_path / "models"
    _fake_failed_run(models, f"the data at line 3 reads {text}")
    info_path = jobs.runs_dir(models) / "r1.json"
    info = json.loads(info_path.read_text(encoding="utf-8"))
    info_path.write_text(json.dumps({**info, "name": name}), encoding="utf-8")
    with open(info["log"], "a", encoding="utf-8") as log:
        log.write(f"[stage 1] reading {text}\n")
    monkeypatch.setenv("EMOSCOPE_MODELS_DIR", str(models))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("pages/first_run.py").run()
    assert not at.exception, at.exception
    return page_view(at)


def test_the_first_run_screen_shows_the_runs_name_and_stage_as_text(tmp_path, monkeypatch):
    plain = _first_run_view(tmp_path / "plain", monkeypatch, "plain", PLAIN)
    payload = _first_run_view(tmp_path / "payload", monkeypatch, "**n** [n](http://evil) <script>x</script>", PAYLOAD)
    assert plain["markdown"] == payload["markdown"]
    assert any("<script>x</script>" in "".join(Parsed(MD.render(s)).text) for s in payload["sources"])
    for source in payload["sources"]:
        assert bidi_balanced(source), source
