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
# The slow tests write real bundles (about 1 GB at once under the temp folder, 0.5 GB more in
# the model cache): say so before they fail half-way with "No space left on device".
tmp=${TMPDIR:-/tmp}
free_mb=$(df -Pm "$tmp" 2>/dev/null | awk 'NR==2 {print $4}')
if [ -n "$free_mb" ] && [ "$free_mb" -lt 2048 ]; then
  echo "[test] warning: only ${free_mb} MB free under $tmp; the slow tests need about 2 GB (set TMPDIR elsewhere, or -m 'not slow')" >&2
fi
# Two cores: one thread per test process keeps small torch ops from fighting over them.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec .venv/bin/python -m pytest "$@"
