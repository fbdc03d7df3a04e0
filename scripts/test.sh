#!/usr/bin/env bash
# Set up (idempotent), then run the whole test suite, slow tests with the real packaged
# models included. Extra arguments go to pytest (e.g. -m "not slow" for the fast subset).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
