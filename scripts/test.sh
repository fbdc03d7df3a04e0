#!/usr/bin/env bash
# Set up (idempotent), then run the whole test suite, slow tests with the real packaged
# models and the browser tests included. Extra arguments go to pytest (e.g. -m "not slow"
# for the fast subset).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The browser tests drive Debian's chromium (Playwright's own download does not work on these
# machines). Install it when we can; without it those tests are skipped with a reason.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "[test] installing Debian's chromium for the browser tests"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-color-emoji; } \
    >/dev/null 2>&1 || echo "[test] warning: could not install chromium; the browser tests will be skipped"
fi
# Two cores: one thread per test process keeps small torch ops from fighting over them.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec .venv/bin/python -m pytest "$@"
