"""Training end to end on the tiny encoder: it learns, logs, stops, and writes a bundle."""

import json

import numpy as np
import pytest

from conftest import tiny_config
from emoscope.bundle import read_manifest, read_validation
from emoscope.errors import ConfigError, DataError, InputError
from emoscope.training import train
from emoscope.training.loop import length_bucketed_batches, rare_label_sample_weights


def test_tiny_model_learns_the_cue_words(tiny_bundle):
    manifest = read_manifest(tiny_bundle)
    assert manifest.labels == ["anger", "fear", "joy", "sadness"]
    # Each label is decided by one cue word: a model that learned anything beats 0.8.
    assert manifest.metrics["validation"]["macro_f1"] > 0.8
    log = [json.loads(line) for line in (tiny_bundle / "training_log.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in log] == list(range(1, len(log) + 1))
    assert log[-1]["train_loss"] < log[0]["train_loss"]
    assert set(log[0]["train_loss_per_class"]) == set(manifest.labels)
    assert 1 <= manifest.training["best_epoch"] <= len(log)


def test_bundle_keeps_validation_predictions(tiny_bundle):
    manifest = read_manifest(tiny_bundle)
    val = read_validation(tiny_bundle, manifest)
    assert val is not None and len(val.texts) == 60
    assert val.probs.shape == val.labels.shape == (60, 4)
    assert ((val.probs >= 0) & (val.probs <= 1)).all()


@pytest.mark.parametrize("loss, sampling", [("weighted_bce", True), ("focal", False), ("hybrid", False)])
def test_other_losses_and_weighted_sampling_learn(tmp_path, tiny_encoder, tiny_data, loss, sampling):
    from dataclasses import replace

    from emoscope.config import LossConfig

    config = tiny_config(tiny_encoder, tiny_data, epochs=12, patience=12, weighted_sampling=sampling)
    config = replace(config, loss=LossConfig(name=loss))
    manifest = read_manifest(train(config, tmp_path / "b", progress=False, log=lambda _: None))
    assert manifest.config["loss"]["name"] == loss
    assert manifest.metrics["validation"]["macro_f1"] > 0.7


def test_early_stopping_stops_after_patience(tmp_path, tiny_encoder, tiny_data):
    # lr 0 never improves after epoch 1, so patience 1 must stop at epoch 2.
    config = tiny_config(tiny_encoder, tiny_data, lr=1e-12, head_lr=1e-12, epochs=6, patience=1)
    lines = []
    path = train(config, tmp_path / "b", progress=False, log=lines.append)
    manifest = read_manifest(path)
    assert manifest.training["epochs_run"] == 2
    assert any(line.startswith("[early stop]") for line in lines)


def test_existing_output_is_refused_without_overwrite(tmp_path, tiny_encoder, tiny_data):
    (tmp_path / "b").mkdir()
    with pytest.raises(ConfigError, match="already exists"):
        train(tiny_config(tiny_encoder, tiny_data), tmp_path / "b", progress=False, log=lambda _: None)


def test_validation_without_positives_is_refused(tmp_path, tiny_encoder, tiny_data):
    from conftest import make_rows, write_brighter_csv

    rows = [{**r, "anger": 0, "fear": 0, "joy": 0, "sadness": 0} for r in make_rows(20, seed=9)]
    dev = write_brighter_csv(tmp_path / "dev.csv", rows)
    config = tiny_config(tiny_encoder, {"train": tiny_data["train"], "dev": dev})
    with pytest.raises(DataError, match="no positive labels"):
        train(config, tmp_path / "b", progress=False, log=lambda _: None)


def test_length_buckets_cover_every_example_once_and_sort_within_pools():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 100, size=203)
    batches = length_bucketed_batches(lengths, batch_size=16, rng=rng, pool=50)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(203))
    # One pool (all 203 < 16*50): every batch is a contiguous run of the sorted lengths.
    spans = [lengths[b].max() - lengths[b].min() for b in batches]
    assert np.mean(spans) < (lengths.max() - lengths.min()) / 4


def test_rare_label_weights_favour_rare_positives():
    labels = np.array([[1, 0], [1, 0], [1, 0], [1, 1], [0, 0]])
    weights = rare_label_sample_weights(labels)
    # label 0 freq 0.8, label 1 freq 0.2 -> inverse weights 1 and 4; empty row weighs 1.
    np.testing.assert_allclose(weights, [1, 1, 1, 4, 1])


def test_a_work_folder_is_refused_for_a_single_encoder_recipe(tmp_path, tiny_encoder, tiny_data):
    with pytest.raises(InputError, match="--work-dir is for stacked recipes"):
        train(tiny_config(tiny_encoder, tiny_data), tmp_path / "b", progress=False, log=lambda _: None,
              work=tmp_path / "work")
    assert not (tmp_path / "b").exists()


def test_datasets_with_different_labels_train_one_masked_model(tmp_path, tiny_encoder, tiny_data):
    """A second dataset without 'fear' joins the first: one model over the union of labels,
    and its missing label is masked, not read as 'absent'."""
    import json
    from dataclasses import replace

    from conftest import make_rows, write_brighter_csv
    from emoscope.config import DataConfig

    rows = [{k: v for k, v in r.items() if k != "fear"} for r in make_rows(120, seed=11)]
    no_fear = write_brighter_csv(tmp_path / "no_fear.csv", rows)
    config = tiny_config(tiny_encoder, tiny_data)
    config = replace(config, data=DataConfig(train=(str(tiny_data["train"]), str(no_fear)),
                                             validation="holdout:0.2", eval=str(tiny_data["dev"])))
    path = train(config, tmp_path / "b", progress=False, log=lambda _: None)
    manifest = read_manifest(path)
    assert manifest.labels == ["anger", "fear", "joy", "sadness"]
    assert manifest.config["data"]["train"] == [str(tiny_data["train"]), str(no_fear)]
    val = read_validation(path, manifest)
    assert val.mask is not None and not val.mask[:, 1].all() and val.mask[:, [0, 2, 3]].all()
    assert manifest.metrics["eval"]["macro_f1"] > 0.7
    # 'fear' is scored only on the rows that annotate it.
    fear = manifest.metrics["validation"]["per_class"]["fear"]
    assert fear["support"] <= int(val.mask[:, 1].sum())
    log = [json.loads(line) for line in (path / "training_log.jsonl").read_text().splitlines()]
    assert log[-1]["train_loss"] < log[0]["train_loss"]


# --- progress reporting changes nothing a run computes -------------------------------------------


def _safetensors(path) -> dict:
    """A safetensors file's tensors and metadata (its bytes also carry the metadata in hash-map
    order, which changes from one process to the next)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        return {"metadata": f.metadata(), **{k: f.get_tensor(k).tobytes() for k in f.keys()}}


def _weights_and_scores(bundle) -> dict:
    """Everything a run computes, without its timings: each model file (safetensors: tensors and
    metadata; others: hash), the validation probabilities, the thresholds, the metrics, and the
    training log without seconds."""
    manifest = read_manifest(bundle)
    files = {rel: _safetensors(bundle / rel) if rel.endswith(".safetensors") else info["sha256"]
             for rel, info in manifest.files.items() if rel.startswith("model/")}
    log = [{k: v for k, v in json.loads(line).items() if k != "seconds"}
           for line in (bundle / "training_log.jsonl").read_text().splitlines()]
    return {"files": files, "validation": (bundle / "validation.json").read_text(), "log": log,
            "thresholds": manifest.thresholds, "metrics": manifest.metrics}


def test_a_reported_run_trains_the_bit_identical_bundle(tmp_path, tiny_encoder, tiny_data, tiny_bundle):
    from emoscope.progress import JsonLinesSink, Reporter, fold, read_events, reporting

    events = tmp_path / "events.jsonl"
    with reporting(Reporter(JsonLinesSink(events), interval=0.0)):
        path = train(tiny_config(tiny_encoder, tiny_data), tmp_path / "b", progress=False, log=lambda _: None)
    assert _weights_and_scores(path) == _weights_and_scores(tiny_bundle)
    state = fold(read_events(events))
    assert state.plan["kind"] == "encoder-classifier" and state.plan["models"][0]["texts"] == 160
    log = [json.loads(line) for line in (path / "training_log.jsonl").read_text().splitlines()]
    assert [e["val_macro_f1"] for e in state.epochs] == [row["val_macro_f1"] for row in log]
    assert [e["train_loss"] for e in state.epochs] == [row["train_loss"] for row in log]
    batches = [e for e in read_events(events) if e["event"] == "batch"]
    assert len(batches) == 20 * 10 and batches[-1]["texts"] == 160  # interval 0: every batch of 20 epochs
    assert state.done["bundle"] == str(path)


def test_a_reported_stacked_run_trains_the_bit_identical_bundle(tmp_path, tiny_encoder, tiny_encoder_b, tiny_data,
                                                                 monkeypatch):
    from conftest import tiny_stack_config
    from emoscope.progress import Reporter, reporting

    config = tiny_stack_config([(tiny_encoder, True), (tiny_encoder_b, False)], tiny_data, epochs=2, patience=2)
    config = config.replace(meta=config.meta.__class__(**{**config.meta.__dict__, "epochs": 5, "patience": 5}))
    bundles = []
    for run, reporter in (("quiet", None), ("reported", Reporter(lambda _e: None, interval=0.0))):
        monkeypatch.setenv("EMOSCOPE_CACHE_DIR", str(tmp_path / run / "cache"))  # nothing reused between the two
        out = tmp_path / run / "bundle"
        if reporter is None:
            bundles.append(train(config, out, progress=False, log=lambda _: None))
        else:
            with reporting(reporter):
                bundles.append(train(config, out, progress=False, log=lambda _: None))
    assert _weights_and_scores(bundles[0]) == _weights_and_scores(bundles[1])
