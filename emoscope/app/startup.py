"""What a server process does once, before any page runs: :func:`warm_up`.

Every library the pages reach is imported here, in one thread, under a lock: pandas, pyarrow
and plotly (which Streamlit itself imports lazily, inside ``st.dataframe`` and
``st.plotly_chart``), torch and the transformers model families the encoders load (transformers
imports them lazily, on first use), LIME, captum and scikit-learn (imported by the explainers
only when one runs), and the project's page modules. Imported lazily instead, from several
sessions' script threads at once on a fresh server, they raced: Python's import deadlock
detection hands one thread a partially initialised module ("partially initialized module
'pandas' has no attribute 'Series'"). ``app.py`` calls :func:`warm_up` before its own imports;
the first session does the work while the others wait on the lock, and later calls return at
once. It also sweeps upload folders that dead sessions left behind (``workdir.sweep``) and, in a
real server, starts the thread that removes the folders of sessions that closed
(``workdir.sweep_closed_sessions``).

Light on purpose: importing this module imports only the standard library, Streamlit (loaded already
in a server) and ``workdir``.
"""

from __future__ import annotations

import importlib
import threading
import time

from streamlit.runtime import Runtime

from emoscope.app import workdir

LIBRARIES = (
    "numpy", "pandas", "pandas.api.types", "pandas.api.extensions", "pandas.io.formats.style", "pyarrow",
    "pyarrow.compute", "plotly.io", "plotly.graph_objects", "plotly.subplots", "torch", "safetensors.torch",
    "tokenizers", "transformers", "transformers.modeling_utils", "transformers.tokenization_utils_fast",
    "transformers.models.auto.modeling_auto", "transformers.models.auto.tokenization_auto",
    "transformers.models.bert.modeling_bert", "transformers.models.mpnet.modeling_mpnet",
    "transformers.models.xlm_roberta.modeling_xlm_roberta", "transformers.models.gemma3.modeling_gemma3",
    "lime.lime_text", "sklearn.linear_model", "captum.attr", "captum.attr._utils.approximation_methods", "tqdm.auto",
)
PROJECT = (
    "emoscope.app.state", "emoscope.app.sidebar", "emoscope.app.charts", "emoscope.app.card_charts",
    "emoscope.app.train_charts", "emoscope.app.explain_widgets", "emoscope.app.markup", "emoscope.app.access",
    "emoscope.app.work_queue", "emoscope.explain", "emoscope.analysis", "emoscope.predict", "emoscope.rowfiles",
    "emoscope.metrics", "emoscope.thresholds", "emoscope.bundle", "emoscope.card", "emoscope.config", "emoscope.data",
    "emoscope.jobs", "emoscope.progress", "emoscope.models", "emoscope.encoders",
)
_LOCK = threading.Lock()
_done = False
missing: list[str] = []  # optional libraries this environment lacks (an encoder family not installed)


def warm_up() -> None:
    """Import what the pages need and sweep dead sessions' upload folders, once per process."""
    global _done
    if _done:
        return
    with _LOCK:
        if _done:
            return
        for name in LIBRARIES:
            try:
                importlib.import_module(name)
            except ImportError:
                missing.append(name)
        for name in PROJECT:
            importlib.import_module(name)
        workdir.sweep()
        _start_sweeper()
        _done = True


def _start_sweeper() -> None:
    """In a real server (not AppTest's stand-in runtime), sweep closed sessions' folders in the background."""
    if not Runtime.exists() or type(Runtime.instance()) is not Runtime:
        return
    runtime = Runtime.instance()

    def sweep_forever() -> None:
        while True:
            time.sleep(workdir.SWEEP_INTERVAL_S)
            try:
                workdir.sweep_closed_sessions(runtime.is_active_session)
            except Exception:  # noqa: BLE001 - a failed sweep must never take the server down; the next one retries
                pass

    threading.Thread(target=sweep_forever, name="emoscope-upload-sweeper", daemon=True).start()
