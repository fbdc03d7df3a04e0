#!/usr/bin/env bash
# LIME (1,000 samples) and IG (all labels, 50 steps) on the 30-word Arabic text of
# explain_speed.py, default precision, two torch threads, one process per run, alternating
# between two checkouts of the project so that both see the same machine noise:
#
#   git worktree add /tmp/before <rev>
#   bash benchmarks/explain_ab.sh /tmp/before . 4      # 4 alternations: before, after, before, …
#
# Each line: which checkout ran, then the seconds of each method (after one warm-up on a short text).
set -euo pipefail
export EMOSCOPE_DATA_ROOT=${EMOSCOPE_DATA_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)/shared/datasets}
a=$(cd "$1" && pwd); b=$(cd "$2" && pwd); n=${3:-4}
python=$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/python
model=$(cd "$(dirname "$0")/.." && pwd)/models/default
run() {
  (cd "$1" && "$python" - "$model" <<'PY'
import sys, time, torch
sys.path.insert(0, "benchmarks"); sys.path.insert(0, ".")
torch.set_num_threads(2)
import emoscope
from explain_speed import thirty_words
from emoscope.explain import ExplainModel, explain
from emoscope.predict import Predictor
text = thirty_words("semeval2018:ar:dev")
m = ExplainModel(Predictor(sys.argv[1], device="cpu", verify=False))
out = []
for method, params in (("lime", {"samples": 1000, "batch_size": 64}), ("ig", {"n_steps": 50})):
    explain(m, "a short warm up text", method, None, params)
    t = time.perf_counter(); explain(m, text, method, None, params); out.append(f"{method} {time.perf_counter() - t:.1f} s")
print(emoscope.__file__.rsplit("/emoscope/", 1)[0], "|", " | ".join(out), flush=True)
PY
  ) 2>&1 | grep -v '^USDT' | tail -1
}
for _ in $(seq "$n"); do run "$a"; run "$b"; done
