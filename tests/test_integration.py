"""Slow integration tests with the real packaged models (MiniLM, converted me5-small).

Run with the rest of the suite by ``bash scripts/test.sh``; skip with ``-m "not slow"``.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from emoscope.bundle import read_manifest
from emoscope.data import default_data_root

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parent.parent


def _datasets_present() -> bool:
    try:
        return (default_data_root() / "brighter_track_a" / "eng" / "train.csv").exists()
    except Exception:
        return False


needs_data = pytest.mark.skipif(not _datasets_present(), reason="shared datasets not found")


@pytest.fixture(scope="module")
def smoke_bundle(tmp_path_factory):
    if not _datasets_present():
        pytest.skip("shared datasets not found")
    out = tmp_path_factory.mktemp("smoke") / "smoke"
    proc = subprocess.run([sys.executable, "-m", "emoscope.cli", "train", "--config",
                           str(ROOT / "training" / "configs" / "smoke.toml"), "--output", str(out), "--quiet"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "[done]" in proc.stdout
    yield out
    shutil.rmtree(out.parent, ignore_errors=True)


@needs_data
def test_smoke_recipe_trains_a_minilm_bundle(smoke_bundle):
    manifest = read_manifest(smoke_bundle)
    assert manifest.model.encoders[0].source == "minilm-l6"
    assert manifest.labels == ["anger", "fear", "joy", "sadness", "surprise"]
    assert manifest.data["n_train"] == 48
    assert (smoke_bundle / "model" / "encoder" / "model.safetensors").stat().st_size > 80e6


@needs_data
def test_smoke_bundle_predicts_and_evaluates_through_the_cli(smoke_bundle, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "emoscope.cli", "predict", "--model", str(smoke_bundle), "--text",
                           "I was terrified when the lights went out", "--json"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert set(result["probabilities"]) == {"anger", "fear", "joy", "sadness", "surprise"}
    metrics_path = tmp_path / "m.json"
    proc = subprocess.run([sys.executable, "-m", "emoscope.cli", "evaluate", "--model", str(smoke_bundle), "--data",
                           "brighter:eng:dev", "--output", str(metrics_path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(metrics_path.read_text())["n_samples"] == 116


@needs_data
def test_predictor_matches_a_plain_forward_pass_of_its_encoder(smoke_bundle):
    """The Predictor's probabilities are the head applied to the encoder's mean-pooled output."""
    import torch
    from transformers import AutoModel

    from emoscope.predict import Predictor

    predictor = Predictor(smoke_bundle)
    texts = ["What a wonderful surprise!", "I can't stop crying."]
    enc = AutoModel.from_pretrained(smoke_bundle / "model" / "encoder", add_pooling_layer=False).eval()
    batch = {k: v for k, v in predictor.model.word_encoder.pad(predictor.model.word_encoder.encode_texts(texts)).items()
             if k != "word_index"}
    with torch.inference_mode():
        hidden = enc(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        expected = torch.sigmoid(predictor.model.head(pooled)).numpy()
    np.testing.assert_allclose(predictor.predict_proba(texts), expected, atol=1e-5)


def test_me5_small_embeds_arabic_and_english_alike():
    """Translations are closer to each other than to an unrelated sentence (the conversion works)."""
    import torch

    from emoscope.encoders import load_encoder

    tokenizer, model = load_encoder("me5-small")
    texts = ["query: أنا سعيد جدا اليوم", "query: I am very happy today", "query: the train leaves at nine"]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    emb = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    sim = emb @ emb.T
    assert sim[0, 1] > sim[0, 2] and sim[0, 1] > sim[1, 2]
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("أنا سعيد جدا 😀")["input_ids"])
    assert tokens == ["<s>", "▁أنا", "▁سعيد", "▁جدا", "▁😀", "</s>"]


def test_emoscope_models_lists_ready_sources():
    proc = subprocess.run([sys.executable, "-m", "emoscope.cli", "models"], capture_output=True, text=True)
    assert proc.returncode == 0
    lines = {line.split()[0]: line for line in proc.stdout.splitlines() if line and not line.startswith(" ")}
    assert "ready" in lines["minilm-l6"] and "ready" in lines["me5-small"]


def test_mpnet_base_loads_when_installed():
    from emoscope.encoders import SOURCES, load_encoder

    if SOURCES["mpnet-base"].installed_path() is None:
        pytest.skip("mpnet-base is installed on demand: emoscope models install mpnet-base")
    tokenizer, model = load_encoder("mpnet-base")
    assert model.config.model_type == "mpnet" and model.config.hidden_size == 768
    assert tokenizer(["hello", "world"], is_split_into_words=True).word_ids() == [None, 0, 1, None]


@needs_data
def test_smoke_stack_recipe_trains_predicts_and_reruns_from_the_cache(tmp_path):
    """The stacked recipe with the real packaged encoders (MiniLM fine-tuned out-of-fold + me5 frozen)."""
    import os

    env = os.environ.copy()
    recipe = str(ROOT / "training" / "configs" / "smoke-stack.toml")
    out = tmp_path / "smoke-stack"
    work = ["--work-dir", str(tmp_path / "work")]  # stage-1 models stay out of the user's cache
    proc = subprocess.run([sys.executable, "-m", "emoscope.cli", "train", "--config", recipe, "--output", str(out),
                           "--quiet", *work], capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    manifest = read_manifest(out)
    assert manifest.model.kind == "stacked"
    assert [e.source for e in manifest.model.encoders] == ["minilm-l6", "me5-small"]
    assert [e.text_prefix for e in manifest.model.encoders] == ["", "query:"]
    from emoscope.bundle import read_validation
    from emoscope.predict import Predictor

    predictor = Predictor(out)
    validation = read_validation(out, manifest)
    np.testing.assert_allclose(predictor.predict_proba(validation.texts), validation.probs, atol=2e-5)
    arabic = predictor.predict(["أنا خائف جداً من الغد 😨"])[0]
    assert arabic.language == "ar" and set(arabic.probabilities) == set(manifest.labels)
    del predictor
    shutil.rmtree(out)  # half a gigabyte: CI machines can be short of disk
    # a second run reuses stage 1 and every word vector
    proc = subprocess.run([sys.executable, "-m", "emoscope.cli", "train", "--config", recipe, "--output",
                           str(tmp_path / "again"), "--quiet", *work], capture_output=True, text=True, timeout=900,
                          env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "reusing the finished model" in proc.stdout
    assert "(0 from the cache)" not in proc.stdout
