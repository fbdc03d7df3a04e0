"""The stacked ensemble's training on tiny encoders: folds, leakage gate, cache, bundle, refusals, ablation."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import spy_on_leakage_gate, tiny_stack_config
from emoscope.errors import BundleError, ConfigError
from emoscope.models import pick_device
from emoscope.text import NormalizerConfig
from emoscope.training import train_stack
from emoscope.training.stack import stage2
from emoscope.training.stack.embeddings import EmbeddingCache, RaggedRows, embeddings_cache, encoder_key
from emoscope.training.stack.leakage import LeakageError, check_not_trained_on
from emoscope.training.stack.stage1 import StageOneModel, fold_assignments
from emoscope.words import read_words, text_key


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Each test gets its own cache (work folders, embeddings, fingerprints)."""
    monkeypatch.setenv("EMOSCOPE_CACHE_DIR", str(tmp_path / "cache"))


def quiet(_: str) -> None:
    pass


def prepare_stack(config, data, **kwargs):
    """Stages 1 and 2 on the recipe's device, as training runs them."""
    return stage2.prepare_stack(config, data, device=pick_device(config.training.device), **kwargs)


def test_fold_assignments_stratify_and_keep_copies_together():
    rng = np.random.default_rng(0)
    labels = (rng.random((90, 3)) < [0.5, 0.3, 0.1]).astype(np.uint8)
    keys = [f"t{i}" for i in range(90)]
    keys[10] = keys[50] = keys[80] = "same"
    folds = fold_assignments(labels, keys, 3, seed=1)
    assert set(folds) == {0, 1, 2}
    assert folds[10] == folds[50] == folds[80]
    for f in range(3):
        assert 20 <= (folds == f).sum() <= 40
        # every label's positives spread over the folds
        assert (labels[folds == f].sum(0) > 0).all()
    with pytest.raises(ConfigError, match="at least 3"):
        fold_assignments(labels[:2], keys[:2], 3, seed=1)


def test_the_leakage_gate_refuses_training_texts():
    model = StageOneModel("enc", "fold-1", None, frozenset({"a", "b"}), "x", "mean")
    check_not_trained_on(model, ["c", "d"])
    with pytest.raises(LeakageError, match="enc/fold-1 was fine-tuned on 1 of the 2"):
        check_not_trained_on(model, ["a", "d"])
    check_not_trained_on(model, ["a", "d"], allow_seen=True)  # the naive variant, on purpose


def test_embedding_cache_computes_each_text_once(tmp_path):
    cache = EmbeddingCache(tmp_path / "emb")
    calls = []

    def compute(positions):
        calls.append(list(positions))
        rows = [np.full((i + 1, 2), float(i), np.float32) for i in positions]
        return RaggedRows(np.concatenate(rows), np.concatenate([[0], np.cumsum([len(r) for r in rows])]))

    first, hits = cache.get("enc", ["k0", "k1", "k0"], compute)
    assert hits == 0 and calls == [[0, 1]]  # the repeated text is embedded once
    assert first.lengths().tolist() == [1, 2, 1]
    again, hits = cache.get("enc", ["k1", "k2"], lambda pos: compute([p + 1 for p in pos]))
    assert hits == 1 and calls[-1] == [2]
    np.testing.assert_array_equal(again.rows([0])[0], first.rows([1])[0])
    assert EmbeddingCache(None).get("enc", ["k0"], compute)[1] == 0


def test_out_of_fold_stage2_never_embeds_a_text_with_a_model_trained_on_it(tiny_encoder, tiny_encoder_b,
                                                                         tiny_data, monkeypatch):
    from emoscope.data import load_training_data

    config = tiny_stack_config([(tiny_encoder, True), (tiny_encoder_b, True)], tiny_data, folds=3, epochs=1)
    data = load_training_data(config)
    # a validation text that is also a training text must go to the fold model that held it out
    data.validation.texts[0] = data.train.texts[5]
    calls = spy_on_leakage_gate(monkeypatch)
    stacked = prepare_stack(config, data, progress=False, log=quiet)
    checked = 0
    for model, keys, allow_seen in calls:
        if model.role == "pretrained":
            continue
        if allow_seen:  # only the naive variant's training embeddings, by the full model
            assert model.role == "full" and len(keys) == len(data.train)
            continue
        assert not set(keys) & model.trained_on, f"{model.encoder}/{model.role} embedded a text it was trained on"
        checked += len(keys)
    train_keys = {text_key(read_words(t, config.text, config.stack.max_words).model_words) for t in data.train.texts}
    assert checked >= 2 * len(data.train)  # both encoders' out-of-fold training embeddings went through the gate
    fold_models = [m for m, _, _ in calls if m.role.startswith("fold")]
    assert {m.role for m in fold_models} == {"fold-1", "fold-2", "fold-3"}
    for m in fold_models:  # each fold model saw two thirds of the training texts
        assert 0.5 * len(train_keys) < len(m.trained_on) < 0.8 * len(train_keys)
    assert stacked.train_oof is not None and len(stacked.train_oof[0]) == len(data.train)
    # out-of-fold and naive training embeddings differ; validation embeddings line up across encoders
    assert not np.allclose(stacked.train_oof[0].flat, stacked.train_naive[0].flat)
    assert np.array_equal(stacked.validation[0].offsets, stacked.validation[1].offsets)


def test_stack_trains_saves_loads_and_predicts_identically(tiny_encoder, tiny_encoder_b, tiny_data, tmp_path):
    from emoscope.bundle import read_manifest, read_validation
    from emoscope.predict import Predictor

    config = tiny_stack_config([(tiny_encoder, True), (tiny_encoder_b, False)], tiny_data, folds=2)
    logs: list[str] = []
    path = train_stack(config, tmp_path / "stack", progress=False, log=logs.append)
    manifest = read_manifest(path)
    assert manifest.model.kind == "stacked"
    assert [e.name for e in manifest.model.encoders] == ["tiny0", "tiny1"]
    assert [e.fine_tuned for e in manifest.model.encoders] == [True, False]
    assert manifest.metrics["validation"]["macro_f1"] > 0.6  # the cue words are learnable
    stages = manifest.training["stages"]
    assert set(stages) >= {"finetune_seconds", "embed_seconds", "meta_seconds"}

    predictor = Predictor(path)
    validation = read_validation(path, manifest)
    np.testing.assert_allclose(predictor.predict_proba(validation.texts), validation.probs, atol=2e-5)
    again = Predictor(path).predict(["we felt so furious and scared today"])[0]
    assert again.probabilities == predictor.predict(["we felt so furious and scared today"])[0].probabilities
    assert set(again.labels) <= set(predictor.labels)

    # a rerun reuses stage 1 and every embedding, and gives the same model
    logs.clear()
    path2 = train_stack(config, tmp_path / "stack2", progress=False, log=logs.append)
    assert any("reusing the finished model" in line for line in logs)
    assert all("(0 from the cache)" not in line for line in logs if line.startswith("[stage 2]"))
    np.testing.assert_allclose(read_validation(path2, read_manifest(path2)).probs, validation.probs, atol=1e-6)


def test_half_finished_stage1_resumes(tiny_encoder, tiny_data, tmp_path):
    config = tiny_stack_config([(tiny_encoder, True)], tiny_data, folds=2, epochs=1)
    work = tmp_path / "work"
    train_stack(config, tmp_path / "a", progress=False, log=quiet, work=work)
    # simulate a run killed during fold 2: its folder never got renamed into place
    (model_dir,) = (work / "stage1").glob("tiny0-*")
    shutil.rmtree(model_dir / "fold-2")
    logs: list[str] = []
    train_stack(config, tmp_path / "b", progress=False, log=logs.append, work=work)
    assert any("tiny0/full: reusing" in line for line in logs)
    assert any("tiny0/fold-1: reusing" in line for line in logs)
    assert any("tiny0/fold-2: fine-tuning" in line for line in logs)


def test_adding_a_seeded_copy_retrains_only_the_new_encoder(tiny_encoder, tiny_data, tmp_path):
    """Stage-1 models are keyed by their own encoder's settings: adding a second, differently
    seeded copy of an encoder reuses the first one's models, and the copy's weights differ."""
    from safetensors.torch import load_file

    from emoscope.data import load_training_data

    config = tiny_stack_config([(tiny_encoder, True)], tiny_data, folds=0, epochs=1)
    work = tmp_path / "work"
    data = load_training_data(config)
    prepare_stack(config, data, work=work, progress=False, log=quiet)
    copy = replace(config.encoders[0], name="tiny0b", seed=config.training.seed + 1)
    two = replace(config, encoders=(config.encoders[0], copy))
    logs: list[str] = []
    stacked = prepare_stack(two, data, work=work, progress=False, log=logs.append)
    assert any("tiny0/full: reusing" in line for line in logs)
    assert any("tiny0b/full: fine-tuning" in line for line in logs)
    a, b = (load_file(str(next(stacked.base_models[n].folder.glob("**/*.safetensors")))) for n in ("tiny0", "tiny0b"))
    assert any(not torch.equal(a[k], b[k]) for k in a if k in b)


def test_encoder_seed_must_be_a_whole_number():
    from emoscope.config import EncoderConfig
    from emoscope.errors import ConfigError

    with pytest.raises(ConfigError, match="encoder.seed"):
        EncoderConfig(source="me5-small", seed=-1)


@pytest.fixture(scope="module")
def stacked_bundle(tiny_encoder, tiny_encoder_b, tiny_data, tmp_path_factory):
    import os

    old = os.environ.get("EMOSCOPE_CACHE_DIR")
    os.environ["EMOSCOPE_CACHE_DIR"] = str(tmp_path_factory.mktemp("stack-cache"))
    try:
        config = tiny_stack_config([(tiny_encoder, False), (tiny_encoder_b, False)], tiny_data, folds=0)
        return train_stack(replace(config, meta=replace(config.meta, epochs=3)),
                           tmp_path_factory.mktemp("stacked") / "b", progress=False, log=quiet)
    finally:
        if old is None:
            os.environ.pop("EMOSCOPE_CACHE_DIR")
        else:
            os.environ["EMOSCOPE_CACHE_DIR"] = old


def test_bundle_with_swapped_encoders_is_refused(stacked_bundle, tmp_path):
    from emoscope.predict import Predictor

    copy = shutil.copytree(stacked_bundle, tmp_path / "swapped")
    root = copy / "model" / "encoders"
    a, b = sorted(root.iterdir())
    a.rename(root / "tmp")
    b.rename(a)
    (root / "tmp").rename(b)
    with pytest.raises(BundleError, match="sha256|bytes"):
        Predictor(copy)  # the file table catches it first
    # someone "repairs" the file table: the meta-learner's encoder fingerprints still refuse it
    from emoscope.fsutil import sha256_file

    manifest = json.loads((copy / "manifest.json").read_text(encoding="utf-8"))
    manifest["files"] = {rel: {"size": (copy / rel).stat().st_size, "sha256": sha256_file(copy / rel)}
                         for rel in manifest["files"]}
    (copy / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(BundleError, match="encoder 0 \\(tiny0\\).*swapped or replaced"):
        Predictor(copy)


def test_bundle_whose_labels_no_longer_match_the_meta_learner_is_refused(stacked_bundle, tmp_path):
    from emoscope.predict import Predictor

    copy = shutil.copytree(stacked_bundle, tmp_path / "relabelled")
    manifest = json.loads((copy / "manifest.json").read_text(encoding="utf-8"))
    manifest["labels"] = list(reversed(manifest["labels"]))
    (copy / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(BundleError, match="does not match the labels the meta-learner was trained on"):
        Predictor(copy, verify=False)


def test_frozen_stack_config_validation():
    from emoscope.config import EncoderConfig, MetaConfig, RunConfig, StackConfig

    with pytest.raises(ConfigError, match="stack.folds"):
        StackConfig(folds=1)
    with pytest.raises(ConfigError, match="meta.pooling"):
        MetaConfig(pooling="last")
    with pytest.raises(ConfigError, match="need a \\[stack\\] section"):
        RunConfig.from_dict({"name": "x", "data": {"train": "a"}, "encoders": [{"source": "a"}, {"source": "b"}]})
    with pytest.raises(ConfigError, match="appear twice"):
        RunConfig.from_dict({"name": "x", "data": {"train": "a"}, "stack": {},
                             "encoders": [{"source": "me5-small"}, {"source": "me5-small"}]})
    with pytest.raises(ConfigError, match="add a \\[stack\\] section"):
        RunConfig.from_dict({"name": "x", "data": {"train": "a"}, "encoders": [{"source": "a"}], "meta": {}})
    config = RunConfig.from_dict({"name": "x", "data": {"train": "a"}, "stack": {"folds": 0},
                                  "encoders": [{"source": "me5-small", "name": "a"},
                                               {"source": "me5-small", "name": "b", "fine_tune": False}]})
    assert config.kind == "stacked" and RunConfig.from_dict(config.to_dict()) == config
    assert EncoderConfig(source="/x/y/model/").label == "model"


def test_every_recipe_validates():
    from emoscope.config import load_config

    recipes = sorted(Path("training/configs").glob("*.toml"))
    assert len(recipes) >= 12
    kinds = {load_config(path).name: load_config(path).kind for path in recipes}
    for name in ("arabic-paper-hub", "smoke-stack", "default", "brighter-eng-stack", "brighter-arq-stack",
                 "brighter-ary-stack", "semeval2018-ar-stack", "semeval2018-ar-en-stack"):
        assert kinds[name] == "stacked", name


def test_paper_recipe_runs_with_tiny_local_encoders_in_place_of_hub_ids(tiny_encoder, tiny_encoder_b, tiny_data,
                                                                        tmp_path):
    """The hub-id recipe cannot download here; the same code path runs with local encoders swapped in."""
    from emoscope.config import DataConfig, load_config
    from emoscope.predict import Predictor

    paper = load_config("training/configs/arabic-paper-hub.toml")
    assert [e.source for e in paper.encoders] == ["asafaya/bert-base-arabic", "UBC-NLP/MARBERT",
                                                  "aubmindlab/bert-base-arabertv02"]
    local = [tiny_encoder, tiny_encoder_b, tiny_encoder]
    config = paper.replace(
        data=DataConfig(train=str(tiny_data["train"]), validation=str(tiny_data["dev"])),
        encoders=tuple(replace(e, source=str(path), max_length=32) for e, path in zip(paper.encoders, local)),
        training=replace(paper.training, epochs=1, lr=3e-3, batch_size=16),
        stack=replace(paper.stack, folds=2),
        meta=replace(paper.meta, hidden_size=16, dense_size=16, epochs=3),
    )
    path = train_stack(config, tmp_path / "paper", progress=False, log=quiet)
    predictor = Predictor(path)
    assert [e.name for e in predictor.manifest.model.encoders] == ["arabicbert", "marbert", "arabert"]
    assert predictor.predict_proba(["happy day"]).shape == (1, 4)


def test_ablation_table_has_every_variant(tiny_encoder, tiny_encoder_b, tiny_data, tmp_path):
    from emoscope.training.ablate import run_ablation, to_markdown, write_into

    config = tiny_stack_config([(tiny_encoder, True), (tiny_encoder_b, False)], tiny_data, folds=2, epochs=2)
    config = replace(config, meta=replace(config.meta, epochs=4))
    result = run_ablation(config, seeds=2, log=quiet)
    names = [r["name"] for r in result["rows"]]
    assert names[0] == "tiny0 alone, fine-tuned classifier (stage 1)"
    for expected in ("tiny0 alone → meta-learner (hybrid)", "tiny1 alone → meta-learner (hybrid)", "stack, BCE",
                     "stack, weighted BCE", "stack, focal", "stack, hybrid", "hybrid − class weighting",
                     "hybrid − label correlation", "hybrid − contrastive", "hybrid, naive stacking",
                     "stack, hybrid, thresholds 0.5 (no tuning)"):
        assert expected in names
    main = next(r for r in result["rows"] if r.get("main"))
    assert main["seeds"] == 2 and set(main["per_class_f1"]) == set(result["labels"])
    assert 0.0 <= main["macro_f1"] <= 1.0 and main["macro_f1_std"] >= 0.0
    markdown = to_markdown(result, "emoscope ablate --config tiny.toml")
    assert "| **stack, hybrid** |" in markdown and "Per-class F1" in markdown
    target = tmp_path / "BENCH.md"
    target.write_text("# Benchmarks\n\n<!-- ablation:tiny-stack:start -->\nOUTDATED TABLE\n<!-- ablation:tiny-stack:end -->\ntail\n")
    write_into(target, "tiny-stack", markdown)
    text = target.read_text()
    assert "OUTDATED TABLE" not in text and text.endswith("tail\n") and text.count("ablation:tiny-stack:start") == 1


def test_cli_trains_evaluates_and_predicts_a_stacked_recipe(tiny_encoder, tiny_encoder_b, tiny_data, tmp_path, capsys):
    from emoscope.cli import main

    recipe = tmp_path / "tiny-stack.toml"
    recipe.write_text(f"""
name = "tiny-stack"
[data]
train = "{tiny_data['train']}"
validation = "{tiny_data['dev']}"
[[encoders]]
name = "a"
source = "{tiny_encoder}"
max_length = 32
fine_tune = false
[[encoders]]
name = "b"
source = "{tiny_encoder_b}"
max_length = 32
fine_tune = false
[stack]
folds = 0
[meta]
hidden_size = 16
dense_size = 16
epochs = 3
[loss]
name = "hybrid"
""", encoding="utf-8")
    out = tmp_path / "bundle"
    assert main(["train", "--config", str(recipe), "--output", str(out), "--quiet"]) == 0
    assert main(["evaluate", "--model", str(out), "--data", str(tiny_data["dev"])]) == 0
    assert "macro" in capsys.readouterr().out
    assert main(["predict", "--model", str(out), "--text", "so furious", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["probabilities"]


def test_stack_reading_base_logits_trains_saves_loads_and_predicts_identically(tiny_encoder, tiny_encoder_b,
                                                                               tiny_data, tmp_path):
    from emoscope.bundle import read_manifest, read_validation
    from emoscope.explain import explain
    from emoscope.predict import Predictor

    config = tiny_stack_config([(tiny_encoder, True), (tiny_encoder_b, False)], tiny_data, folds=2)
    config = replace(config, meta=replace(config.meta, base_logits=True))
    path = train_stack(config, tmp_path / "stack", progress=False, log=quiet)
    manifest = read_manifest(path)
    assert [e.head for e in manifest.model.encoders] == [True, False]
    assert (path / "model" / manifest.model.encoders[0].path / "head.safetensors").exists()
    predictor = Predictor(path)
    assert predictor.model.meta.n_base == 1
    validation = read_validation(path, manifest)
    # the bundle recomputes the classifier's logits at prediction time exactly as stage 2 cached them
    np.testing.assert_allclose(predictor.predict_proba(validation.texts), validation.probs, atol=2e-5)
    assert manifest.metrics["validation"]["macro_f1"] > 0.6
    exp = explain(predictor, "we felt so furious today", "ig", ["anger"], {"n_steps": 16, "precision": "fp32"})
    assert abs(exp.diagnostics["convergence_delta"]["anger"]) < 0.02  # gradients flow through the head too

    broken = shutil.copytree(path, tmp_path / "headless")
    (broken / "model" / manifest.model.encoders[0].path / "head.safetensors").unlink()
    with pytest.raises(BundleError, match="head.safetensors' is missing"):
        Predictor(broken, verify=False)  # the file table notices first
    manifest_path = broken / "manifest.json"  # a bundle whose file table was "repaired" too
    raw = json.loads(manifest_path.read_text(encoding="utf-8"))
    raw["files"] = {k: v for k, v in raw["files"].items() if not k.endswith("head.safetensors")}
    manifest_path.write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(BundleError, match="reads the classifier of encoder tiny0.*head"):
        Predictor(broken, verify=False)


def test_ablation_reports_the_base_logits_variant(tiny_encoder, tiny_data):
    from emoscope.training.ablate import run_ablation

    config = tiny_stack_config([(tiny_encoder, True)], tiny_data, folds=2, epochs=1)
    config = replace(config, meta=replace(config.meta, base_logits=True, epochs=2))
    names = [r["name"] for r in run_ablation(config, log=quiet)["rows"]]
    assert "hybrid − base-classifier logits" in names and "hybrid, naive stacking" in names


def test_ablation_can_train_only_named_variants(tiny_encoder, tiny_data):
    from emoscope.training.ablate import run_ablation, to_markdown
    from emoscope.errors import ConfigError

    config = tiny_stack_config([(tiny_encoder, True)], tiny_data, folds=2, epochs=1)
    config = replace(config, meta=replace(config.meta, epochs=2))
    result = run_ablation(config, log=quiet, only=["stack, BCE"])
    assert [r["name"] for r in result["rows"]] == ["tiny0 alone, fine-tuned classifier (stage 1)", "stack, BCE",
                                                   "stack, hybrid", "stack, hybrid, thresholds 0.5 (no tuning)"]
    assert result["only"] == ["stack, BCE"] and "Partial run (`--only`)" in to_markdown(result)
    with pytest.raises(ConfigError, match="no variant named 'stack, XYZ'.*stack, focal"):
        run_ablation(config, log=quiet, only=["stack, XYZ"])


def test_ablation_drops_each_encoder_where_that_is_not_an_alone_row(tiny_encoder, tiny_encoder_b, tiny_data):
    from emoscope.config import BaseConfig
    from emoscope.training.ablate import run_ablation, variants

    two = tiny_stack_config([(tiny_encoder, False), (tiny_encoder_b, False)], tiny_data, folds=0)
    assert not [v for v in variants(two, False) if v["name"].startswith("hybrid − tiny")]  # = the other one alone
    with_base = replace(two, bases=(BaseConfig(kind="tfidf"),))
    dropped = {v["name"]: v["encoders"] for v in variants(with_base, False) if v["name"].startswith("hybrid − tiny")}
    assert dropped == {"hybrid − tiny0": ["tiny1"], "hybrid − tiny1": ["tiny0"]}
    three = tiny_stack_config([(tiny_encoder, False), (tiny_encoder_b, False), (tiny_encoder, False)], tiny_data, folds=0)
    three = replace(three, meta=replace(three.meta, epochs=2))
    result = run_ablation(three, log=quiet, only=["hybrid − tiny1"])
    row = next(r for r in result["rows"] if r["name"] == "hybrid − tiny1")
    assert row["group"] == "stack" and 0.0 <= row["macro_f1"] <= 1.0


def test_one_encoder_with_a_text_base_is_a_stack_not_a_single_base(tiny_encoder, tiny_encoder_b, tiny_data):
    from emoscope.config import BaseConfig
    from emoscope.training.ablate import run_ablation

    config = tiny_stack_config([(tiny_encoder, False), (tiny_encoder_b, False)], tiny_data, folds=0)
    config = replace(config, bases=(BaseConfig(kind="tfidf"),), meta=replace(config.meta, epochs=2))
    result = run_ablation(config, log=quiet, only=["hybrid − tiny0", "tiny1 alone → meta-learner (hybrid)"])
    groups = {r["name"]: r["group"] for r in result["rows"]}
    assert groups["hybrid − tiny0"] == "stack" and groups["tiny1 alone → meta-learner (hybrid)"] == "single"
    assert result["best_single"] == "tiny1 alone → meta-learner (hybrid)"


def test_base_logits_from_the_word_vector_pass_match_a_separate_pass(tiny_encoder, tiny_data, tmp_path):
    """Stage 2 takes the classifier logits from the word-vector pass when both caches miss; with
    the word vectors cached, the logits come from a pass of their own: the two must agree row by row."""
    from emoscope.data import load_training_data

    config = tiny_stack_config([(tiny_encoder, True)], tiny_data, folds=2, epochs=1)
    config = replace(config, meta=replace(config.meta, base_logits=True))
    data = load_training_data(config)
    first = prepare_stack(config, data, work=tmp_path / "work", progress=False, log=quiet)
    heads = [p for p in embeddings_cache(config).root.iterdir() if "-head-" in p.name]
    assert heads
    for p in heads:
        shutil.rmtree(p)
    logs: list[str] = []
    second = prepare_stack(config, data, work=tmp_path / "work", progress=False, log=logs.append)
    assert all("(0 from the cache)" not in line for line in logs if "[stage 2]" in line)  # word vectors reused
    for split in ("train", "train-naive", "validation"):
        np.testing.assert_allclose(first.base_logits["tiny0"][split].flat, second.base_logits["tiny0"][split].flat,
                                   atol=1e-5)


def test_only_the_encoders_run_under_autocast(stacked_bundle):
    """Word pooling and the meta-learner trained in fp32 on fp32 word vectors; under bf16
    autocast (GPU predictions, CPU explanations) they must still run in fp32."""
    from emoscope.predict import Predictor

    model = Predictor(stacked_bundle, device="cpu").model
    seen = []
    hooks = [m.register_forward_hook(lambda mod, args, out: seen.append(out.dtype))
             for m in model.meta.modules() if isinstance(m, torch.nn.Linear)]
    try:
        batches, n_words = model.encode_texts(["a happy day", "so sad and afraid today"])
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(batches, n_words)
    finally:
        for h in hooks:
            h.remove()
    assert seen and set(seen) == {torch.float32}
    assert logits.dtype == torch.float32


def test_word_vector_cache_key_holds_the_precision_only_when_not_fp32(tiny_encoder):
    from emoscope.config import EncoderConfig, StackConfig

    enc, stack = EncoderConfig(source=str(tiny_encoder)), StackConfig()
    fp32 = encoder_key("f" * 16, enc, NormalizerConfig(), stack)
    assert encoder_key("f" * 16, enc, NormalizerConfig(), stack, "fp32") == fp32  # old caches stay valid
    assert encoder_key("f" * 16, enc, NormalizerConfig(), stack, "bf16") != fp32


def test_a_stacked_recipe_whose_validation_has_no_positives_is_refused_before_stage_1(tiny_encoder, tiny_data,
                                                                                      tmp_path):
    """The same check, the same error class, as a single-encoder recipe (emoscope.training.run)."""
    from conftest import make_rows, write_brighter_csv
    from emoscope.errors import DataError

    rows = [{**r, "anger": 0, "fear": 0, "joy": 0, "sadness": 0} for r in make_rows(20, seed=9)]
    dev = write_brighter_csv(tmp_path / "dev.csv", rows)
    config = tiny_stack_config([(tiny_encoder, True)], {"train": tiny_data["train"], "dev": dev}, folds=2)
    logs: list[str] = []
    with pytest.raises(DataError, match="no positive labels"):
        train_stack(config, tmp_path / "b", progress=False, log=logs.append, work=tmp_path / "work")
    assert not any(line.startswith("[stage 1]") for line in logs) and not (tmp_path / "work").exists()


def test_an_encoder_that_is_not_installed_fails_before_stage_one(tiny_encoder, tiny_data, tmp_path, monkeypatch):
    """A recipe naming an on-demand source that is not installed stops with the install command
    before any fine-tuning (not after stage 1, when stage 2 first loads it)."""
    from emoscope.config import EncoderConfig
    from emoscope.data import load_training_data
    from emoscope.errors import EncoderError
    from emoscope.training.stack.stage2 import prepare_stack

    monkeypatch.setenv("EMOSCOPE_CACHE_DIR", str(tmp_path / "empty-cache"))
    config = tiny_stack_config([(tiny_encoder, True)], tiny_data, folds=2, epochs=1)
    config = replace(config, encoders=(*config.encoders, EncoderConfig(source="embeddinggemma-300m", name="gemma",
                                                                         fine_tune=False, max_length=32)))
    with pytest.raises(EncoderError, match="emoscope models install embeddinggemma-300m"):
        prepare_stack(config, load_training_data(config), device=torch.device("cpu"), work=tmp_path / "work",
                      progress=False, log=quiet)
    assert not (tmp_path / "work").exists()


def test_a_meta_learner_ensemble_trains_saves_loads_predicts_and_explains(tiny_encoder, tiny_encoder_b, tiny_data,
                                                                         tmp_path):
    """``meta.ensemble = 3``: member 0 is the single meta-learner of the same recipe, member i trains
    with seed + 1000 i; the ensemble's logits are the mean of theirs, its thresholds are tuned on its
    own validation probabilities, and the bundle predicts, explains and describes it as such."""
    from emoscope.bundle import read_manifest, read_validation
    from emoscope.explain import ExplainModel, explain
    from emoscope.models.meta import MetaEnsemble
    from emoscope.predict import Predictor
    from emoscope.thresholds import choose_thresholds
    from emoscope.training.run import load_run_data
    from emoscope.training.stack.stage3 import MetaSelection, fit_meta

    config = tiny_stack_config([(tiny_encoder, False), (tiny_encoder_b, False)], tiny_data, folds=0)
    config = replace(config, meta=replace(config.meta, base_logits=False))
    ensemble_cfg = replace(config, meta=replace(config.meta, ensemble=3))
    data = load_run_data(config)
    stacked = prepare_stack(config, data, progress=False, log=quiet)
    selection = MetaSelection.of(stacked, stacked.encoders, data)
    device = pick_device(config.training.device)
    single = fit_meta(config, selection, device=device, log=quiet)
    logs: list[str] = []
    fit = fit_meta(ensemble_cfg, selection, device=device, log=logs.append)
    assert isinstance(fit.meta, MetaEnsemble) and len(fit.meta.members) == 3 and len(fit.members) == 3
    assert any("ensemble of 3" in line for line in logs)
    for name, tensor in single.meta.state_dict().items():  # member 0 is the single meta-learner
        torch.testing.assert_close(fit.meta.members[0].state_dict()[name], tensor)
    third = fit_meta(replace(config, training=replace(config.training, seed=config.training.seed + 2000)), selection,
                     device=device, log=quiet)
    for name, tensor in third.meta.state_dict().items():
        torch.testing.assert_close(fit.meta.members[2].state_dict()[name], tensor)
    x, n = selection.validation.batch(range(5), torch.device("cpu"))
    with torch.no_grad():
        mean = torch.stack([m.eval()(x, n) for m in fit.meta.members]).mean(0)
        torch.testing.assert_close(fit.meta.eval()(x, n), mean)
    val = data.validation
    np.testing.assert_array_equal(fit.thresholds, choose_thresholds(config.thresholds, val.labels, fit.val_probs,
                                                                    val.label_mask))
    assert not np.allclose(fit.val_probs, single.val_probs)

    path = train_stack(ensemble_cfg, tmp_path / "ensemble", progress=False, log=quiet)
    manifest = read_manifest(path)
    assert manifest.model.meta["ensemble"] == 3
    predictor = Predictor(path)
    assert isinstance(predictor.model.meta, MetaEnsemble)
    np.testing.assert_allclose(predictor.predict_proba(read_validation(path, manifest).texts),
                               read_validation(path, manifest).probs, atol=2e-5)
    np.testing.assert_allclose(read_validation(path, manifest).probs, fit.val_probs, atol=1e-5)
    model = ExplainModel(predictor)
    exp = explain(model, "we felt so furious today", "layer-ig", None, {"n_steps": 64})
    assert max(abs(v) for v in exp.diagnostics["convergence_delta"].values()) < 0.01  # the mean still completes
    assert "seed ensemble of 3 Bi-LSTM meta-learners" in (path / "README.md").read_text(encoding="utf-8")


def test_meta_ensemble_size_is_checked():
    from emoscope.config import MetaConfig

    with pytest.raises(ConfigError, match="meta.ensemble must be in 1..16"):
        MetaConfig(ensemble=0)
