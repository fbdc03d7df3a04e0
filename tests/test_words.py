"""The shared words: pooling sub-word vectors onto words, and word encoders of different tokenizers lining up."""

from __future__ import annotations

import pytest
import torch

from emoscope.text import NormalizerConfig
from emoscope.words import WordEncoder, pool_words, read_words


def test_pool_words_mean_and_first_by_hand():
    hidden = torch.tensor([[[1.0, 0.0], [2.0, 2.0], [4.0, 6.0], [9.0, 9.0], [5.0, 5.0]]])
    # token 0 special, tokens 1-2 are word 0, token 3 is word 1, token 4 special; word 2 was cut off
    word_index = torch.tensor([[-1, 0, 0, 1, -1]])
    mean = pool_words(hidden, word_index, 3, "mean")
    torch.testing.assert_close(mean, torch.tensor([[[3.0, 4.0], [9.0, 9.0], [0.0, 0.0]]]))
    first = pool_words(hidden, word_index, 3, "first")
    torch.testing.assert_close(first, torch.tensor([[[2.0, 2.0], [9.0, 9.0], [0.0, 0.0]]]))
    with pytest.raises(ValueError, match="word pooling"):
        pool_words(hidden, word_index, 3, "max")


def test_word_encoders_of_different_tokenizers_line_up(tiny_encoder, tiny_encoder_b):
    from transformers import AutoTokenizer

    normalizer = NormalizerConfig()
    a = WordEncoder(AutoTokenizer.from_pretrained(tiny_encoder), normalizer, 32, 16)
    b = WordEncoder(AutoTokenizer.from_pretrained(tiny_encoder_b), normalizer, 32, 16, prefix="query:")
    text = "the furious day 😀 كان غاضب!!"
    words = a.words(text)
    assert words == b.words(text) == read_words(text, normalizer, 16).model_words
    for encoder in (a, b):
        (ids, index), = encoder.encode([words])
        assert len(ids) == len(index)
        assert sorted(set(index) - {-1}) == list(range(len(words)))  # every word has a token
        assert index[0] == -1 and index[-1] == -1  # specials
    (_, index_b), = b.encode([words])
    assert index_b[1] == -1  # the "query:" prefix word maps to no shared word
    assert read_words("ـــ", normalizer, 16).model_words == [""]  # a text of only tatweel is one unknown word
    assert len(read_words(" ".join(["w"] * 40), normalizer, 16).model_words) == 16
