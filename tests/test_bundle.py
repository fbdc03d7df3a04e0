"""Bundles: round trip, and clear refusals for missing, truncated, tampered or foreign ones."""

import json
import shutil

import numpy as np
import pytest

from emoscope.bundle import FORMAT_VERSION, find_bundles, read_manifest, save_bundle, update_thresholds
from emoscope.manifest import EncoderEntry, Manifest, ModelSpec
from emoscope.errors import BundleError
from emoscope.predict import Predictor


@pytest.fixture
def bundle_copy(tiny_bundle, tmp_path):
    return shutil.copytree(tiny_bundle, tmp_path / "copy")


def test_manifest_describes_the_model(tiny_bundle):
    m = read_manifest(tiny_bundle)
    assert m.format == "emoscope-bundle" and m.format_version == FORMAT_VERSION
    assert m.model.encoders[0].source.endswith("bert")
    assert {"torch", "transformers"} <= set(m.library_versions)
    assert len(m.thresholds) == len(m.labels)
    assert m.data["train_fingerprint"]
    assert "model/head.safetensors" in m.files and "model/encoder/model.safetensors" in m.files
    # No pickle anywhere in a bundle.
    assert not [p for p in tiny_bundle.rglob("*") if p.suffix in (".bin", ".pt", ".pkl", ".pickle")]


def test_missing_bundle(tmp_path):
    with pytest.raises(BundleError, match="not found"):
        read_manifest(tmp_path / "nope")


def test_directory_without_manifest(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(BundleError, match="no manifest.json"):
        read_manifest(tmp_path / "x")


def test_missing_weight_file(bundle_copy):
    (bundle_copy / "model" / "head.safetensors").unlink()
    with pytest.raises(BundleError, match="head.safetensors' is missing"):
        Predictor(bundle_copy)


def test_truncated_weight_file(bundle_copy):
    weights = bundle_copy / "model" / "encoder" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(BundleError, match="truncated"):
        Predictor(bundle_copy)


def test_corrupted_weight_file_same_size(bundle_copy):
    weights = bundle_copy / "model" / "head.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256"):
        Predictor(bundle_copy)


def test_corrupted_weights_unverified_still_fail_clearly(bundle_copy):
    weights = bundle_copy / "model" / "head.safetensors"
    weights.write_bytes(b"\x00" * weights.stat().st_size)
    with pytest.raises(BundleError):
        Predictor(bundle_copy, verify=False)


def test_newer_format_is_refused(bundle_copy):
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    manifest["format_version"] = FORMAT_VERSION + 1
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="newer EmoScope"):
        read_manifest(bundle_copy)


def test_foreign_manifest_is_refused(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "manifest.json").write_text('{"name": "something else"}')
    with pytest.raises(BundleError, match="not an EmoScope bundle"):
        read_manifest(tmp_path / "m")


def test_garbage_manifest_is_refused(bundle_copy):
    (bundle_copy / "manifest.json").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(BundleError, match="corrupted"):
        read_manifest(bundle_copy)


def test_label_count_mismatch_is_refused(bundle_copy):
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    manifest["labels"].append("trust")
    manifest["thresholds"].append(0.5)
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="labels"):
        Predictor(bundle_copy)


def test_file_entry_outside_bundle_is_refused(bundle_copy):
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    manifest["files"]["../../etc/passwd"] = {"size": 1, "sha256": "0"}
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="outside the bundle"):
        read_manifest(bundle_copy)


TINY_MANIFEST = Manifest(labels=["a"], thresholds=[0.5],
                         model=ModelSpec(kind="encoder-classifier", n_labels=1, encoders=[EncoderEntry(source="x")]))


def test_manifest_round_trips_and_keeps_what_it_does_not_know(tiny_bundle):
    raw = json.loads((tiny_bundle / "manifest.json").read_text(encoding="utf-8"))
    assert Manifest.from_dict(raw).to_dict() == raw
    raw["written_by_a_newer_version"] = {"x": 1}
    raw["model"]["encoders"][0]["adapter"] = "lora"
    assert Manifest.from_dict(raw).to_dict() == raw


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(labels="anger"), "labels"),
    (lambda m: m["model"].update(n_labels=99), "the model has 99"),
    (lambda m: m["model"].update(encoders=[]), "no encoders"),
    (lambda m: m["model"].pop("kind"), "kind"),
    (lambda m: m["model"].update(encoders=["x"]), "must be a JSON object"),
    (lambda m: m.update(files=["model/head.safetensors"]), "'files' has the wrong type"),
    (lambda m: m.update(model="encoder-classifier"), "model must be a JSON object"),
    (lambda m: m["model"].update(n_labels="4"), "'n_labels' has the wrong type"),
    (lambda m: m["model"]["encoders"][0].update(max_length=[64]), r"encoders\[0\]: 'max_length' has the wrong type"),
    (lambda m: m.update(labels=[["anger"], ["fear"]]), "labels"),
    (lambda m: m.update(thresholds=[True] * 4), "thresholds"),
])
def test_a_malformed_manifest_is_refused_by_name(tiny_bundle, edit, message):
    raw = json.loads((tiny_bundle / "manifest.json").read_text(encoding="utf-8"))
    edit(raw)
    with pytest.raises(BundleError, match=message):
        Manifest.from_dict(raw)


def test_interrupted_save_leaves_nothing_that_looks_whole(tmp_path):
    def crash(folder):
        folder.mkdir()
        (folder / "half.safetensors").write_bytes(b"123")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        save_bundle(tmp_path / "b", TINY_MANIFEST, crash)
    assert list(tmp_path.iterdir()) == []
    assert find_bundles(tmp_path) == []


def test_overwrite_replaces_only_when_complete(bundle_copy):
    before = (bundle_copy / "manifest.json").read_text()

    def crash(folder):
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        save_bundle(bundle_copy, TINY_MANIFEST, crash, overwrite=True)
    assert (bundle_copy / "manifest.json").read_text() == before
    with pytest.raises(BundleError, match="already exists"):
        save_bundle(bundle_copy, TINY_MANIFEST, lambda f: f.mkdir())


def test_update_thresholds_round_trip(bundle_copy):
    n = len(read_manifest(bundle_copy).labels)
    update_thresholds(bundle_copy, [0.3] * n)
    np.testing.assert_allclose(Predictor(bundle_copy).thresholds, [0.3] * n)
    with pytest.raises(BundleError, match="one threshold"):
        update_thresholds(bundle_copy, [0.3] * (n + 1))


def test_find_bundles_ignores_partial_runs(tiny_bundle, tmp_path):
    shutil.copytree(tiny_bundle, tmp_path / "good")
    (tmp_path / ".good.partial-123").mkdir()
    (tmp_path / "not-a-bundle").mkdir()
    assert find_bundles(tmp_path) == [tmp_path / "good"]


def test_half_finished_run_is_named_as_such(tmp_path):
    partial = tmp_path / ".smoke.partial-3f9a1c2b7d4e"
    (partial / "model").mkdir(parents=True)
    with pytest.raises(BundleError, match="unfinished training run"):
        read_manifest(partial)


def test_foreign_model_directory_is_refused(tiny_encoder):
    # A plain Hugging Face folder (config.json + weights) is an encoder, not a bundle.
    with pytest.raises(BundleError, match="not an EmoScope bundle: no manifest.json"):
        Predictor(tiny_encoder)


@pytest.mark.parametrize("edit", [
    lambda m: m["model"].update(path="../elsewhere"),
    lambda m: m["model"].update(path="/tmp"),
    lambda m: m["model"]["encoders"][0].update(path="../../x"),
])
def test_a_manifest_pointing_outside_its_bundle_is_refused(tiny_bundle, edit):
    raw = json.loads((tiny_bundle / "manifest.json").read_text(encoding="utf-8"))
    edit(raw)
    with pytest.raises(BundleError, match="points outside the bundle"):
        Manifest.from_dict(raw)


def _rewrite_manifest(bundle, edit):
    path = bundle / "manifest.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    edit(raw)
    path.write_text(json.dumps(raw), encoding="utf-8")


def test_pickled_weights_are_never_loaded(bundle_copy):
    import torch
    from safetensors.torch import load_file

    from emoscope.fsutil import sha256_file

    encoder = bundle_copy / "model" / "encoder"
    torch.save(load_file(str(encoder / "model.safetensors")), encoder / "pytorch_model.bin")
    (encoder / "model.safetensors").unlink()

    def swap_in_the_pickle(raw):
        files = {k: v for k, v in raw["files"].items() if not k.endswith("model.safetensors")}
        rel = "model/encoder/pytorch_model.bin"
        files[rel] = {"size": (bundle_copy / rel).stat().st_size, "sha256": sha256_file(bundle_copy / rel)}
        raw["files"] = files

    _rewrite_manifest(bundle_copy, swap_in_the_pickle)
    with pytest.raises(BundleError, match="pickle-format file"):
        Predictor(bundle_copy)
    # the pickle left out of the file table: it is still never unpickled, and the error is one line
    _rewrite_manifest(bundle_copy, lambda raw: raw["files"].pop("model/encoder/pytorch_model.bin"))
    with pytest.raises(BundleError, match="cannot load the model"):
        Predictor(bundle_copy)


def test_a_single_encoder_bundle_whose_labels_were_edited_is_refused(bundle_copy):
    _rewrite_manifest(bundle_copy, lambda raw: raw.update(labels=list(reversed(raw["labels"]))))
    with pytest.raises(BundleError, match="does not match the labels the classifier was trained on"):
        Predictor(bundle_copy)


def test_a_manifest_missing_what_its_model_kind_needs_is_refused(bundle_copy):
    _rewrite_manifest(bundle_copy, lambda raw: raw["model"].pop("pooling"))
    with pytest.raises(BundleError, match="has no 'pooling'"):
        Predictor(bundle_copy)
