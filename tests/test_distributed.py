"""Training and batch scoring in several processes under ``accelerate launch`` (CPU, gloo).

Every multi-process run here is a real ``accelerate launch --multi_gpu --num_processes 2`` of the
``emoscope`` command (or its ``emoscope train --processes 2`` shortcut, which builds that
command), in subprocesses, over the tiny encoders and data of ``conftest``, each process on one
thread. On a machine without GPUs that is two CPU processes over gloo (Accelerate's ``--cpu``
flag would start a single process: its multi-CPU launcher is mpirun); the single-process references are the same command without a launcher, also on one
thread. What they show:

* a tiny model trains with DDP in two processes, and its validation scores match a single-process
  run of the same effective batch (the recipe's ``batch_size`` is the global batch: each process
  reads half of every batch) within ``PROB_TOL`` per probability and ``F1_TOL`` macro-F1: the
  two runs add the same gradients in a different order, so they drift by float rounding only;
* one bundle is written, by the main process, and it records the two processes;
* killing one process stops the run: the launcher ends with an error within a bound and
  leaves no bundle (partial or whole) behind;
* a 10,000-row file scored by two processes is the single-process output, byte for byte, and
  the parts are cleaned up; a scoring process killed while it writes its part leaves no output,
  and the next run scores the file whole;
* stage 1 of a stack spread over two processes gives the same fold models (weights
  fingerprints) and, with stage 2 spread too (one encoder per process), the same stacked bundle
  as the serial run; a serial run over the spread run's work folder reuses every model.
"""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import make_rows, tiny_stack_config
from emoscope.cli.train import launch_command
from emoscope.distributed import World
from emoscope.progress import read_events
from emoscope.sharded import parts_folder

# each starts two processes under accelerate launch (10-25 s apiece on 2 idle cores): with the slow
# tests, so the default run stays a few minutes; CI (bash scripts/test.sh) runs them
TWO_PROCESSES = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
PROB_TOL = 1e-4  # measured: 1e-6 (the bundle's 6-decimal rounding), macro-F1 equal
F1_TOL = 0.01
STOP_WITHIN_S = 120


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return {**env, "OMP_NUM_THREADS": "1", "EMOSCOPE_DIST_TIMEOUT_S": "120",
            "EMOSCOPE_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(args: list[str], tmp_path: Path, processes: int = 1, timeout: int = 600) -> subprocess.CompletedProcess:
    """``emoscope ARGS`` in one process, or under ``accelerate launch`` in ``processes``."""
    command = ([sys.executable, "-m", "emoscope.cli", *args] if processes == 1 else
               launch_command(processes, args, port=_free_port()))
    done = subprocess.run(command, cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def _without_dropout(encoder: Path, folder: Path) -> Path:
    """A copy of a tiny encoder with BERT's own dropout off."""
    copy = folder / "bert-no-dropout"
    shutil.copytree(encoder, copy)
    config = json.loads((copy / "config.json").read_text(encoding="utf-8"))
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (copy / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return copy


def _recipe(folder: Path, tiny_encoder: Path, tiny_data: dict[str, Path], epochs: int, batch_size: int = 16) -> Path:
    """A single-encoder recipe over the tiny encoder without any dropout: nothing random differs
    between one process and two, so what differs is float rounding."""
    tiny_encoder = _without_dropout(tiny_encoder, folder)
    path = folder / f"tiny-{epochs}.toml"
    path.write_text(f"""
name = "tiny-ddp"
[data]
train = "{tiny_data['train']}"
validation = "{tiny_data['dev']}"
[[encoders]]
source = "{tiny_encoder}"
pooling = "mean"
max_length = 32
dropout = 0.0
[training]
lr = 3e-3
head_lr = 1e-2
batch_size = {batch_size}
epochs = {epochs}
patience = {epochs}
warmup_ratio = 0.0
seed = 7
""", encoding="utf-8")
    return path


def _validation_probs(bundle: Path) -> np.ndarray:
    """The validation probabilities a bundle stored (rounded to 6 decimals)."""
    raw = json.loads((bundle / "validation.json").read_text(encoding="utf-8"))
    return np.asarray(raw["probs"], dtype=np.float64)


def test_a_batch_is_shared_out_so_the_gradient_is_the_whole_batch_s():
    world0, world1 = World(0, 2), World(1, 2)
    idx = np.arange(7)
    (a, sa), (b, sb) = world0.shard_batch(idx), world1.shard_batch(idx)
    assert sorted([*a, *b]) == list(idx)
    # DDP averages the processes' (scaled) mean losses' gradients: that is the whole batch's mean
    losses = np.random.default_rng(0).random(7)
    ddp_mean = (sa * losses[a].mean() + sb * losses[b].mean()) / 2
    assert ddp_mean == pytest.approx(losses.mean())
    lone, scale = world1.shard_batch(np.arange(1))
    assert len(lone) == 1 and scale == 0.0
    assert World().shard_batch(idx) == (idx, 1.0)


def test_a_bad_collective_timeout_is_one_clear_error(monkeypatch):
    from emoscope.distributed import timeout_s
    from emoscope.errors import ConfigError

    monkeypatch.setenv("EMOSCOPE_DIST_TIMEOUT_S", "soon")
    with pytest.raises(ConfigError, match="EMOSCOPE_DIST_TIMEOUT_S must be a positive number of seconds"):
        timeout_s()
    monkeypatch.setenv("EMOSCOPE_DIST_TIMEOUT_S", "90")
    assert timeout_s() == 90.0


def test_launch_command_drops_the_processes_option():
    argv = ["train", "--config", "r.toml", "--processes", "2", "--epochs", "3", "--processes=4"]
    command = launch_command(2, argv, port=1234)
    assert command[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert "--multi_gpu" in command and "--cpu" not in command  # --cpu would start one process
    assert command[command.index("-m", 3):] == ["-m", "emoscope.cli", "train", "--config", "r.toml", "--epochs", "3"]


def test_processes_and_ablate_are_refused_under_a_launcher(tmp_path, monkeypatch, capsys):
    from emoscope.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["train", "--config", str(tmp_path / "r.toml"), "--processes", "2"]) == 2
    assert "under accelerate launch leave it out" in capsys.readouterr().err
    assert main(["ablate", "--config", str(tmp_path / "r.toml")]) == 2
    assert "emoscope ablate runs in one process" in capsys.readouterr().err


@TWO_PROCESSES
def test_two_processes_train_one_bundle_that_matches_one_process(tmp_path, tiny_encoder, tiny_data):
    # One process, batch 16, against two processes reading 8 of each batch of 16.
    recipe = _recipe(tmp_path, tiny_encoder, tiny_data, epochs=8)
    _run(["train", "--config", str(recipe), "--output", str(tmp_path / "one" / "b"), "--quiet"], tmp_path)
    out = tmp_path / "two"
    done = _run(["train", "--config", str(recipe), "--output", str(out / "b"), "--quiet", "--processes", "2"],
                tmp_path, processes=1)
    assert sorted(os.listdir(out)) == [".b.lock", "b"], "one bundle (and its lock file), no partial or second one"
    one = json.loads((tmp_path / "one" / "b" / "manifest.json").read_text(encoding="utf-8"))
    two = json.loads((out / "b" / "manifest.json").read_text(encoding="utf-8"))
    assert two["training"]["processes"] == 2 and "processes" not in one["training"]
    assert done.stdout.count("[done]") == 1, "only the main process logs"
    p1, p2 = _validation_probs(tmp_path / "one" / "b"), _validation_probs(out / "b")
    assert np.abs(p1 - p2).max() < PROB_TOL
    f1 = one["metrics"]["validation"]["macro_f1"], two["metrics"]["validation"]["macro_f1"]
    assert abs(f1[0] - f1[1]) < F1_TOL, f1
    assert f1[0] > 0.5, "the tiny model learned something"


def _workers(launcher: subprocess.Popen):
    import psutil

    found = {}
    for proc in psutil.Process(launcher.pid).children(recursive=True):
        try:
            rank = proc.environ().get("RANK")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if rank is not None and "emoscope.cli" in proc.cmdline():
            found[rank] = proc
    return found


@TWO_PROCESSES
@pytest.mark.parametrize("victim", ["1", "0"])
def test_killing_one_process_stops_the_run_and_leaves_no_bundle(tmp_path, tiny_encoder, tiny_data, victim):
    recipe = _recipe(tmp_path, tiny_encoder, tiny_data, epochs=500)
    out, events = tmp_path / "out", tmp_path / "events.jsonl"
    command = launch_command(2, ["train", "--config", str(recipe), "--output", str(out / "b"), "--quiet",
                                 "--events", str(events)], port=_free_port())
    launcher = subprocess.Popen(command, cwd=ROOT, env=_env(tmp_path), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while not any(e.get("event") == "epoch" for e in read_events(events)):
            assert launcher.poll() is None and time.monotonic() < deadline, launcher.stdout.read()[-3000:]
            time.sleep(0.5)
        workers = _workers(launcher)
        assert set(workers) == {"0", "1"}
        workers[victim].send_signal(signal.SIGKILL)
        rc = launcher.wait(timeout=STOP_WITHIN_S)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert rc != 0
    left = sorted(p.name for p in out.iterdir()) if out.exists() else []
    assert left in ([], [".b.lock"]), f"no bundle, partial or whole: {left}"


def _big_file(path: Path, n: int) -> Path:
    """``n`` rows: tiny-data texts, Arabic and English, with commas, quotes, line breaks and empty texts."""
    rng = random.Random(5)
    texts = [r["text"] for r in make_rows(500, seed=9)]
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text", "note"])
        for i in range(n):
            text = rng.choice(texts)
            if i % 97 == 0:
                text = ""
            elif i % 31 == 0:
                text = f'"{text}", said\nsomeone'
            writer.writerow([i, text, rng.choice(["", "a,b", "ß"])])
    return path


@TWO_PROCESSES
def test_two_processes_score_a_file_exactly_as_one(tmp_path, tiny_bundle):
    source = _big_file(tmp_path / "big.csv", 10_000)
    args = ["predict", "--model", str(tiny_bundle), "--input", str(source), "--chunk-size", "300", "--quiet"]
    _run([*args, "--output", str(tmp_path / "one.csv")], tmp_path)
    done = _run([*args, "--output", str(tmp_path / "two.csv")], tmp_path, processes=2)
    assert (tmp_path / "two.csv").read_bytes() == (tmp_path / "one.csv").read_bytes()
    assert done.stdout.count("of 10000 rows predicted") == 1
    with (tmp_path / "two.csv").open(encoding="utf-8", newline="") as f:
        ids = [row["id"] for row in csv.DictReader(f)]
    assert ids == [str(i) for i in range(10_000)], "every row once, in input order"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [], "parts removed"


@TWO_PROCESSES
def test_a_killed_scoring_process_leaves_no_output(tmp_path, tiny_bundle):
    source = _big_file(tmp_path / "big.csv", 20_000)
    output = tmp_path / "out.csv"
    args = ["predict", "--model", str(tiny_bundle), "--input", str(source), "--chunk-size", "100", "--quiet"]
    launcher = subprocess.Popen(launch_command(2, [*args, "--output", str(output)], port=_free_port()), cwd=ROOT,
                                env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    parts = parts_folder(output)
    try:
        deadline = time.monotonic() + 300
        while not (parts.exists() and any("part-1" in p.name for p in parts.iterdir())):
            assert launcher.poll() is None and time.monotonic() < deadline, launcher.stdout.read()[-3000:]
            time.sleep(0.2)
        _workers(launcher)["1"].send_signal(signal.SIGKILL)  # while it writes its part
        rc = launcher.wait(timeout=STOP_WITHIN_S)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert rc != 0 and not output.exists(), "no output, not even a partial one"
    # Whatever the killed run left, the next run into that output (a smaller file, to keep the test
    # short) writes it whole and leaves nothing beside it.
    small = _big_file(tmp_path / "small.csv", 2_000)
    _run([*args[:4], str(small), *args[5:], "--output", str(output)], tmp_path, processes=2)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    with output.open(encoding="utf-8", newline="") as f:
        assert sum(1 for _ in csv.DictReader(f)) == 2_000


@TWO_PROCESSES
def test_stage1_spread_over_two_processes_gives_the_serial_models(tmp_path, tiny_encoder, tiny_encoder_b, tiny_data):
    from emoscope.toml_writer import recipe_toml

    config = tiny_stack_config([(tiny_encoder, True), (tiny_encoder_b, True)], tiny_data, folds=2, epochs=3)
    recipe = tmp_path / "stack.toml"
    recipe.write_text(recipe_toml(config.to_dict()), encoding="utf-8")
    runs = {}
    for name, processes in (("serial", 1), ("spread", 2)):
        work = tmp_path / name
        _run(["train", "--config", str(recipe), "--output", str(work / "bundle"), "--work-dir", str(work / "stage1"),
              "--quiet", "--no-eval"], tmp_path / name, processes=processes)
        runs[name] = work

    def fingerprints(work: Path) -> dict[str, str]:
        return {f"{enc.name.split('-')[0]}/{role.name}": json.loads((role / "info.json").read_text())["fingerprint"]
                for enc in (work / "stage1" / "stage1").iterdir() for role in enc.iterdir()}
    serial, spread = fingerprints(runs["serial"]), fingerprints(runs["spread"])
    assert len(serial) == 6 and serial == spread  # 2 encoders x (full + 2 folds)
    np.testing.assert_array_equal(_validation_probs(runs["serial"] / "bundle"), _validation_probs(runs["spread"] / "bundle"))
    # The spread run's work folder is an ordinary one: a serial run (a resumed one, say) reuses every model.
    again = _run(["train", "--config", str(recipe), "--output", str(tmp_path / "again"), "--work-dir",
                  str(runs["spread"] / "stage1"), "--quiet", "--no-eval"], tmp_path / "spread")
    assert again.stdout.count("reusing the finished model") == 6 and "fine-tuning on" not in again.stdout
