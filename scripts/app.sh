#!/usr/bin/env bash
# Set up (idempotent), then start the app. Extra arguments go to `streamlit run`.
# With no model yet (no bundle in EMOSCOPE_MODELS_DIR, default models/), the quick bilingual recipe
# (training/configs/quick.toml, a few minutes) starts training in the background first, and the
# app opens at once on a first-run screen that follows it and turns into Predict when it lands.
# With a bundle there, nothing is trained. The quick run gets one torch thread (unless
# OMP_NUM_THREADS says otherwise): the other core serves the app, and on a busy 2-core machine
# two threads fighting for the cores trained it in 436 s, one in 225 s (docs/BENCHMARKS.md, "First run").
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" .venv/bin/python -m emoscope.app.first_run \
  || echo "[first run] could not start the quick model; the app's Train page can"
exec .venv/bin/streamlit run app.py "$@"
