"""First run end to end: a fresh clone's ``bash scripts/app.sh`` until Predict answers an Arabic and
an English sentence in headless Chromium; then the same command again, with the bundle there.

    .venv/bin/python benchmarks/first_run.py --output benchmarks/results/first-run.json \\
        --screenshot docs/img/first-run.png

1. ``git clone`` of this checkout's committed HEAD into a temporary folder, with ``shared`` (the
   datasets) linked beside it as ``../shared``, an empty ``EMOSCOPE_CACHE_DIR``, no ``models/``
   and none of the ``EMOSCOPE_*`` or ``OMP_NUM_THREADS`` variables: what a new user has. pip's
   wheel cache and ``PIP_FIND_LINKS`` are the machine's, so set-up installs from local wheels.
2. ``bash scripts/app.sh --server.headless true --server.port N --server.address 127.0.0.1``; each
   line it prints is timestamped. Phases: **set-up** (start → the ``[first run]`` line, printed
   once ``scripts/setup.sh`` is done), **app up** (→ the health endpoint answers), **training**
   (the ``[first run]`` line → the bundle's manifest appears in ``models/``), **first answer**
   (→ the page, opened in Chromium as soon as the server answered and never reloaded, has turned
   into Predict and shown the labels of an Arabic and then an English sentence).
3. Stops the app and runs the same command again: seconds to the health endpoint and to the
   Predict page showing the model, and whether any training run was started (none should be).

Prints the CPU model and the load average before and after (the machine may be shared).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from browser import Browser, free_port  # noqa: E402  (tests/ holds the Chromium driver)

SENTENCES = {"ar": "الحمد لله نجحت في الامتحان، أنا سعيد جداً اليوم", "en": "I can't believe they cancelled my flight again, this is outrageous!"}
PREDICTED = re.compile(r"Predicted\s*\n(.*?)\n", re.S)


class Launch:
    """``bash scripts/app.sh`` in ``checkout`` in its own process group, its output timestamped."""

    def __init__(self, checkout: Path, env: dict[str, str], port: int):
        self.started = time.perf_counter()
        self.port = port
        self.lines: list[tuple[float, str]] = []
        self.proc = subprocess.Popen(["bash", "scripts/app.sh", "--server.headless", "true", "--server.port", str(port),
                                      "--server.address", "127.0.0.1"], cwd=checkout, env=env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append((time.perf_counter() - self.started, line.rstrip()))

    def at(self, prefix: str) -> float | None:
        """Seconds from the start to the first output line starting with ``prefix``."""
        return next((t for t, line in self.lines if line.startswith(prefix)), None)

    def wait_health(self, seconds: float) -> float:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("scripts/app.sh exited:\n" + "\n".join(line for _, line in self.lines[-30:]))
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/_stcore/health", timeout=2).read()
                return time.perf_counter() - self.started
            except OSError:
                time.sleep(0.25)
        raise TimeoutError(f"the app did not answer within {seconds:.0f}s")

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)


def landed(models: Path) -> list[Path]:
    """The bundles in ``models`` (a bundle being written is a hidden sibling until it is complete)."""
    return [p for p in models.iterdir() if not p.name.startswith(".") and (p / "manifest.json").exists()] \
        if models.is_dir() else []


def fresh_clone(folder: Path) -> Path:
    checkout = folder / "main"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(checkout)], check=True)
    (folder / "shared").symlink_to((ROOT.parent / "shared").resolve())
    return checkout


def user_env(cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("EMOSCOPE_") and k not in ("OMP_NUM_THREADS", "VIRTUAL_ENV", "PYTHONPATH")}
    return {**env, "EMOSCOPE_CACHE_DIR": str(cache)}


def ask(page: Browser, text: str) -> str:
    """Type ``text`` into Predict and return the labels it shows for it."""
    page.type_into("textarea", text)
    page.wait(f"document.querySelector('.emoscope-text') && "
              f"document.querySelector('.emoscope-text').innerText.trim() === {json.dumps(text)}", 180, "the echoed text")
    page.wait_text("Predicted", 60)
    page.wait("!document.querySelector('[data-testid=\"stStatusWidget\"]')", 60, "the run to finish")
    time.sleep(1.0)  # the elements of the finished run are all drawn
    found = PREDICTED.search(page.js("document.body.innerText"))
    return found.group(1).strip() if found else "?"


def first_start(checkout: Path, env: dict[str, str], screenshot: Path | None, limit: float) -> dict:
    """Phase times of the first ``scripts/app.sh``, from a fresh clone."""
    launch = Launch(checkout, env, free_port())
    models = checkout / "models"
    try:
        app_up = launch.wait_health(limit)
        page = Browser(f"http://127.0.0.1:{launch.port}")
        try:
            page.wait_text("Getting EmoScope ready", 120)
            page.js("window.__same_page = 1")
            if screenshot is not None:  # the screen as a new user mostly sees it: well into stage 2
                page.wait_text("Embedding the texts", limit)
                time.sleep(90)
                page.screenshot(screenshot)
            bundle_at = None
            deadline = time.perf_counter() + limit
            while bundle_at is None and time.perf_counter() < deadline:
                bundle_at = time.perf_counter() - launch.started if landed(models) else None
                time.sleep(0.5)
            page.wait_text("Predict emotions", 120)
            page.wait_text("Model: ", 180)
            labels = {lang: ask(page, text) for lang, text in SENTENCES.items()}
            answered = time.perf_counter() - launch.started
            reloaded = not page.js("window.__same_page === 1")
        finally:
            page.close()
    finally:
        launch.stop()
    setup_done = launch.at("[first run]")
    return {"setup_s": setup_done, "app_up_s": app_up, "bundle_s": bundle_at, "answered_s": answered,
            "training_s": bundle_at - setup_done, "first_answer_s": answered - bundle_at, "labels": labels,
            "page_reloaded": reloaded, "first_run_line": next((l for _, l in launch.lines if l.startswith("[first run]")), "")}


def second_start(checkout: Path, env: dict[str, str]) -> dict:
    """The same command with the bundle there: time to the app and to Predict with the model."""
    runs = sorted((checkout / "models" / ".runs").glob("*.json"))
    launch = Launch(checkout, env, free_port())
    try:
        app_up = launch.wait_health(300)
        page = Browser(f"http://127.0.0.1:{launch.port}")
        try:
            page.wait_text("Model: ", 300)
            predict_ready = time.perf_counter() - launch.started
        finally:
            page.close()
    finally:
        launch.stop()
    return {"app_up_s": app_up, "predict_ready_s": predict_ready,
            "runs_started": len(sorted((checkout / "models" / ".runs").glob("*.json"))) - len(runs),
            "first_run_line": next((l for _, l in launch.lines if l.startswith("[first run]")), None)}


def cpu_model() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    name = re.search(r"Model name:\s*(.+)", out)
    return f"{name.group(1).strip() if name else '?'}, {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", help="write the figures here as JSON")
    parser.add_argument("--screenshot", type=Path, help="save the first-run screen (mid-training) here")
    parser.add_argument("--limit", type=float, default=1200.0, help="give up on a phase after this many seconds")
    parser.add_argument("--keep", action="store_true", help="keep the temporary clone")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="emoscope-first-run-"))
    result = {"cpu": cpu_model(), "load_before": os.getloadavg(), "commit": subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()}
    try:
        checkout = fresh_clone(folder)
        env = user_env(folder / "cache")
        result["first"] = first_start(checkout, env, args.screenshot.resolve() if args.screenshot else None, args.limit)
        result["second"] = second_start(checkout, env)
        manifest = json.loads((landed(checkout / "models")[0] / "manifest.json").read_text(encoding="utf-8"))
        result["bundle"] = {"name": manifest.get("name"), "training": manifest.get("training"),
                            "validation_macro_f1": manifest.get("metrics", {}).get("validation", {}).get("macro_f1"),
                            "eval_macro_f1": manifest.get("metrics", {}).get("eval", {}).get("macro_f1")}
    finally:
        result["load_after"] = os.getloadavg()
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    report(result)
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def report(result: dict) -> None:
    first, second = result["first"], result["second"]
    print(f"CPU: {result['cpu']}; load average before {result['load_before'][0]:.2f}, after {result['load_after'][0]:.2f}")
    print(f"first run : set-up {first['setup_s']:.0f} s · app up at {first['app_up_s']:.0f} s · training "
          f"{first['training_s']:.0f} s (bundle at {first['bundle_s']:.0f} s) · first answers "
          f"{first['first_answer_s']:.0f} s later · total {first['answered_s']:.0f} s "
          f"({first['answered_s'] / 60:.1f} min); page reloaded: {first['page_reloaded']}")
    print(f"            labels: {first['labels']}")
    print(f"second run: app up at {second['app_up_s']:.1f} s · Predict with the model at {second['predict_ready_s']:.1f} s"
          f" · training runs started: {second['runs_started']}")


if __name__ == "__main__":
    main()
