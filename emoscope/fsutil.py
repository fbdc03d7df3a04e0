"""Filesystem helpers shared by everything that writes what other code will trust: directories and
files that appear whole or not at all, outputs checked before any work, one writer per output.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from emoscope.errors import ConfigError, InputError


class OutputExists(ConfigError, FileExistsError):
    """The output appeared while this run was writing it (a ``FileExistsError`` too)."""


@contextmanager
def atomic_directory(target: str | os.PathLike[str], *, overwrite: bool = True, tag: str = "partial") -> Iterator[Path]:
    """Yield an empty hidden sibling of ``target`` to fill; on success it becomes ``target``.

    On any exception (including Ctrl-C) the sibling is removed and ``target`` is untouched,
    so readers only ever see nothing, the old complete directory, or the new complete one.
    An existing ``target`` is replaced only when ``overwrite`` is true (``FileExistsError``
    otherwise), and only once the new one is complete. Without ``overwrite`` the final rename
    fails (``OutputExists``) if a ``target`` appeared meanwhile: a directory is never renamed onto
    a non-empty one. A lock this process holds on ``target`` (:func:`lock_output`) is released.
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
        if target.exists() and overwrite:
            old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:12]}"
            os.replace(target, old)  # os.replace cannot overwrite a non-empty directory
            os.replace(staging, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            _rename_new(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        release_output(target)


def _rename_new(staging: Path, target: Path) -> None:
    try:
        os.rename(staging, target)
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
            raise OutputExists(f"{target} appeared while this run was writing it; nothing was replaced. Choose "
                               "another --output, or pass --overwrite to replace it") from None
        raise


@contextmanager
def atomic_file(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a fresh hidden path beside ``target`` to write; on success it replaces ``target``.

    On any exception the partial file is removed and ``target`` is untouched. The name is unique,
    so two writers of one output never share a partial file; the file gets the usual mode (umask)."""
    target = Path(target)
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:12]}.partial"
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(target: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``target`` whole or not at all."""
    with atomic_file(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def check_output_file(path: str | os.PathLike[str], option: str = "--output") -> Path:
    """``path`` as a file to write, or an ``InputError`` naming the problem, before any work:
    a directory, a folder that does not exist or is a file, or one this user cannot write to."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{option} {path} is a directory; give the name of a file to write")
    parent = path.parent
    if not parent.exists():
        raise InputError(f"{option} {path}: the folder {parent} does not exist; create it first or choose another "
                         "place")
    if not parent.is_dir():
        raise InputError(f"{option} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{option} {path}: cannot write into {parent} (permission denied); choose another place")
    return path


# --- one writer per output ------------------------------------------------------------------------

_HELD: dict[Path, int] = {}  # resolved output → the open lock file (this process holds its lock)
_HELD_LOCK = threading.Lock()


def lock_path(target: str | os.PathLike[str]) -> Path:
    """The lock file of an output: a hidden sibling, kept (removing it would race a new holder)."""
    target = Path(target)
    return target.parent / f".{target.name}.lock"


def lock_output(target: str | os.PathLike[str]) -> None:
    """Hold an exclusive lock on writing ``target`` until :func:`release_output` (which
    :func:`atomic_directory` calls) or the process ends; ``ConfigError`` when another process holds it.

    An ``fcntl`` lock on :func:`lock_path`, so a killed run releases it. Re-entrant within a process."""
    key = Path(target).absolute()
    with _HELD_LOCK:
        if key in _HELD:
            return
        key.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path(key), os.O_CREAT | os.O_RDWR, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
            os.close(fd)
            raise ConfigError(f"{target} is being written by another training run"
                              + (f" (process {holder})" if holder else "")
                              + "; wait for it to finish or choose another --output") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        _HELD[key] = fd


def release_output(target: str | os.PathLike[str]) -> None:
    """Release this process's lock on ``target``, if it holds one."""
    with _HELD_LOCK:
        fd = _HELD.pop(Path(target).absolute(), None)
    if fd is not None:
        os.close(fd)  # closing the descriptor drops the flock


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 4 MiB blocks so large weight files stay out of memory."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()
