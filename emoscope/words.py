"""The words every model reads, and the map from each encoder's sub-words back onto them.

Every model and explainer reads a text the same way (:func:`read_words`): the project's own
segmentation of the text as typed (``emoscope.text.prepare_words``), each word normalised on its
own, the words that normalise to nothing dropped, the rest cut to ``max_words``. A
:class:`WordEncoder` hands those words to one encoder's tokenizer (``is_split_into_words``) and
keeps, for every token, the index of the word it came from; :func:`pool_words` then averages an
encoder's sub-word vectors onto the words. Three encoders with three tokenizers therefore line
up word by word, and attributions come out per word of the user's own text.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from emoscope.errors import ConfigError
from emoscope.text import NormalizerConfig, Word, check_text, prepare_words


@dataclass(frozen=True)
class ReadWords:
    """How a model reads one text.

    ``words``: every word of the text as typed (with offsets); ``read``: the index in ``words``
    of each word the model reads; ``model_words``: the normalised words it reads (one empty word
    when none is left, e.g. a text of nothing but tatweel: a model still needs one token)."""

    words: list[Word]
    read: list[int]
    model_words: list[str]


def read_words(text: str, normalizer: NormalizerConfig, max_words: int | None = None) -> ReadWords:
    """The words of ``text`` a model reads: normalised, non-empty, cut to ``max_words`` (None: no cut).
    Text that cannot be encoded is an ``InputError`` here too (``text.check_text``), whatever path it
    came by: the tokenizers would fail on it with a ``TypeError``."""
    words, normalised = prepare_words(check_text(text), normalizer)
    read = [i for i, w in enumerate(normalised) if w][:max_words]
    return ReadWords(words, read, [normalised[i] for i in read] or [""])


def text_key(words: Sequence[str]) -> str:
    """Identity of a text as the encoders see it (two texts that normalise alike are one text)."""
    return hashlib.sha256("\x1f".join(words).encode("utf-8")).hexdigest()[:32]


Encoded = tuple[list[int], list[int]]
"""One text for one encoder: token ids, and the word index of each token (-1: special or prefix)."""


class WordEncoder:
    """Tokenise the words a model reads for one encoder, keeping each token's word index."""

    def __init__(self, tokenizer: Any, normalizer: NormalizerConfig, max_length: int, max_words: int | None = None,
                 prefix: str = ""):
        if not getattr(tokenizer, "is_fast", False):
            raise ConfigError("EmoScope needs a fast (Rust) tokenizer to map sub-words to words; "
                              f"{type(tokenizer).__name__} is not one")
        limit = getattr(tokenizer, "model_max_length", None)  # load_encoder sets it from the model's positions
        if isinstance(limit, int) and limit < max_length:
            raise ConfigError(f"max_length {max_length} is more than the {limit} tokens this encoder takes (its "
                              f"max_position_embeddings less any padding offset): set max_length to at most {limit}")
        self.tokenizer = tokenizer
        self.normalizer = normalizer
        self.max_length = max_length
        self.max_words = max_words
        self.prefix = prefix
        self.prefix_words = prefix.split()
        self.unk = tokenizer.unk_token or "[UNK]"

    def read(self, text: str) -> ReadWords:
        return read_words(text, self.normalizer, self.max_words)

    def words(self, text: str) -> list[str]:
        """The normalised words of ``text`` this encoder reads (without its prefix)."""
        return self.read(text).model_words

    def encode(self, word_lists: Sequence[Sequence[str]]) -> list[Encoded]:
        """``(token ids, word index per token)`` per text, truncated to ``max_length`` tokens."""
        n_prefix = len(self.prefix_words)
        inputs = [self._as_in_running_text(self.prefix_words + [w or self.unk for w in words]) for words in word_lists]
        encoded = self.tokenizer(inputs, is_split_into_words=True, truncation=True, max_length=self.max_length)
        out = []
        for i, ids in enumerate(encoded["input_ids"]):
            index = [-1 if w is None or w < n_prefix else w - n_prefix for w in encoded.word_ids(i)]
            out.append((list(ids), index))
        return out

    def encode_texts(self, texts: Sequence[str]) -> list[Encoded]:
        return self.encode([self.words(t) for t in texts])

    def pad(self, encoded: Sequence[Encoded]) -> dict[str, torch.Tensor]:
        """``input_ids``, ``attention_mask`` and ``word_index`` tensors, padded to the longest text."""
        width = max(len(ids) for ids, _ in encoded)
        pad_id = self.pad_id
        input_ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(encoded), width), dtype=torch.long)
        word_index = torch.full((len(encoded), width), -1, dtype=torch.long)
        for row, (ids, index) in enumerate(encoded):
            input_ids[row, : len(ids)] = torch.as_tensor(ids, dtype=torch.long)
            mask[row, : len(ids)] = 1
            word_index[row, : len(index)] = torch.as_tensor(index, dtype=torch.long)
        return {"input_ids": input_ids, "attention_mask": mask, "word_index": word_index}

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    @functools.cached_property
    def spaced(self) -> bool:
        """Whether this tokenizer needs each word's space back (:func:`split_words_need_spaces`), asked once."""
        return split_words_need_spaces(self.tokenizer)

    def _as_in_running_text(self, words: list[str]) -> list[str]:
        """The words with the space before each one put back where the tokenizer needs it to see a
        word boundary (:func:`split_words_need_spaces`), so they tokenise as in running text; the
        space is part of the word, so ``word_ids`` still gives every token its word."""
        return words[:1] + [" " + w for w in words[1:]] if self.spaced else words


def split_words_need_spaces(tokenizer: Any) -> bool:
    """Whether words handed to ``tokenizer`` one by one (``is_split_into_words``) lose the word
    boundary it sees in running text and get it back from a leading space: true for Gemma's
    tokenizer (its normaliser turns spaces into ``▁`` and no pre-tokeniser adds one, so
    ``["I", "am"]`` would read as ``Iam``), false for WordPiece and Metaspace tokenizers."""
    probe = ["emotion", "words", "فرحان"]
    running = tokenizer(" ".join(probe), add_special_tokens=False)["input_ids"]
    split = tokenizer(probe, is_split_into_words=True, add_special_tokens=False)["input_ids"]
    spaced = tokenizer(probe[:1] + [" " + w for w in probe[1:]], is_split_into_words=True,
                       add_special_tokens=False)["input_ids"]
    return split != running and spaced == running


def pool_words(hidden: torch.Tensor, word_index: torch.Tensor, n_words: int, mode: str = "mean") -> torch.Tensor:
    """Sub-word vectors ``[B, T, H]`` → word vectors ``[B, n_words, H]``.

    ``word_index [B, T]`` gives each token's word (-1: none). ``mean`` averages a word's
    sub-words, ``first`` takes its first one. A word with no token (cut by the encoder's
    ``max_length``) gets a zero vector. Differentiable, so attributions flow through it.
    """
    positions = torch.arange(n_words, device=hidden.device)
    onehot = word_index.unsqueeze(1) == positions[None, :, None]  # [B, W, T]
    if mode == "first":
        onehot = onehot & (onehot.cumsum(-1) == 1)
    elif mode != "mean":
        raise ValueError(f"word pooling must be 'mean' or 'first', got {mode!r}")
    weights = onehot.to(hidden.dtype)
    weights = weights / weights.sum(-1, keepdim=True).clamp(min=1.0)
    return weights @ hidden


def token_word_matrix(word_index: Sequence[int], read: Sequence[int], n_words: int) -> torch.Tensor:
    """``[T, n_words]`` 0/1 matrix: token t belongs to word w of the text as typed (``read`` maps
    the model's word positions to those words); summing token scores through it gives word scores."""
    m = torch.zeros(len(word_index), n_words)
    for t, w in enumerate(word_index):
        if 0 <= w < len(read):
            m[t, read[w]] = 1.0
    return m
