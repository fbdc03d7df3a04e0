"""scripts/setup.sh runs one at a time per folder: two setups started together (the app and the tests
on a fresh clone) must not both build the same .venv. A fake interpreter stands in for python3 and pip
(what is tested is the script's locking, not the packages it installs)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FAKE_PYTHON = """#!/usr/bin/env bash
# `fake -m venv DIR` makes DIR/bin/{python,emoscope}; every call logs its start and end, 0.5 s apart
log={log}
echo "start $$" >> "$log"; sleep 0.5
if [ "$1 $2" = "-m venv" ]; then
  mkdir -p "$3/bin"; cp "$0" "$3/bin/python"; cp "$0" "$3/bin/emoscope"
fi
echo "end $$" >> "$log"
"""


@pytest.mark.skipif(shutil.which("flock") is None, reason="no flock on this machine (util-linux)")
def test_two_setups_started_together_take_turns(tmp_path: Path):
    repo = tmp_path / "clone"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "setup.sh", repo / "scripts" / "setup.sh")
    for name in ("requirements.txt", "requirements-models.txt", "pyproject.toml"):
        (repo / name).write_text("# test\n")
    log = tmp_path / "calls.log"
    fake = tmp_path / "python3"
    fake.write_text(FAKE_PYTHON.replace("{log}", str(log)))
    fake.chmod(0o755)
    env = {**os.environ, "PYTHON": str(fake)}
    runs = [subprocess.Popen(["bash", "scripts/setup.sh"], cwd=repo, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(2)]
    outputs = [run.communicate(timeout=120)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    calls = log.read_text().split("\n")[:-1]
    # never two calls at once: every start is followed by its own end
    for started, ended in zip(calls[::2], calls[1::2]):
        assert started.startswith("start ") and ended == "end " + started.split()[1], calls
    assert sum(line.startswith("start") for line in calls) >= 6  # venv, pip x4 and prepare, by whichever went first
    assert sum("creating .venv" in o for o in outputs) == 1, outputs  # the venv was made once
    assert any("another setup is running" in o for o in outputs), outputs
    assert (repo / ".venv" / ".emoscope-installed").is_file()
