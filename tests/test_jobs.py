"""Background training runs (``emoscope.jobs``) without training anything: the status of a run
read from its events and log, the one-line reason of a failure, uploads, and data checked before
a process starts. (The runs themselves are trained in tests/test_app.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from emoscope import jobs
from emoscope.errors import DataError, InputError


def _fake_run(models, events, log_lines, pid):
    folder = jobs.runs_dir(models)
    folder.mkdir(parents=True)
    info = {"id": "r1", "pid": pid, "recipe": "training/configs/x.toml", "name": "x", "log": str(folder / "r1.log"),
            "events": str(folder / "r1.events.jsonl"), "started": time.time() - 60, "state": "running", "epochs": 3,
            "kind": "encoder-classifier", "encoders": ["e"]}
    (folder / "r1.log").write_text("\n".join(log_lines) + "\n", encoding="utf-8")
    (folder / "r1.events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    (folder / "r1.json").write_text(json.dumps(info), encoding="utf-8")


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


PLAN = {"event": "plan", "t": 0.0, "kind": "encoder-classifier", "name": "x", "labels": ["a"], "epochs": 3,
        "texts": {"train": 100, "validation": 20, "eval": 0}, "stages": ["fine-tune"],
        "models": [{"encoder": "e", "role": "full", "texts": 100}]}


def test_a_running_job_reports_its_stage_epoch_and_an_eta_from_its_events(tmp_path):
    now = time.time()
    events = [{**PLAN, "t": now - 50}, {"event": "stage", "t": now - 50, "name": "fine-tune"},
              {"event": "model", "t": now - 50, "encoder": "e", "role": "full", "index": 1, "of": 1, "texts": 100},
              {"event": "epoch", "t": now - 20, "stage": "fine-tune", "epoch": 1, "epochs": 3, "train_loss": 0.5,
               "val_macro_f1": 0.4, "seconds": 30.0, "texts": 100, "val_f1": {"a": 0.4}}]
    _fake_run(tmp_path, events, ["[data] train 100"], os.getpid())  # this process: alive
    state = jobs.status(tmp_path)
    assert state["state"] == "running" and state["epoch"] == 1 and state["loss"] == 0.5
    assert state["stage"] == "fine-tuning e · epoch 1/3"
    assert state["eta_s"] == pytest.approx(2 * 30.0 - 20.0, abs=2.0)  # two epochs of 30 s, 20 s already gone
    assert state["reason"] is None and state["progress"].epochs[0]["val_f1"] == {"a": 0.4}


def test_a_dead_job_with_a_failed_event_is_failed_with_that_reason(tmp_path):
    events = [PLAN, {"event": "failed", "t": 1.0, "reason": "train data: dataset spec 'x' is bad"}]
    _fake_run(tmp_path, events, ["[data] …", "emoscope train: error: train data: dataset spec 'x' is bad"], _dead_pid())
    state = jobs.status(tmp_path)
    assert state["state"] == "failed" and state["reason"] == "train data: dataset spec 'x' is bad"
    assert state["eta_s"] is None and json.loads((jobs.runs_dir(tmp_path) / "r1.json").read_text())["state"] == "failed"


def test_a_crash_without_a_failed_event_takes_its_reason_from_the_log(tmp_path):
    _fake_run(tmp_path, [PLAN], ["[data] …", "Traceback (most recent call last):", '  File "x.py", line 1',
                                 "RuntimeError: CUDA out of memory"], _dead_pid())
    assert jobs.status(tmp_path)["reason"] == "RuntimeError: CUDA out of memory"
    assert jobs.failure_reason(["emoscope train: error: bad", "later noise"]) == "bad"
    assert jobs.failure_reason([]) is None


def test_a_finished_job_without_events_still_reads_from_its_log(tmp_path):
    """Runs started before progress events existed keep their status."""
    _fake_run(tmp_path, [], ["[epoch 1] loss 0.6000 | val macro-F1 0.5 micro-F1 0.5 | 3s | per-class loss a=0.6",
                             "[done] models/x in 5s"], _dead_pid())
    state = jobs.status(tmp_path)
    assert state["state"] == "finished" and state["epoch"] == 1 and state["loss"] == 0.6
    assert state["stage"].startswith("[done]")


def test_uploads_are_kept_by_content_and_name_and_only_csv_or_tsv(tmp_path):
    path = jobs.save_upload(tmp_path, "my data (1).csv", b"text,joy\nhi,1\n")
    assert path.parent == jobs.runs_dir(tmp_path) / "data" and path.name.endswith("-my_data_1_.csv")
    assert jobs.save_upload(tmp_path, "my data (1).csv", b"text,joy\nhi,1\n") == path
    with pytest.raises(InputError, match="upload a .csv or .tsv"):
        jobs.save_upload(tmp_path, "x.xlsx", b"")


def test_bad_chosen_data_is_a_one_line_error_before_any_process_starts(tmp_path, tiny_encoder, tiny_data):
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'name = "r"\n[data]\ntrain = "{tiny_data["train"]}"\n[[encoders]]\nsource = "{tiny_encoder}"\n',
                      encoding="utf-8")
    models = tmp_path / "models"
    with pytest.raises(DataError, match=r"^train data: dataset spec 'nosuch:xx:train': unknown corpus"):
        jobs.start_training(recipe, models, train="nosuch:xx:train")
    bad = tmp_path / "bad.csv"
    bad.write_text("sentence,joy\nhello,1\n", encoding="utf-8")
    with pytest.raises(DataError, match="^eval data: "):
        jobs.start_training(recipe, models, eval=[str(bad)])
    assert jobs.current(models) is None


# --- runs exclusive per models folder and output, with unique ids (issue 16, item 4) -------------

def test_run_ids_are_unique_however_many_runs_claim_one_at_once(tmp_path):
    import threading

    barrier, ids = threading.Barrier(16), []

    def claim():
        barrier.wait()
        ids.append(jobs.claim_run_id(tmp_path, "x"))

    threads = [threading.Thread(target=claim) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 16  # all in the same second or two, none shared
    assert sorted(p.stem for p in tmp_path.glob("*.log")) == sorted(ids)


def _recipe(tmp_path, tiny_encoder, tiny_data, epochs=200):
    from test_app import _tiny_recipe

    return _tiny_recipe(tmp_path, tiny_encoder, tiny_data, epochs)


def test_two_start_presses_at_once_start_one_run_with_its_own_status(tmp_path, tiny_encoder, tiny_data):
    import threading

    models, recipe = tmp_path / "models", _recipe(tmp_path, tiny_encoder, tiny_data)
    barrier, started, refused = threading.Barrier(2), [], []

    def press():
        barrier.wait()
        try:
            started.append(jobs.start_training(recipe, models))
        except InputError as exc:
            refused.append(str(exc))

    threads = [threading.Thread(target=press) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert len(started) == 1 and len(refused) == 1 and "already running" in refused[0]
        assert [p.stem for p in jobs.runs_dir(models).glob("*.json")] == [started[0]["id"]]
    finally:
        jobs.cancel(models)
    assert jobs.status(models)["state"] == "cancelled"


def test_a_run_into_an_output_another_training_is_writing_is_refused_before_it_starts(tmp_path, tiny_encoder,
                                                                                       tiny_data):
    from emoscope.errors import ConfigError

    models = tmp_path / "models"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from emoscope.fsutil import lock_output; "
                               f"lock_output({str(models / 'tiny-bg')!r}); print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"  # emoscope train --output models/tiny-bg, say
        with pytest.raises(ConfigError, match="being written by another training run"):
            jobs.start_training(_recipe(tmp_path, tiny_encoder, tiny_data), models)
        assert jobs.current(models) is None  # no process, no status file
    finally:
        holder.kill()
        holder.wait()


def test_many_sessions_reading_a_finished_runs_status_at_once_never_collide(tmp_path):
    import threading

    _fake_run(tmp_path, [PLAN, {"event": "done", "t": 9.0}], ["[done] ok"], _dead_pid())
    barrier, errors = threading.Barrier(12), []

    def read():
        barrier.wait()
        try:
            assert jobs.status(tmp_path)["state"] == "finished"
        except Exception as exc:  # noqa: BLE001 - any failure of any thread fails the test
            errors.append(repr(exc))

    threads = [threading.Thread(target=read) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert json.loads((jobs.runs_dir(tmp_path) / "r1.json").read_text())["state"] == "finished"
    assert [p.name for p in jobs.runs_dir(tmp_path).iterdir() if "partial" in p.name] == []
