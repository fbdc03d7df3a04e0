"""Training runs in a background process, for the app's Train page.

``start_training`` launches ``emoscope train`` as its own process group, writing its log to
``<models>/.runs/<id>.log`` and a small JSON status file beside it; ``status`` reads both
(stage, epoch, last loss, elapsed time, a rough ETA from the epochs seen so far); ``cancel``
stops the whole process group. Bundles are written atomically, so a cancelled or crashed run
never leaves a half bundle in the picker; a stacked recipe keeps its finished stage-1 models
and resumes from them next time. One run at a time per models folder.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from emoscope.errors import InputError

EPOCH = re.compile(r"\[epoch (\d+)\] loss ([0-9.]+).*?\| (\d+)s")
STAGE = re.compile(r"^\[(stage \d|data|done|eval|early stop)\]?(.*)$")


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
    files = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
    return json.loads(files[-1].read_text(encoding="utf-8")) if files else None


def start_training(recipe: str | Path, models_dir: Path, name: str | None = None, epochs: int | None = None) -> dict[str, Any]:
    """Start ``emoscope train`` for ``recipe`` into ``models_dir/<name>`` in the background."""
    from emoscope.config import load_config  # imports torch (through the losses): only when a run starts

    config = load_config(recipe)  # a bad recipe fails here, in the caller's process, with a clear message
    running = current(models_dir)
    if running and _alive(running["pid"]) and running.get("state") == "running":
        raise InputError(f"a training run ({running['recipe']}) is already running; wait for it or cancel it")
    name = name or config.name
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise InputError(f"bundle name '{name}' may hold only letters, digits, '.', '_' and '-'")
    folder = runs_dir(models_dir)
    folder.mkdir(parents=True, exist_ok=True)
    run_id = time.strftime("%Y%m%d-%H%M%S") + f"-{name}"
    log = folder / f"{run_id}.log"
    command = [sys.executable, "-m", "emoscope.cli", "train", "--config", str(recipe), "--output",
               str(Path(models_dir) / name), "--overwrite", "--quiet"]
    if epochs:
        command += ["--epochs", str(epochs)]
    with log.open("w", encoding="utf-8") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    info = {"id": run_id, "pid": proc.pid, "recipe": str(recipe), "name": name, "log": str(log),
            "started": time.time(), "state": "running", "epochs": config.training.epochs,
            "kind": config.kind, "encoders": [e.label for e in config.encoders]}
    _write(folder / f"{run_id}.json", info)
    return info


def _write(path: Path, info: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info), encoding="utf-8")
    tmp.replace(path)


def status(models_dir: Path, info: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The run's state (running, finished, failed, cancelled), stage, epoch, loss, elapsed, ETA and log tail."""
    info = info or current(models_dir)
    if info is None:
        return None
    log_text = Path(info["log"]).read_text(encoding="utf-8", errors="replace") if Path(info["log"]).exists() else ""
    lines = log_text.splitlines()
    if info["state"] == "running" and not _alive(info["pid"]):
        info["state"] = "finished" if any(line.startswith("[done]") for line in lines) else "failed"
        info["ended"] = time.time()
        _write(runs_dir(models_dir) / f"{info['id']}.json", info)
    stage = next((line for line in reversed(lines) if STAGE.match(line)), "")
    epochs = [EPOCH.search(line) for line in lines]
    epochs = [m for m in epochs if m]
    elapsed = (info.get("ended") or time.time()) - info["started"]
    eta = None
    if info["state"] == "running" and epochs and info.get("kind") == "encoder-classifier":
        per_epoch = sum(int(m.group(3)) for m in epochs) / len(epochs)
        eta = max(0.0, per_epoch * (info["epochs"] - int(epochs[-1].group(1))))
    return {**info, "stage": stage, "epoch": int(epochs[-1].group(1)) if epochs else None,
            "loss": float(epochs[-1].group(2)) if epochs else None, "elapsed_s": elapsed, "eta_s": eta,
            "log_tail": "\n".join(lines[-40:])}


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
