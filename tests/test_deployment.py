"""A deployment many people share (issue 16, items 4 and 5), through AppTest on a real tiny bundle.

Shared mode (``EMOSCOPE_ADMIN_PASSWORD``, from the environment or ``st.secrets``): every reading
page open, every write action refused without the password and run with it, failures locked
out per session and backed off process-wide. The work queue: slots, order, positions, the
per-session limit, places and slots given up by sessions that leave. Start-up: the libraries the
pages need imported once under a lock, leftover upload folders swept, uploads bounded.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from emoscope.app import access
from emoscope.app.work_queue import WORK, Busy, QueueTimeout, WorkQueue

ROOT = Path(__file__).parent.parent
APP = str(ROOT / "app.py")
SECRET = "correct horse battery staple"


@pytest.fixture
def models_dir(tmp_path, tiny_bundle, monkeypatch):
    shutil.copytree(tiny_bundle, tmp_path / "models" / "tiny")
    monkeypatch.setenv("EMOSCOPE_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.delenv(access.SETTING, raising=False)
    access.BACKOFF.reset()
    yield tmp_path / "models"
    access.BACKOFF.reset()


@pytest.fixture
def shared(models_dir, monkeypatch):
    monkeypatch.setenv(access.SETTING, SECRET)
    return models_dir


def _button(at, label: str):
    return next(b for b in at.button if b.label.startswith(label))


def _press_anyway(at, label: str):
    """Press a button the page drew disabled, as a crafted request to the server can."""
    button = _button(at, label)
    assert button.disabled
    button.disabled = False  # AppTest refuses disabled widgets; the server has no such check
    return button.click().run()


def _unlocked(at) -> bool:
    return any("unlocked" in m.value for kind in ("success", "caption") for m in getattr(at.sidebar, kind))


def _unlock(at, password: str = SECRET):
    """Type the password into the admin box of the page ``at`` shows, and submit it."""
    at.text_input(key="access_password").input(password)
    _button(at, "Unlock write actions").click().run()
    return at


def _press_anyway(at, label: str):
    """Press a button the page drew disabled, as a crafted request to the server can (Streamlit
    discards a disabled widget's value server-side; the page checks ``access.can_write`` too)."""
    button = _button(at, label)
    assert button.disabled
    button.proto.disabled = False  # AppTest itself refuses to press a disabled widget
    return button.click().run()


def _unlocked(at) -> bool:
    return any("unlocked" in m.value for kind in ("success", "caption") for m in getattr(at.main, kind))


def _snapshot(bundle: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(bundle.rglob("*")) if p.is_file()}


def _on(page: str, **secrets) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    for key, value in secrets.items():
        at.secrets[key] = value
    at.run()
    at.switch_page(f"pages/{page}.py").run()
    return at


# --- without the setting: a single local user, as before -----------------------------------------

def test_without_the_setting_there_is_no_admin_box_and_writes_are_open(models_dir):
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not any("Shared deployment" in c.value for c in at.sidebar.caption)
    at.switch_page("pages/thresholds.py").run()
    assert not at.text_input and not _button(at, "Save these thresholds").disabled


# --- shared mode: reading open, writing locked -----------------------------------------------------

@pytest.mark.parametrize("page", ["predict", "explain", "thresholds", "evaluate", "errors", "batch", "model", "train"])
def test_shared_mode_keeps_every_reading_page_open(shared, page):
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert any("Shared deployment" in c.value for c in at.sidebar.caption)  # (AppTest draws the sidebar once)
    at.switch_page(f"pages/{page}.py").run()
    assert not at.exception and not at.error


def test_shared_mode_saves_no_thresholds_without_the_password(shared):
    bundle = shared / "tiny"
    before = _snapshot(bundle)
    at = _on("thresholds")
    at.slider(key=f"slider::{at.slider[0].label}").set_value(0.93).run()
    _press_anyway(at, "Save these thresholds")
    assert not at.exception and not at.success and _snapshot(bundle) == before


def test_shared_mode_writes_no_model_card_without_the_password(shared):
    import json

    from emoscope.card import CARD

    bundle = shared / "tiny"
    raw = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    for name in (CARD, "training_curves.svg"):
        (bundle / name).unlink()
        del raw["files"][name]
    (bundle / "manifest.json").write_text(json.dumps(raw, ensure_ascii=False, indent=1), encoding="utf-8")
    before = _snapshot(bundle)
    at = _on("model")
    _press_anyway(at, "Write the card into the bundle")
    assert not at.exception and _snapshot(bundle) == before
    _unlock(at)
    assert _unlocked(at) and not _button(at, "Write the card into the bundle").disabled
    _button(at, "Write the card into the bundle").click().run()
    assert not at.exception and (bundle / CARD).exists()


@pytest.fixture
def train_setup(shared, tmp_path, tiny_encoder, tiny_data, monkeypatch):
    from test_app import _tiny_recipe

    recipes = tmp_path / "recipes"
    recipes.mkdir()
    shutil.copy(_tiny_recipe(tmp_path, tiny_encoder, tiny_data, 300), recipes / "tiny.toml")
    monkeypatch.setenv("EMOSCOPE_RECIPES_DIR", str(recipes))
    monkeypatch.setenv("EMOSCOPE_CACHE_DIR", str(tmp_path / "cache"))
    return shared


def test_shared_mode_starts_and_cancels_no_run_without_the_password_and_does_with_it(train_setup):
    from emoscope import jobs

    models = train_setup
    at = _on("train")
    assert _button(at, "Cancel the run").disabled and at.get("file_uploader")[0].proto.disabled
    _press_anyway(at, "Start training")
    assert not at.exception and jobs.current(models) is None
    admin = _unlock(_on("train"))  # the admin, in another session
    _button(admin, "Start training").click().run()
    try:
        run = jobs.current(models)
        assert run is not None and jobs.status(models)["state"] == "running"
        at.run()
        _press_anyway(at, "Cancel the run")  # the visitor presses Cancel anyway
        assert not at.exception and jobs._alive(run["pid"]) and jobs.status(models)["state"] == "running"
        admin.run()
        _button(admin, "Cancel the run").click().run()
        assert not admin.exception and jobs.status(models)["state"] == "cancelled"
    finally:
        jobs.cancel(models)


def test_the_password_from_st_secrets_unlocks_and_a_save_reloads_only_that_bundle(models_dir, tiny_bundle):
    from emoscope.app.state import load_predictor
    from emoscope.bundle import manifest_mtime

    second = models_dir / "second"
    shutil.copytree(tiny_bundle, second)
    other = load_predictor(str(second), manifest_mtime(second))  # another user's bundle, loaded
    tiny = models_dir / "tiny"
    at = AppTest.from_file(APP, default_timeout=60)
    at.secrets[access.SETTING] = SECRET  # .streamlit/secrets.toml, not the environment
    at.run()
    at.selectbox(key="model_picker").set_value(tiny).run()
    at.switch_page("pages/thresholds.py").run()
    assert _button(at, "Save these thresholds").disabled
    assert _unlocked(_unlock(at))
    before = load_predictor(str(tiny), manifest_mtime(tiny))
    label = at.slider[0].label
    at.slider(key=f"slider::{label}").set_value(0.93).run()
    assert not _button(at, "Save these thresholds").disabled
    _button(at, "Save these thresholds").click().run()
    assert not at.exception and "Saved into" in at.success[0].value
    assert load_predictor(str(second), manifest_mtime(second)) is other  # still loaded, not reloaded
    reloaded = load_predictor(str(tiny), manifest_mtime(tiny))
    assert reloaded is not before and abs(float(reloaded.thresholds[0]) - 0.93) < 1e-6
    _button(at, "Lock write actions").click().run()
    assert not _unlocked(at) and _button(at, "Save these thresholds").disabled


def test_wrong_passwords_lock_the_session_out_even_for_the_right_one(shared):
    at = _on("thresholds")
    for i in range(access.MAX_FAILURES):
        _unlock(at, f"guess {i}")
    assert "locked for 15 minutes" in at.error[0].value
    _unlock(at)
    assert "this session is locked" in at.error[0].value
    assert not _unlocked(at) and _button(at, "Save these thresholds").disabled


def test_failures_across_sessions_back_the_whole_process_off(shared):
    for _ in range(access.BACKOFF_FAILURES // access.MAX_FAILURES):  # new sessions buy no more guesses
        at = _on("thresholds")
        for i in range(access.MAX_FAILURES):
            _unlock(at, f"guess {i}")
    fresh = _unlock(_on("thresholds"))  # the right password, from a fresh session
    assert "on this server just now" in fresh.error[0].value and not _unlocked(fresh)
    access.BACKOFF.reset()  # the back-off is short: once it is over, the right password works
    assert _unlocked(_unlock(fresh))


def test_the_backoff_opens_again_after_its_pause():
    backoff = access.Backoff(failures=3, window_s=10, pause_s=5)
    for t in (0.0, 1.0):
        backoff.failed(t)
    assert backoff.wait_s(1.5) == 0  # two failures: no pause yet
    backoff.failed(2.0)
    assert backoff.wait_s(3.0) == pytest.approx(4.0) and backoff.wait_s(7.5) == 0
    backoff.failed(30.0)  # the earlier failures left the window
    assert backoff.wait_s(30.5) == 0


def test_the_password_is_compared_in_constant_time(monkeypatch):
    calls = []
    compare = access.hmac.compare_digest
    monkeypatch.setattr(access.hmac, "compare_digest", lambda a, b: calls.append((len(a), len(b))) or compare(a, b))
    assert access.matches(SECRET, SECRET) and not access.matches("x", SECRET) and not access.matches(SECRET + "x", SECRET)
    assert calls == [(32, 32)] * 3  # digests of equal length: neither content nor length leaks


# --- the work queue ------------------------------------------------------------------------------

def _run_in(queue: WorkQueue, session: str, hold: threading.Event, log: list, **kw) -> threading.Thread:
    def work():
        try:
            with queue.slot(session, "w", poll_s=0.01, **kw):
                log.append(("start", session))
                hold.wait(10)
                log.append(("end", session))
        except Exception as exc:  # noqa: BLE001 - recorded for the test to see
            log.append((type(exc).__name__, session))

    thread = threading.Thread(target=work)
    thread.start()
    return thread


def _until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_the_queue_runs_at_most_its_slots_first_come_first_served():
    queue, hold, log = WorkQueue(slots=2, max_waiting=8), threading.Event(), []
    threads = []
    for s in "abcde":
        threads.append(_run_in(queue, s, hold, log))
        _until(lambda: sum(queue.counts()) == len(threads))
    assert queue.counts() == (2, 3) and [e for e in log if e[0] == "start"] == [("start", "a"), ("start", "b")]
    hold.set()
    for t in threads:
        t.join()
    assert sorted(s for kind, s in log if kind == "start") == list("abcde") and queue.counts() == (0, 0)
    queue, hold, log = WorkQueue(slots=1), threading.Event(), []  # one slot: strictly in order of arrival
    threads = []
    for s in "abcd":
        threads.append(_run_in(queue, s, hold, log))
        _until(lambda: sum(queue.counts()) == len(threads))
    hold.set()
    for t in threads:
        t.join()
    assert [s for kind, s in log if kind == "start"] == list("abcd")


def test_a_session_runs_one_piece_of_work_at_a_time_and_may_queue_one_more():
    queue, hold, log = WorkQueue(slots=2, per_session=2), threading.Event(), []
    first = _run_in(queue, "me", hold, log)
    _until(lambda: queue.counts() == (1, 0))
    second = _run_in(queue, "me", hold, log)
    _until(lambda: queue.counts() == (1, 1))  # a slot is free, but this session already runs one
    with pytest.raises(Busy, match="already have 2"):
        queue.enter("me", "third")
    other = _run_in(queue, "you", hold, log)
    _until(lambda: queue.counts() == (2, 1))  # another session takes the free slot at once
    hold.set()
    for t in (first, second, other):
        t.join()
    assert queue.counts() == (0, 0)


def test_a_waiting_session_that_leaves_gives_up_its_place_and_positions_move_up():
    queue, hold, log, seen = WorkQueue(slots=1), threading.Event(), [], []
    running = _run_in(queue, "a", hold, log)
    _until(lambda: queue.counts() == (1, 0))
    gone = threading.Event()

    def on_wait(position, waiting):
        seen.append((position, waiting))
        if gone.is_set():
            raise RuntimeError("the session went away")  # what Streamlit raises in a stopped session

    leaving = _run_in(queue, "b", hold, log, on_wait=on_wait)
    staying_positions = []
    staying = _run_in(queue, "c", hold, log, on_wait=lambda p, w: staying_positions.append(p))
    # b hears of c's arrival on its own thread: wait for that too (on a busy machine it comes after c's)
    _until(lambda: queue.counts() == (1, 2) and staying_positions and (1, 2) in seen)
    assert staying_positions[-1] == 2
    gone.set()
    leaving.join()
    assert ("RuntimeError", "b") in log
    _until(lambda: staying_positions[-1] == 1)
    hold.set()
    running.join()
    staying.join()
    assert [s for kind, s in log if kind == "start"] == ["a", "c"] and queue.counts() == (0, 0)


def test_a_slot_is_released_when_the_work_fails_and_a_wait_can_time_out():
    queue = WorkQueue(slots=1)
    with pytest.raises(ValueError), queue.slot("a", "w"):
        raise ValueError("the work failed")
    assert queue.counts() == (0, 0)
    ticket = queue.enter("a", "w")
    with pytest.raises(QueueTimeout, match="number 1 in the queue"), queue.slot("b", "w", timeout_s=0.05, poll_s=0.01):
        pass
    assert queue.counts() == (1, 0)
    queue.leave(ticket)
    assert queue.counts() == (0, 0)


def test_the_explain_page_shows_its_place_in_the_queue_and_gives_it_up(models_dir, monkeypatch):
    monkeypatch.setenv("EMOSCOPE_QUEUE_TIMEOUT_S", "1")
    busy = [WORK.enter(f"someone else {i}", "LIME") for i in range(WORK.slots)]  # every slot taken
    try:
        at = AppTest.from_file(APP, default_timeout=60).run()
        at.switch_page("pages/explain.py").run()
        at.text_area(key="explain_text").input("so furious today").run()
        at.radio(key="explain_method").set_value("LIME").run()
        _button(at, "Explain").click().run()
        assert not at.exception
        assert "LIME did not start: still number 1 in the queue after 1 s" in at.warning[0].value
        assert WORK.counts() == (WORK.slots, 0)  # its place was given up
    finally:
        for ticket in busy:
            WORK.leave(ticket)
    at.run()  # a slot is free now: the same press computes
    assert not at.exception and not at.warning and at.get("html")


def test_the_default_slots_leave_half_the_cores_to_predictions(monkeypatch):
    from emoscope.app import work_queue

    monkeypatch.setenv("EMOSCOPE_WORK_SLOTS", "3")
    assert work_queue.default_slots() == 3
    monkeypatch.delenv("EMOSCOPE_WORK_SLOTS")
    assert work_queue.default_slots() == max(1, len(__import__("os").sched_getaffinity(0)) // 2)


# --- start-up: imports once, leftovers swept, uploads bounded --------------------------------------

def test_warm_up_imports_what_the_pages_need_once_while_other_sessions_wait():
    code = """
import sys, threading
from emoscope.app import startup
seen = []
def session():
    startup.warm_up()
    import pandas, plotly.graph_objects
    seen.append((pandas.Series([1]).sum(), 'lime.lime_text' in sys.modules, 'captum.attr' in sys.modules))
threads = [threading.Thread(target=session) for _ in range(8)]
[t.start() for t in threads]; [t.join() for t in threads]
assert seen == [(1, True, True)] * 8, seen
assert 'transformers.models.bert.modeling_bert' in sys.modules and not startup.missing, startup.missing
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_app_py_warms_up_before_it_imports_the_pages_modules():
    lines = Path(APP).read_text(encoding="utf-8").splitlines()
    warm = lines.index("warm_up()  # the pages' libraries, imported once under a lock before anything else: lazy "
                       "imports raced across sessions")
    project = [i for i, line in enumerate(lines) if line.startswith("from emoscope") and "startup" not in line]
    assert project and warm < min(project)


def test_sweep_removes_only_old_work_folders(tmp_path):
    from emoscope.app import workdir

    old, fresh = tmp_path / "emoscope-batch-old", tmp_path / "emoscope-batch-new"
    other = tmp_path / "emoscope-something-else"
    for folder in (old, fresh, other):
        folder.mkdir()
        (folder / "upload.csv").write_text("text\nhi\n")
    stale = time.time() - 7 * 3600
    import os

    os.utime(old, (stale, stale))
    os.utime(other, (stale, stale))
    assert workdir.sweep(tmp_path) == [old]
    assert not old.exists() and fresh.exists() and other.exists()


def test_uploads_are_bounded():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    assert 1 <= config["server"]["maxUploadSize"] <= 50


def test_a_write_is_refused_when_the_session_is_locked_however_the_press_arrives(shared):
    from streamlit.testing.v1 import AppTest as Test

    def page():
        import streamlit as st

        from emoscope.app.access import allow_write

        if allow_write("Saving thresholds into the bundle"):
            st.success("written")

    at = Test.from_function(page).run()  # the second check, on its own: no button state involved
    assert not at.success and "needs the admin password" in at.error[0].value


def test_closed_sessions_lose_their_work_folders_at_the_second_sweep_that_finds_them_gone(tmp_path):
    import os
    import uuid

    from emoscope.app import workdir

    alive, closed, blip = (str(uuid.uuid4()) for _ in range(3))
    pid = os.getpid()
    folders = {sid: tmp_path / f"emoscope-batch-{pid}-{sid}-x1" for sid in (alive, closed, blip)}
    elsewhere = tmp_path / f"emoscope-batch-{pid + 1}-{closed}-x2"  # another server's session: not ours to judge
    for folder in [*folders.values(), elsewhere]:
        folder.mkdir()
    assert workdir.sweep_closed_sessions(lambda sid: sid == alive, tmp_path) == []  # once inactive: kept
    assert workdir.sweep_closed_sessions(lambda sid: sid in (alive, blip), tmp_path) == [folders[closed]]  # blip is back
    assert folders[alive].exists() and folders[blip].exists() and elsewhere.exists()
    assert workdir.sweep_closed_sessions(lambda sid: sid == alive, tmp_path) == []  # blip gone once: kept again
