"""EncoderClassifier and WordEncoder on a hand-sized BERT: pooling, precision, text handling."""

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertModel

from emoscope.models import EncoderClassifier
from emoscope.text import NormalizerConfig
from emoscope.words import WordEncoder


def small_bert() -> BertModel:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=16, max_position_embeddings=32)
    return BertModel(config, add_pooling_layer=False).eval()


class _Ids:
    """The least a WordEncoder needs of a tokenizer, for models fed token ids directly."""

    is_fast = True
    unk_token = "[UNK]"
    pad_token_id = 0


def classifier(pooling: str = "mean") -> EncoderClassifier:
    return EncoderClassifier(small_bert(), WordEncoder(_Ids(), NormalizerConfig(), 32), n_labels=3, pooling=pooling)


def pooled(model: EncoderClassifier, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return model.logits({"input_ids": ids, "attention_mask": mask}, return_features=True)[1]


def test_mean_pooling_ignores_padding():
    model = classifier("mean").eval()
    ids = torch.tensor([[1, 5, 6, 2, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 0, 0]])
    hidden = model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    expected = hidden[0, :4].mean(0)
    torch.testing.assert_close(pooled(model, ids, mask)[0], expected)


def test_cls_pooling_takes_the_first_token():
    model = classifier("cls").eval()
    ids, mask = torch.tensor([[1, 5, 6, 2]]), torch.ones(1, 4, dtype=torch.long)
    hidden = model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(pooled(model, ids, mask)[0], hidden[0, 0])


def test_head_stays_fp32_under_bf16_autocast():
    model = classifier().eval()
    ids, mask = torch.tensor([[1, 5, 6, 2]]), torch.ones(1, 4, dtype=torch.long)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model([{"input_ids": ids, "attention_mask": mask}])
    assert logits.dtype == torch.float32


def test_freezing_word_embeddings_freezes_only_them():
    model = classifier()
    frozen = model.freeze_word_embeddings()
    assert frozen == 50 * 16
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "encoder.embeddings.word_embeddings.weight" not in trainable
    assert "encoder.embeddings.position_embeddings.weight" in trainable and "head.weight" in trainable


def test_unknown_pooling_is_refused():
    with pytest.raises(ValueError, match="pooling"):
        classifier("max")


def test_word_encoder_words_prefix_and_normalisation(tiny_encoder):
    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder)
    enc = WordEncoder(tokenizer, NormalizerConfig(), max_length=16, prefix="query:")
    # Diacritics and tatweel go, punctuation is its own word; the prefix word is read first.
    assert enc.words("سَعِيـــد جدا!") == ["سعيد", "جدا", "!"]
    ids, index = enc.encode_texts(["سَعِيـــد جدا!"])[0]
    query = tokenizer("query:", add_special_tokens=False)["input_ids"]
    assert ids[1:1 + len(query)] == query and index[:1 + len(query)] == [-1] * (1 + len(query))
    # A text of nothing but tatweel still gives one (unknown) word to classify.
    assert enc.words("ـــ") == [""]
    ids, index = enc.encode_texts(["ـــ"])[0]
    assert tokenizer.unk_token_id in ids and 0 in index


def test_word_encoder_truncates_and_pads(tiny_encoder):
    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder)
    enc = WordEncoder(tokenizer, NormalizerConfig(), max_length=8)
    batch = enc.pad(enc.encode_texts(["happy " * 50, "sad"]))
    assert batch["input_ids"].shape == (2, 8)
    assert batch["attention_mask"][1].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    assert batch["input_ids"][1, 3:].eq(tokenizer.pad_token_id).all()


@pytest.mark.parametrize("name, message", [
    ("cuda:x", "not a device name"),
    ("tpu", "not a device name"),
    ("meta", "not supported"),
    ("cuda", "CUDA is not available"),
])
def test_device_names_this_machine_cannot_use_are_config_errors(name, message, monkeypatch):
    from emoscope.errors import ConfigError
    from emoscope.models import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=message):
        pick_device(name)
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto") == torch.device("cpu")


def test_a_gpu_index_past_the_last_gpu_is_a_config_error(monkeypatch):
    from emoscope.errors import ConfigError
    from emoscope.models import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert pick_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ConfigError, match="has 1 GPU"):
        pick_device("cuda:3")


def test_bf16_only_on_gpus_with_native_bf16(monkeypatch):
    from emoscope.models.runtime import cuda_bf16, default_precision

    assert default_precision(torch.device("cpu")) == "fp32"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for capability, native in (((7, 5), False), ((8, 0), True), ((9, 0), True)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, c=capability: c)
        assert cuda_bf16(torch.device("cuda:0")) is native
        assert default_precision(torch.device("cuda:0")) == ("bf16" if native else "fp32")
