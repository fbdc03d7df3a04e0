"""Shared fixtures: a tiny BERT built inside the tests, tiny labelled data, a tiny bundle.

The tiny encoder is a real ``BertModel`` (2 layers, hidden 32) with a real WordPiece fast
tokenizer trained on the fixture texts, saved in ``save_pretrained`` layout: the product's
code paths (local-directory source, AutoModel/AutoTokenizer, bundles) run unchanged on it,
in seconds.
"""

from __future__ import annotations

import csv
import random
from collections import Counter
from pathlib import Path

import pytest

# Words that decide each label, in English and Arabic, so a tiny model can learn them.
CUES = {
    "anger": ["furious", "angry", "غاضب", "غضب"],
    "fear": ["scared", "terrified", "خائف", "رعب"],
    "joy": ["happy", "delighted", "سعيد", "فرح"],
    "sadness": ["sad", "crying", "حزين", "بكاء"],
}
FILLER = ["the", "day", "was", "today", "we", "went", "home", "and", "it", "felt",
          "اليوم", "كان", "في", "البيت", "ذهبنا", "الى", "و", "هو"]


def make_rows(n: int, seed: int) -> list[dict[str, object]]:
    rng = random.Random(seed)
    labels = list(CUES)
    rows = []
    for i in range(n):
        active = [lab for lab in labels if rng.random() < 0.3]
        words = rng.sample(FILLER, 4) + [rng.choice(CUES[lab]) for lab in active]
        rng.shuffle(words)
        rows.append({"id": f"tiny_{seed}_{i:04d}", "text": " ".join(words),
                     **{lab: int(lab in active) for lab in labels}})
    return rows


def write_brighter_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tiny-data")
    return {
        "train": write_brighter_csv(folder / "train.csv", make_rows(160, seed=1)),
        "dev": write_brighter_csv(folder / "dev.csv", make_rows(60, seed=2)),
    }


def wordpiece_vocab(words: Counter, specials: list[str], size: int) -> dict[str, int]:
    """A WordPiece vocabulary learnt as ``tokenizers``' WordPieceTrainer learns it (merge the most
    frequent adjacent pair, ``##`` marking pieces inside a word) but with ties broken by the pair's
    text. The Rust trainer breaks ties in hash-map order, which changes from one process to the next:
    the tiny BERT then had a different tokenizer, so different training, in every test run."""
    split = {w: [c if i == 0 else f"##{c}" for i, c in enumerate(w)] for w in sorted(words)}
    vocab = specials + sorted({piece for pieces in split.values() for piece in pieces})
    while len(vocab) < size:
        pairs = Counter()
        for w, pieces in split.items():
            for pair in zip(pieces, pieces[1:]):
                pairs[pair] += words[w]
        if not pairs:
            break
        a, b = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merged = a + b.removeprefix("##")
        for w, pieces in split.items():
            i = 0
            while i < len(pieces) - 1:
                if (pieces[i], pieces[i + 1]) == (a, b):
                    pieces[i:i + 2] = [merged]
                i += 1
        if merged not in vocab:
            vocab.append(merged)
    return {piece: i for i, piece in enumerate(vocab)}


def build_tiny_encoder(folder: Path, texts: list[str], hidden_size: int = 32, seed: int = 0,
                       vocab_size: int = 400) -> Path:
    """Train a WordPiece tokenizer on ``texts`` and save it with a random tiny BertModel."""
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    normalizer, pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    words = Counter(w for text in texts for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    tok = Tokenizer(models.WordPiece(vocab=wordpiece_vocab(words, specials, vocab_size), unk_token="[UNK]"))
    tok.normalizer, tok.pre_tokenizer, tok.decoder = normalizer, pre_tokenizer, decoders.WordPiece()
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=128)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=hidden_size, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, pad_token_id=0)
    model = BertModel(config, add_pooling_layer=False)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> Path:
    texts = [r["text"] for r in make_rows(400, seed=3)] + ["<script> alert img onerror 😀 🙂 !"]
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny-encoder") / "bert", texts)


def tiny_config(tiny_encoder: Path, tiny_data: dict[str, Path], **training):
    from emoscope.config import DataConfig, EncoderConfig, RunConfig, TrainingConfig

    options = {"lr": 3e-3, "head_lr": 1e-2, "batch_size": 16, "epochs": 20, "patience": 20, "warmup_ratio": 0.0,
               "seed": 7, **training}
    return RunConfig(
        name="tiny",
        data=DataConfig(train=str(tiny_data["train"]), validation=str(tiny_data["dev"])),
        encoders=(EncoderConfig(source=str(tiny_encoder), pooling="mean", max_length=32, dropout=0.0),),
        training=TrainingConfig(**options),
    )


@pytest.fixture(scope="session")
def tiny_encoder_b(tmp_path_factory) -> Path:
    """A second tiny encoder with its own tokenizer (smaller vocabulary) and hidden size 24."""
    texts = [r["text"] for r in make_rows(300, seed=4)]
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny-encoder-b") / "bert", texts, hidden_size=24, seed=1,
                              vocab_size=250)


def tiny_stack_config(encoders, tiny_data: dict[str, Path], folds: int = 2, loss: str = "hybrid", **training):
    """A stacked recipe over tiny encoders: ``encoders`` is a list of (path, fine_tune) pairs."""
    from emoscope.config import EncoderConfig, LossConfig, MetaConfig, StackConfig

    base = tiny_config(encoders[0][0], tiny_data, **{"epochs": 4, "patience": 4, **training})
    encs = tuple(EncoderConfig(source=str(path), name=f"tiny{i}", pooling="mean", max_length=32, dropout=0.0,
                               fine_tune=fine_tune) for i, (path, fine_tune) in enumerate(encoders))
    return base.replace(name="tiny-stack", encoders=encs, stack=StackConfig(folds=folds, max_words=16),
                        meta=MetaConfig(hidden_size=16, dense_size=16, epochs=30, patience=30, lr=1e-2, dropout=0.1),
                        loss=LossConfig(name=loss))


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, tiny_encoder, tiny_data) -> Path:
    from emoscope.training import train

    out = tmp_path_factory.mktemp("tiny-bundle") / "tiny"
    return train(tiny_config(tiny_encoder, tiny_data), out, progress=False, log=lambda _: None)


# A bundle whose label names, recipe name and description hold markup (the card and the pages must
# show them as text).
EVIL_LABELS = {"anger": "<script>alert(1)</script>", "fear": "[fear](http://evil.example)", "joy": "joy *bold* $x$",
               "sadness": "sadness"}
EVIL_NAME = "<script>x</script> [click](http://evil.example)"


@pytest.fixture(scope="session")
def evil_bundle(tiny_encoder, tmp_path_factory):
    """A bundle really trained on data whose label names, recipe name and description hold markup."""
    from emoscope.training import train

    folder = tmp_path_factory.mktemp("evil-data")

    def rows(n, seed):
        return [{EVIL_LABELS.get(k, k): v for k, v in r.items()} for r in make_rows(n, seed)]

    data = {"train": write_brighter_csv(folder / "train.csv", rows(160, 1)),
            "dev": write_brighter_csv(folder / "dev.csv", rows(60, 2))}
    config = tiny_config(tiny_encoder, data, epochs=2).replace(
        name=EVIL_NAME, description="**bold** <img src=x onerror=alert(2)> `code`")
    return train(config, folder / "bundle", progress=False, log=lambda _: None)


def write_tiny_recipe(folder: Path, tiny_encoder: Path, tiny_data: dict[str, Path], epochs: int,
                      name: str = "tiny-bg") -> Path:
    """A recipe file over the tiny encoder and data that trains in seconds (``epochs`` sets how many),
    for tests that run ``emoscope train`` as the app does, in a background process."""
    recipe = folder / f"{name}.toml"
    recipe.write_text(f"""
name = "{name}"
[data]
train = "{tiny_data['train']}"
validation = "{tiny_data['dev']}"
[[encoders]]
source = "{tiny_encoder}"
max_length = 32
[training]
lr = 3e-3
batch_size = 16
epochs = {epochs}
patience = {epochs}
""", encoding="utf-8")
    return recipe


def spy_on_leakage_gate(monkeypatch) -> list:
    """Record every (model, keys, allow_seen) stage 2's leakage gate checks; the gate still runs."""
    from emoscope.training.stack import stage2

    calls: list = []
    real = stage2.check_not_trained_on

    def spy(model, keys, *, allow_seen=False):
        calls.append((model, list(keys), allow_seen))
        return real(model, keys, allow_seen=allow_seen)

    monkeypatch.setattr(stage2, "check_not_trained_on", spy)
    return calls
