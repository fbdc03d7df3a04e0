"""Training runs in a background process, for the app's Train page.

``start_training`` launches ``emoscope train`` (optionally on other data than the recipe's, or
for other epochs) as its own process group. Each run leaves three files in ``<models>/.runs/``:
``<id>.log`` (what the command prints), ``<id>.events.jsonl`` (its progress events,
:mod:`emoscope.progress`) and ``<id>.json`` (the run's status: pid, recipe, state). ``status``
folds the events into where the run stands (stage, stage-1 model, texts embedded, epochs), an
ETA from measured throughput, and, for a failed run, the one-line reason. ``cancel`` stops the
whole process group. An uploaded training file is kept in ``<models>/.runs/data/``
(``save_upload``). Bundles are written atomically, so a cancelled or crashed run never leaves a
half bundle in the picker; a stacked recipe keeps its finished stage-1 models and resumes from
them next time.

One run at a time per models folder, whoever asks: ``start_training`` holds an ``fcntl`` lock on
``<models>/.runs/.start.lock`` from its check that nothing runs until the new run's status file
is written, so two "Start training" presses at once (two sessions, two server processes) start
one run and refuse the other. Each run's id is claimed by creating its log with ``O_CREAT |
O_EXCL`` (a second run in the same second gets ``-2``), so no two runs share an id, a log or a
status file. A run into an output another ``emoscope train`` is writing (the CLI's lock on
``.NAME.lock`` beside it, ``fsutil.lock_output``) is refused before it starts. Status files
and uploads are written through uniquely named temporary files (``fsutil``).
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from emoscope.data import load_dataset
from emoscope.errors import ConfigError, DataError, InputError
from emoscope.fsutil import atomic_file, lock_path, write_text_atomic
from emoscope.progress import describe, eta_seconds, fold, read_events, summary

EPOCH = re.compile(r"\[epoch (\d+)\] loss ([0-9.]+).*?\| (\d+)s")
STAGE = re.compile(r"^\[(stage \d|data|done|eval|early stop)\]?(.*)$")
ERROR = re.compile(r"^emoscope \w+: error: (.*)$")
UPLOAD_SUFFIXES = (".csv", ".tsv", ".txt")
Specs = str | Sequence[str] | None


def runs_dir(models_dir: Path) -> Path:
    return Path(models_dir) / ".runs"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a finished child that nobody waited for is a zombie: not running
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def current(models_dir: Path) -> dict[str, Any] | None:
    """The latest run's status file, or None."""
    folder = runs_dir(models_dir)
    files = sorted(folder.glob("*.json"), key=lambda p: (p.stat().st_mtime, p.name)) if folder.is_dir() else []
    return json.loads(files[-1].read_text(encoding="utf-8")) if files else None


def save_upload(models_dir: Path, filename: str, content: bytes) -> Path:
    """Keep an uploaded labelled file in ``<models>/.runs/data/`` (named by its content's hash and
    its own name) so a run can read it; returns its path."""
    suffix = Path(filename).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        raise InputError(f"{filename}: upload a .csv or .tsv file with a 'text' column and 0/1 label columns")
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(filename).stem)[:60] or "data"
    path = runs_dir(models_dir) / "data" / f"{hashlib.sha256(content).hexdigest()[:12]}-{stem}{suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        with atomic_file(path) as tmp:  # a unique partial name: two sessions uploading one file never share it
            tmp.write_bytes(content)
    return path


def _as_specs(specs: Specs) -> list[str]:
    if specs is None:
        return []
    return [specs] if isinstance(specs, str) else list(specs)


def _check_data(config, overrides: dict[str, list[str] | None]):
    """The recipe with the chosen data in place of its own, each chosen spec read once now so that
    an unknown spec or a bad file is a one-line error here rather than a failed run."""
    for name, specs in overrides.items():
        for spec in specs or []:
            if name == "validation" and spec.startswith("holdout:"):
                continue
            try:
                load_dataset(spec, data_root=config.data.data_root)
            except DataError as exc:
                raise DataError(f"{name} data: {exc}") from exc
    data = {k: (v[0] if len(v) == 1 else tuple(v)) if v else None for k, v in overrides.items()}
    return config.replace(data=dataclasses.replace(config.data, **data))


def _command(recipe: str | Path, output: Path, events: Path, epochs: int | None,
             overrides: dict[str, list[str] | None]) -> list[str]:
    command = [sys.executable, "-m", "emoscope", "train", "--config", str(recipe), "--output", str(output),
               "--overwrite", "--quiet", "--events", str(events)]
    if epochs:
        command += ["--epochs", str(epochs)]
    for name, specs in overrides.items():
        command += [f"--{name}", *specs] if specs else ["--no-eval"]
    return command


def start_training(recipe: str | Path, models_dir: Path, name: str | None = None, epochs: int | None = None, *,
                   train: Specs = None, validation: Specs = None, eval: Specs = None,
                   no_eval: bool = False) -> dict[str, Any]:
    """Start ``emoscope train`` for ``recipe`` into ``models_dir/<name>`` in the background.

    ``train``, ``validation`` and ``eval`` (a spec, a file, or a list of them) replace the recipe's
    data; ``no_eval`` drops its eval set. Each is read once here, so a bad one is an error now."""
    from emoscope.config import load_config  # imports torch (through the losses): only when a run starts

    config = load_config(recipe)  # a bad recipe fails here, in the caller's process, with a clear message
    chosen = (("train", train), ("validation", validation), ("eval", eval))
    overrides: dict[str, list[str] | None] = {k: _as_specs(v) for k, v in chosen if _as_specs(v)}
    if no_eval:
        overrides["eval"] = None
    if overrides:
        config = _check_data(config, overrides)
    name = name or config.name
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise InputError(f"bundle name '{name}' may hold only letters, digits, '.', '_' and '-'")
    with _starting(Path(models_dir)):  # from the check that nothing runs until the new run's status is written
        running = current(models_dir)
        if running and _alive(running["pid"]) and running.get("state") == "running":
            raise InputError(f"a training run ({running['recipe']}) is already running; wait for it or cancel it")
        _output_free(Path(models_dir) / name)
        return _launch(recipe, Path(models_dir), name, epochs, overrides, config)


@contextmanager
def _starting(models_dir: Path) -> Iterator[None]:
    """Hold the models folder's start lock (``fcntl``: across threads and processes; freed if one dies)."""
    folder = runs_dir(models_dir)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / ".start.lock", os.O_CREAT | os.O_RDWR, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _output_free(output: Path) -> None:
    """Refuse (``ConfigError``, one line) an output another ``emoscope train`` is writing now (it
    holds ``fsutil.lock_output``'s lock: tried here without waiting, and let go at once)."""
    fd = os.open(lock_path(output), os.O_CREAT | os.O_RDWR, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ConfigError(f"{output} is being written by another training run; wait for it to finish") from None
    finally:
        os.close(fd)


def claim_run_id(folder: Path, name: str) -> str:
    """A run id nobody else has: its log is created with ``O_CREAT | O_EXCL``, ``-2``, ``-3``… on a clash."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1, 1000):
        run_id = f"{stamp}-{name}" + (f"-{n}" if n > 1 else "")
        try:
            os.close(os.open(folder / f"{run_id}.log", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:
            continue
        return run_id
    raise InputError(f"too many runs of {name} started at {stamp}; try again in a second")


def _launch(recipe: str | Path, models_dir: Path, name: str, epochs: int | None,
            overrides: dict[str, list[str] | None], config) -> dict[str, Any]:
    folder = runs_dir(models_dir)
    folder.mkdir(parents=True, exist_ok=True)
    run_id = claim_run_id(folder, name)
    log, events = folder / f"{run_id}.log", folder / f"{run_id}.events.jsonl"
    command = _command(recipe, models_dir / name, events, epochs, overrides)
    env = {k: v for k, v in os.environ.items() if k != "EMOSCOPE_ADMIN_PASSWORD"}  # the app's secret: not the run's
    with log.open("w", encoding="utf-8") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**env, "PYTHONUNBUFFERED": "1"})
    info = {"id": run_id, "pid": proc.pid, "recipe": str(recipe), "name": name, "log": str(log),
            "events": str(events), "started": time.time(), "state": "running",
            "epochs": epochs or config.training.epochs, "kind": config.kind,
            "encoders": [e.label for e in config.encoders], "data": overrides}
    _write(folder / f"{run_id}.json", info)
    return info


def _write(path: Path, info: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(info))  # a unique partial file: sessions updating one status never collide


def failure_reason(lines: Sequence[str]) -> str | None:
    """A crashed run's one-line reason from its log: the command's error line, else the last line
    of a traceback, else the last line printed."""
    for line in reversed(lines):
        match = ERROR.match(line.strip())
        if match:
            return match.group(1)
    text = [line.strip() for line in lines if line.strip()]
    return text[-1][:300] if text else None


def status(models_dir: Path, info: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The run's ``state`` (running, finished, failed, cancelled) with ``stage`` (one line),
    ``epoch``, ``loss``, ``elapsed_s``, ``eta_s``, ``reason`` (why it failed, one line),
    ``progress`` (the :class:`~emoscope.progress.RunState` of its events) and ``log_tail``."""
    info = info or current(models_dir)
    if info is None:
        return None
    log_text = Path(info["log"]).read_text(encoding="utf-8", errors="replace") if Path(info["log"]).exists() else ""
    lines = log_text.splitlines()
    state = fold(read_events(info["events"])) if info.get("events") else fold([])
    if info["state"] == "running" and not _alive(info["pid"]):
        done = state.done is not None or any(line.startswith("[done]") for line in lines)
        info["state"] = "finished" if done else "failed"
        info["ended"] = time.time()
        _write(runs_dir(models_dir) / f"{info['id']}.json", info)
    stage = describe(state) or next((line for line in reversed(lines) if STAGE.match(line)), "")
    epoch, loss = _last_epoch(state, lines)
    now = time.time()
    elapsed = (info.get("ended") or now) - info["started"]
    eta = eta_seconds(state, now) if info["state"] == "running" else None
    reason = (state.failed or failure_reason(lines) or "the run stopped") if info["state"] == "failed" else None
    return {**info, "stage": stage, "epoch": epoch, "loss": loss, "elapsed_s": elapsed, "eta_s": eta,
            "reason": reason, "progress": state, "log_tail": "\n".join(lines[-40:])}


def _last_epoch(state, lines: Sequence[str]) -> tuple[int | None, float | None]:
    """The last finished epoch's number and training loss: from the events, else from the log."""
    figures = summary(state)
    if figures["epoch"] is not None:
        return figures["epoch"], figures["loss"]
    found = [m for m in (EPOCH.search(line) for line in lines) if m]
    return (int(found[-1].group(1)), float(found[-1].group(2))) if found else (None, None)


def cancel(models_dir: Path) -> bool:
    """Stop the running training (its whole process group); True if one was running."""
    info = current(models_dir)
    if not info or info.get("state") != "running" or not _alive(info["pid"]):
        return False
    try:
        os.killpg(info["pid"], signal.SIGTERM)
    except ProcessLookupError:
        return False
    for _ in range(50):
        if not _alive(info["pid"]):
            break
        time.sleep(0.1)
    else:
        os.killpg(info["pid"], signal.SIGKILL)
    info["state"], info["ended"] = "cancelled", time.time()
    _write(runs_dir(models_dir) / f"{info['id']}.json", info)
    return True
