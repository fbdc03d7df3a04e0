"""The fast CPU scoring path (issue 17, item 4): ONNX Runtime encoders, their own thresholds.

Tiny bundles built here (a single-encoder one from conftest, a stacked one with a fine-tuned
base classifier and a frozen encoder of another tokenizer): the fast path's probabilities stay
within ``TOLERANCE`` of the fp32 path's; ``emoscope tune-fast`` tunes thresholds on the bundle's
validation texts from the fast path's own probabilities and records them, with what made them, in
the manifest; a bundle without them refuses ``--fast`` with a one-line hint; bundles from before
load as before; the manifest's new field round-trips and is validated.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from emoscope import bundle as bundle_io
from emoscope.cli import main
from emoscope.errors import BundleError
from emoscope.manifest import Manifest, PathThresholds

TOLERANCE = 1e-4
"""Largest |fast - fp32| probability allowed (measured on these bundles: about 1e-6; on the real
default bundle see docs/BENCHMARKS.md, "Fast CPU path")."""

TEXTS = ["furious", "the day was sad and we went home crying", "اليوم كان سعيد و فرح في البيت",
         "scared " * 40, "happy غاضب delighted حزين today", "it felt"]


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    """One export cache for this module's tests, away from the user's."""
    monkeypatch.setenv("EMOSCOPE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "fast-cache"))


@pytest.fixture(scope="module")
def stack_bundle(tiny_encoder, tiny_encoder_b, tiny_data, tmp_path_factory):
    import os

    from conftest import tiny_stack_config

    from emoscope.training import train_stack

    old = os.environ.get("EMOSCOPE_CACHE_DIR")
    os.environ["EMOSCOPE_CACHE_DIR"] = str(tmp_path_factory.getbasetemp() / "fast-cache")
    config = tiny_stack_config([(tiny_encoder, True), (tiny_encoder_b, False)], tiny_data, folds=0, epochs=2)
    config = replace(config, meta=replace(config.meta, epochs=5, base_logits=True))
    try:
        yield train_stack(config, tmp_path_factory.mktemp("fast-stack") / "s", progress=False, log=lambda _: None)
    finally:
        if old is None:
            os.environ.pop("EMOSCOPE_CACHE_DIR")
        else:
            os.environ["EMOSCOPE_CACHE_DIR"] = old


def _copy(bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundle, tmp_path / bundle.name))


@pytest.mark.parametrize("kind", ["single", "stacked"])
def test_fast_probabilities_match_fp32_and_thresholds_are_tuned_for_the_path(kind, tiny_bundle, stack_bundle,
                                                                               tmp_path):
    from emoscope.fast_path import tune_fast
    from emoscope.predict import Predictor
    from emoscope.thresholds import tune_thresholds

    folder = _copy(tiny_bundle if kind == "single" else stack_bundle, tmp_path)
    before = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    record = tune_fast(folder)
    fp32, fast = Predictor(folder), Predictor(folder, fast=True)
    diff = np.abs(fast.predict_proba(TEXTS) - fp32.predict_proba(TEXTS))
    assert diff.max() < TOLERANCE
    # The recorded thresholds are the fast path's own, tuned on its probabilities of the validation texts.
    validation = bundle_io.read_validation(folder, fp32.manifest)
    expected = tune_thresholds(validation.labels, fast.predict_proba(validation.texts), label_mask=validation.mask)
    np.testing.assert_allclose(record.thresholds, expected)
    np.testing.assert_allclose(fast.thresholds, np.asarray(expected, dtype=np.float32))
    assert record.n_texts == len(validation.texts) and record.runtime.startswith("onnxruntime=")
    assert record.max_abs_diff < TOLERANCE and 0 <= record.mean_abs_diff <= record.max_abs_diff
    assert abs(record.macro_f1 - record.reference_macro_f1) < 0.05
    after = bundle_io.read_manifest(folder, verify=True)  # every file still matches its hash
    assert after.path_thresholds["onnxruntime"] == record
    assert after.thresholds == before["thresholds"] and after.files == Manifest.from_dict(before).files
    assert list(fast.predict(["furious"])[0].probabilities) == fp32.labels


def test_a_bundle_without_fast_thresholds_refuses_fast_with_a_hint(tiny_bundle, capsys):
    from emoscope.predict import Predictor

    with pytest.raises(BundleError, match="emoscope tune-fast --model"):
        Predictor(tiny_bundle, fast=True)
    assert main(["predict", "--model", str(tiny_bundle), "--text", "furious", "--fast"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"emoscope tune-fast --model {tiny_bundle}" in err


def test_old_bundles_load_unchanged(tiny_bundle):
    from emoscope.predict import Predictor

    raw = json.loads((tiny_bundle / "manifest.json").read_text(encoding="utf-8"))
    assert "path_thresholds" not in raw
    manifest = bundle_io.read_manifest(tiny_bundle)
    assert manifest.path_thresholds is None and manifest.to_dict() == raw
    assert Predictor(tiny_bundle).predict_proba(["furious"]).shape == (1, len(raw["labels"]))


def test_manifest_round_trip_and_validation(tiny_bundle):
    raw = json.loads((tiny_bundle / "manifest.json").read_text(encoding="utf-8"))
    n = len(raw["labels"])
    record = {"thresholds": [0.4] * n, "tuned_on": "validation", "n_texts": 60, "macro_f1": 0.5,
              "max_abs_diff": 1e-6, "runtime": "onnxruntime=1.31.1", "a_later_key": {"kept": True}}
    with_paths = {**raw, "path_thresholds": {"onnxruntime": record, "some-other-path": {"thresholds": [0.5] * n}}}
    manifest = Manifest.from_dict(with_paths)
    assert isinstance(manifest.path_thresholds["onnxruntime"], PathThresholds)
    assert manifest.path_thresholds["onnxruntime"].extra == {"a_later_key": {"kept": True}}
    assert manifest.to_dict() == with_paths
    assert replace(manifest, name="x").to_dict() == {**with_paths, "name": "x"}
    for bad, message in (({"onnxruntime": {"thresholds": [0.4] * (n - 1)}}, "one number in"),
                         ({"onnxruntime": {"thresholds": [1.5] * n}}, "one number in"),
                         ({"onnxruntime": {"n_texts": 3}}, "required field 'thresholds'"),
                         ({"onnxruntime": [0.4] * n}, "must be a JSON object"),
                         ([0.4] * n, "'path_thresholds' has the wrong type")):
        with pytest.raises(BundleError, match=message):
            Manifest.from_dict({**raw, "path_thresholds": bad})


def test_cli_tune_fast_then_evaluate_and_predict_fast(tiny_bundle, tiny_data, tmp_path, capsys):
    folder = _copy(tiny_bundle, tmp_path)
    assert main(["tune-fast", "--model", str(folder)]) == 0
    assert "validation macro-F1" in capsys.readouterr().out
    out = tmp_path / "m.json"
    assert main(["evaluate", "--model", str(folder), "--data", str(tiny_data["dev"]), "--fast", "--output", str(out)]) == 0
    assert "fast CPU path" in capsys.readouterr().out
    metrics = json.loads(out.read_text(encoding="utf-8"))
    assert metrics["path"] == "fast" and metrics["n_samples"] == 60
    scored = tmp_path / "scored.csv"
    assert main(["predict", "--model", str(folder), "--input", str(tiny_data["dev"]), "--output", str(scored),
                 "--fast", "--quiet"]) == 0
    assert "60 of 60 rows" in capsys.readouterr().out


def test_the_export_is_made_once_and_reused(tiny_bundle, tmp_path, monkeypatch):
    from emoscope.models import fast_cpu
    from emoscope.predict import Predictor

    monkeypatch.setenv("EMOSCOPE_CACHE_DIR", str(tmp_path / "cache"))
    folder = _copy(tiny_bundle, tmp_path)
    bundle_io.update_path_thresholds(folder, fast_cpu.FAST_PATH, PathThresholds(thresholds=[0.5] * 4))
    Predictor(folder, fast=True)
    [exported] = list((tmp_path / "cache" / "onnx").glob("*.onnx"))
    stamp = exported.stat().st_mtime_ns
    calls = []
    monkeypatch.setattr(fast_cpu.torch.onnx, "export", lambda *a, **k: calls.append(1))
    assert Predictor(folder, fast=True).predict_proba(["sad"]).shape == (1, 4)
    assert calls == [] and exported.stat().st_mtime_ns == stamp


def test_the_fast_model_scores_token_ids_only(tiny_bundle, tmp_path):
    from emoscope.errors import ConfigError
    from emoscope.fast_path import tune_fast
    from emoscope.predict import Predictor

    folder = _copy(tiny_bundle, tmp_path)
    tune_fast(folder)
    model = Predictor(folder, fast=True).model
    batches, _ = model.encode_texts(["furious"])
    with pytest.raises(ConfigError, match="token ids only"):
        model.encoders[0](attention_mask=batches[0]["attention_mask"], inputs_embeds=batches[0]["input_ids"])


def test_the_batch_page_scores_on_the_fast_path_with_its_thresholds(tiny_bundle, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from emoscope.fast_path import tune_fast
    from emoscope.predict import Predictor

    app = str(Path(__file__).parent.parent / "app.py")
    monkeypatch.setenv("EMOSCOPE_MODELS_DIR", str(tmp_path / "models"))
    plain = _copy(tiny_bundle, tmp_path / "models")
    at = AppTest.from_file(app, default_timeout=120).run()
    at.switch_page("pages/batch.py").run()
    assert not at.exception and at.checkbox(key="batch_fast").disabled  # no fast thresholds yet
    record = tune_fast(plain)
    # Thresholds of the fast path no fp32 threshold is near, so the labels tell which were used.
    record = replace(record, thresholds=[0.001, 0.999, 0.001, 0.999])
    bundle_io.update_path_thresholds(plain, "onnxruntime", record)
    at = AppTest.from_file(app, default_timeout=120).run()
    at.switch_page("pages/batch.py").run()
    at.checkbox(key="batch_fast").check().run()
    at.get("file_uploader")[0].upload("t.csv", "text\nso furious today\nسعيد اليوم\n".encode(), "text/csv")
    at.run()
    assert not at.exception
    assert any("fast path's own thresholds" in c.value for c in at.caption)
    at.button[0].click().run()
    assert not at.exception and "2 rows: 2 predicted" in at.success[0].value
    frame = at.dataframe[0].value
    probs = Predictor(plain, fast=True).predict_proba(["so furious today", "سعيد اليوم"])
    labels = Predictor(plain).labels
    expected = (probs >= np.asarray(record.thresholds, dtype=np.float32)).astype(int)
    assert expected[:, 0].tolist() == [1, 1] and frame[labels].to_numpy().tolist() == expected.tolist()
