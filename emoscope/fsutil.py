"""Filesystem helpers shared by everything that writes a directory other code will trust."""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_directory(target: str | os.PathLike[str], *, overwrite: bool = True, tag: str = "partial") -> Iterator[Path]:
    """Yield an empty hidden sibling of ``target`` to fill; on success it becomes ``target``.

    On any exception (including Ctrl-C) the sibling is removed and ``target`` is untouched,
    so readers only ever see nothing, the old complete directory, or the new complete one.
    An existing ``target`` is replaced only when ``overwrite`` is true (``FileExistsError``
    otherwise), and only once the new one is complete.
    """
    target = Path(target)
    if target.exists() and not overwrite:
        raise FileExistsError(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Same filesystem, so the renames are atomic; mkdir (unlike mkdtemp's 0700) keeps the usual mode.
    staging = target.parent / f".{target.name}.{tag}-{uuid.uuid4().hex[:12]}"
    staging.mkdir()
    try:
        yield staging
        if target.exists():
            old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:12]}"
            os.replace(target, old)  # os.replace cannot overwrite a non-empty directory
            os.replace(staging, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 4 MiB blocks so large weight files stay out of memory."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()
