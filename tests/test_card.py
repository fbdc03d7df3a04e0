"""The model card: every section of a trained tiny bundle's README.md holds the run's own figures
(asserted against its manifest, validation data and training log), it is in the file table,
``emoscope card`` adds it to a bundle trained without one, and user text is escaped in it."""

from __future__ import annotations

import json
import re
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest

from conftest import EVIL_LABELS, EVIL_NAME, tiny_stack_config
from emoscope.bundle import read_manifest, read_training_log, read_validation, update_thresholds
from emoscope.card import CARD, CURVES, LICENCES, card_sections, render_card
from emoscope.render import escape_markdown
from emoscope.cli import main
from emoscope.encoders import SOURCES
from emoscope.errors import BundleError
from emoscope.metrics import compute_metrics
from emoscope.toml_writer import recipe_toml

SECTIONS = ["What it is", "Intended use and limits", "Labels", "Recipe", "Encoders", "Data", "Results", "Thresholds",
            "Training curves", "Cost", "Library versions", "How to load it"]

def quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def stack_bundle(tiny_encoder, tiny_encoder_b, tiny_data, tmp_path_factory, monkeypatch_module):
    from emoscope.training import train

    monkeypatch_module.setenv("EMOSCOPE_CACHE_DIR", str(tmp_path_factory.mktemp("card-cache")))
    config = tiny_stack_config([(tiny_encoder, True), (tiny_encoder_b, False)], tiny_data, folds=2, epochs=2)
    out = tmp_path_factory.mktemp("card-stack") / "tiny-stack"
    return train(config, out, progress=False, log=quiet, work=out.parent / "work")


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def section(card: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", card, re.M | re.S)
    assert match, f"no section {title!r}"
    return match.group(1)


def row(text: str, first: str) -> list[str]:
    """The cells of the table row whose first cell is ``first`` (escaped pipes stay in their cell)."""
    for line in text.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if cells and cells[0] == first:
            return cells
    raise AssertionError(f"no row {first!r} in\n{text}")


def f4(x: float) -> str:
    return f"{x:.4f}"


def card_of(bundle: Path) -> str:
    return (bundle / CARD).read_text(encoding="utf-8")


def test_the_card_has_every_section_in_order(tiny_bundle):
    card = card_of(tiny_bundle)
    assert re.findall(r"^## (.+)$", card, re.M) == SECTIONS
    assert card.startswith("---\nlibrary_name: emoscope\npipeline_tag: text-classification\n")
    assert f"# {escape_markdown(read_manifest(tiny_bundle).name)}\n" in card


def test_labels_data_and_encoders_hold_the_runs_figures(tiny_bundle):
    m, card = read_manifest(tiny_bundle), card_of(tiny_bundle)
    validation = read_validation(tiny_bundle, m)
    labels = section(card, "Labels")
    for j, label in enumerate(m.labels):
        assert row(labels, escape_markdown(label))[1] == str(int(validation.labels[:, j].sum()))
    assert f"{int((validation.labels.sum(1) == 0).sum())} of the {len(validation.texts)} validation texts" in labels
    data = section(card, "Data")
    assert row(data, "train")[1:] == [escape_markdown(m.data["train"]), str(m.data["n_train"])]
    assert row(data, "validation")[1:] == [escape_markdown(m.data["validation"]), str(m.data["n_validation"])]
    assert m.data["train_fingerprint"] in data
    encoder = row(section(card, "Encoders"), "0")
    assert encoder[1:3] == [escape_markdown(m.model.encoders[0].label), escape_markdown(m.model.encoders[0].source)]
    assert encoder[-1] == "see the source" and f"max {m.model.max_length} tokens" in encoder[-2]
    assert "mixed-script" in section(card, "What it is") and f"each of its {m.n_labels} emotions" in card


def test_results_and_thresholds_are_the_manifests_per_class_figures(tiny_bundle):
    m, card = read_manifest(tiny_bundle), card_of(tiny_bundle)
    validation = read_validation(tiny_bundle, m)
    results, val = section(card, "Results"), m.metrics["validation"]
    assert row(results, "macro-F1")[1] == f4(val["macro_f1"]) and row(results, "Jaccard")[1] == f4(val["jaccard"])
    at_half = compute_metrics(validation.labels, validation.probs, 0.5, label_names=m.labels)["per_class"]
    for label, threshold in zip(m.labels, m.thresholds):
        pc = val["per_class"][label]
        assert row(results, escape_markdown(label))[1:] == [f4(pc["precision"]), f4(pc["recall"]), f4(pc["f1"]), str(pc["support"])]
        assert row(section(card, "Thresholds"), escape_markdown(label))[1:] == [f4(threshold), f4(pc["f1"]),
                                                                   f4(at_half[label]["f1"])]


def test_the_training_curves_are_the_logged_epochs(tiny_bundle):
    m, card, log = read_manifest(tiny_bundle), card_of(tiny_bundle), read_training_log(tiny_bundle)
    curves = section(card, "Training curves")
    assert f"]({CURVES})" in curves and len(log) == m.training["epochs_run"]
    for r in log:
        epoch = f"**{r['epoch']}**" if r["epoch"] == m.training["best_epoch"] else str(r["epoch"])
        assert row(curves, epoch)[1:4] == [f4(r["train_loss"]), f4(r["val_macro_f1"]), f4(r["val_micro_f1"])]
    svg = (tiny_bundle / CURVES).read_text(encoding="utf-8")
    assert svg.startswith("<svg") and svg.count("<polyline") == 2 and svg.count("<circle") == 2 * len(log)
    assert f"best {m.training['best_epoch']}" in svg


def test_cost_versions_recipe_and_usage_of_a_single_encoder_bundle(tiny_bundle):
    m, card = read_manifest(tiny_bundle), card_of(tiny_bundle)
    cost, t = section(card, "Cost"), m.training
    assert row(cost, "train (single encoder)")[1:] == [f"{t['seconds']:.1f}", f"{t['peak_rss_mb']:.1f}"]
    assert row(cost, "device")[1] == escape_markdown(t["device"]) and row(cost, "precision")[1] == m.precision
    assert row(cost, "torch threads")[1] == str(t["torch_threads"])
    for library, version in m.library_versions.items():
        assert row(section(card, "Library versions"), escape_markdown(library))[1] == escape_markdown(version)
    toml = re.search(r"```toml\n(.*?)\n```", card, re.S).group(1)
    assert tomllib.loads(toml) == _without_none(m.config)
    assert row(section(card, "Recipe"), "loss")[1] == m.config["loss"]["name"]
    usage = section(card, "How to load it")
    assert 'Predictor("models/tiny")' in usage and "emoscope predict --model models/tiny" in usage


def test_a_stacked_bundles_card_has_each_stage_and_each_encoder(stack_bundle):
    m, card = read_manifest(stack_bundle), card_of(stack_bundle)
    stages, cost = m.training["stages"], section(card, "Cost")
    for name, key in (("fine-tune", "finetune"), ("embed", "embed"), ("meta", "meta")):
        assert row(cost, name)[1:] == [f"{stages[key + '_seconds']:.1f}", f"{stages['peak_rss_mb_after'][key]:.1f}"]
    assert row(cost, "**total**")[1] == f"**{m.training['seconds']:.1f}**"
    encoders = section(card, "Encoders")
    for i, entry in enumerate(m.model.encoders):
        assert row(encoders, str(i))[1] == escape_markdown(entry.name)
        assert row(encoders, str(i))[5].startswith("fine-tuned" if entry.is_fine_tuned else "frozen")
    assert "2-fold out-of-fold stacking" in section(card, "What it is")
    assert row(section(card, "Recipe"), "stack")[1].startswith("folds 2")
    log = read_training_log(stack_bundle)
    curves = section(card, "Training curves")
    assert "meta-learner's" in curves and len(log) == m.training["epochs_run"]
    for r in log:
        epoch = f"**{r['epoch']}**" if r["epoch"] == m.training["best_epoch"] else str(r["epoch"])
        assert row(curves, epoch)[1:3] == [f4(r["train_loss"]), f4(r["val_macro_f1"])]
    for label in m.labels:
        assert row(section(card, "Results"), escape_markdown(label))[3] == f4(m.metrics["validation"]["per_class"][label]["f1"])


def test_the_card_is_in_the_file_table_and_the_bundle_verifies(tiny_bundle, tmp_path):
    m = read_manifest(tiny_bundle, verify=True)
    for name in (CARD, CURVES):
        assert m.files[name]["size"] == (tiny_bundle / name).stat().st_size
    copy = shutil.copytree(tiny_bundle, tmp_path / "copy")
    (copy / CARD).write_text(card_of(tiny_bundle).replace("0.", "9."), encoding="utf-8")
    with pytest.raises(BundleError, match="README.md"):
        read_manifest(copy)


def _without_card(bundle: Path, target: Path) -> Path:
    """A copy of ``bundle`` as bundles were before cards: no README.md or SVG, none listed."""
    copy = shutil.copytree(bundle, target)
    manifest_path = copy / "manifest.json"
    raw = json.loads(manifest_path.read_text(encoding="utf-8"))
    for name in (CARD, CURVES):
        (copy / name).unlink()
        del raw["files"][name]
    manifest_path.write_text(json.dumps(raw, ensure_ascii=False, indent=1), encoding="utf-8")
    return copy


def test_emoscope_card_adds_the_card_to_a_bundle_trained_without_one(tiny_bundle, tmp_path, capsys):
    old = _without_card(tiny_bundle, tmp_path / "old")
    read_manifest(old)
    assert main(["card", "--model", str(old)]) == 0
    assert "README.md" in capsys.readouterr().out
    m = read_manifest(old, verify=True)
    assert {CARD, CURVES} <= set(m.files)
    assert m.files[CARD] == read_manifest(tiny_bundle).files[CARD]  # the very card training wrote
    assert (old / CURVES).read_bytes() == (tiny_bundle / CURVES).read_bytes()
    assert main(["card", "--model", str(old)]) == 0 and read_manifest(old, verify=True).files == m.files
    assert not list(old.glob(".*.tmp"))


def test_emoscope_card_refuses_a_bundle_whose_other_files_fail_verification(tiny_bundle, tmp_path, capsys):
    old = _without_card(tiny_bundle, tmp_path / "old")
    before = (old / "manifest.json").read_bytes()
    head = old / "model" / "head.safetensors"
    head.write_bytes(head.read_bytes()[:-1] + b"\0")
    assert main(["card", "--model", str(old)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "head.safetensors" in err and "sha256" in err
    assert (old / "manifest.json").read_bytes() == before and not (old / CARD).exists()


def test_a_hand_edited_card_is_rewritten_by_emoscope_card(tiny_bundle, tmp_path):
    copy = shutil.copytree(tiny_bundle, tmp_path / "copy")
    (copy / CARD).write_text("edited by hand\n", encoding="utf-8")
    assert main(["card", "--model", str(copy)]) == 0
    assert card_of(copy) == card_of(tiny_bundle) and read_manifest(copy, verify=True)


def test_saving_thresholds_rewrites_the_card_with_them(tiny_bundle, tmp_path):
    copy = shutil.copytree(tiny_bundle, tmp_path / "copy")
    m = read_manifest(copy)
    validation = read_validation(copy, m)
    new = [0.25 + 0.1 * j for j in range(m.n_labels)]
    update_thresholds(copy, new)
    m = read_manifest(copy, verify=True)
    at_new = compute_metrics(validation.labels, validation.probs, np.asarray(new), label_names=m.labels)["per_class"]
    for label, threshold in zip(m.labels, new):
        assert row(section(card_of(copy), "Thresholds"), escape_markdown(label))[1:3] == [f4(threshold), f4(at_new[label]["f1"])]


def test_user_text_is_escaped_in_the_card(evil_bundle):
    card, m = card_of(evil_bundle), read_manifest(evil_bundle)
    assert m.labels[:2] == [EVIL_LABELS["anger"], EVIL_LABELS["fear"]] and m.name == EVIL_NAME
    body = card.split("<details>")[0] + card.split("</details>")[1]  # the TOML block shows the recipe verbatim
    assert "<script" not in body and "<img" not in body and "](http" not in body and "**bold** " not in body
    assert "&lt;script&gt;" in body and r"\[fear\]\(http\://evil.example\)" in body
    assert r"joy \*bold\* \$x\$" in body
    for label in m.labels:
        assert row(section(card, "Thresholds"), escape_markdown(label))  # each label has its row, escaped
    assert all(label not in (evil_bundle / CURVES).read_text(encoding="utf-8") for label in m.labels[:3])
    toml = re.search(r"```toml\n(.*?)\n```", card, re.S).group(1)
    assert tomllib.loads(toml)["name"] == EVIL_NAME


def test_md_escapes_markup_links_lists_and_streamlit_directives():
    assert escape_markdown("<b>x</b>") == "&lt;b&gt;x&lt;/b&gt;"
    assert escape_markdown("[a](javascript:alert(1))") == r"\[a\]\(javascript:alert\(1\)\)"
    assert escape_markdown("see https://x.org or www.x.org") == r"see https\://x.org or www\.x.org"
    assert escape_markdown("1. first") == r"1\. first" and escape_markdown("- item") == r"\- item" and escape_markdown("a\n# b") == r"a \# b"
    assert escape_markdown(":red[x] $y$ a_b") == r":red\[x\] \$y\$ a\_b"


def test_recipe_toml_round_trips_what_a_bundle_records():
    config = {"name": 'say "hi"\\ \x7f', "description": "", "eval": None,
              "data": {"train": ["brighter:ary:train", "x.csv"], "eval": None, "max_train": 5},
              "encoders": [{"source": "me5-small", "fine_tune": False, "seed": None}, {"source": "/m/x", "lr": 3e-05}],
              "loss": {"name": "focal", "gamma": 2.0, "weird key": True}}
    assert tomllib.loads(recipe_toml(config)) == _without_none(config)


def test_every_offline_source_has_its_licence():
    assert set(SOURCES) <= set(LICENCES)
    assert LICENCES["me5-small"][1].startswith("MIT") and LICENCES["minilm-l6"][1] == "Apache-2.0"


def test_sections_without_validation_data_or_log_still_render(tiny_bundle):
    m = read_manifest(tiny_bundle)
    sections = {s.key: s for s in card_sections(m, None, [])}
    assert "no per-epoch training log" in sections["curves"].body
    assert all(escape_markdown(label) in sections["labels"].body for label in m.labels)
    assert "](training_curves.svg)" not in render_card(m, None, [])


def _without_none(value):
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value
