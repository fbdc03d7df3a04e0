"""Several users at once: N browser sessions predict concurrently against one ``streamlit run app.py``.

Loopback only and bounded (N tabs of one headless Chromium, one text each). Each session types
a different text; the labels and probabilities its page shows must equal what a single user
gets from ``Predictor`` for that text, and the server's memory must stay bounded: its peak RSS
with N sessions is compared with its RSS after one session (one model copy per process).

    .venv/bin/python benchmarks/app_load.py --models models --sessions 8 --output benchmarks/results/app-load.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

TEXTS = ["أنا سعيد جداً بنجاحي اليوم", "I am so angry about the delay", "خائف من الغد وحزين", "What a lovely surprise!",
         "الله يرحمه، حزن كبير في قلبي", "This is disgusting, I hate it", "I'm scared of the exam tomorrow",
         "يا لها من مفاجأة رائعة", "We won the cup!!! 🎉", "غاضب جداً من هذا القرار"]


def rss_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", required=True)
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--output")
    args = parser.parse_args()
    if not 1 <= args.sessions <= 32:
        raise SystemExit("--sessions must be between 1 and 32 (this is a bounded loopback test)")
    from browser import App, Browser

    from emoscope.bundle import find_bundles
    from emoscope.predict import Predictor

    bundle = find_bundles(args.models)[0]
    reference = Predictor(bundle, device="cpu", verify=False)
    app = App(Path(args.models))
    browser = Browser(app.url)
    try:
        browser.wait_text("Model: ", 300)  # the Predict page caption: the model is loaded
        one_session = rss_mb(app.proc.pid, "VmRSS")
        pages = [browser.new_tab(app.url) for _ in range(args.sessions)]
        started = time.perf_counter()
        texts = [TEXTS[i % len(TEXTS)] for i in range(args.sessions)]
        for page, text in zip(pages, texts):
            page.wait_text("Model: ", 300)
            page.type_into("textarea", text)
        shown = []
        for page in pages:
            page.wait_text("Predicted", 300)
            shown.append(page.js("Array.from(document.querySelectorAll('strong')).map(e => e.innerText)"))
        seconds = time.perf_counter() - started
        peak = rss_mb(app.proc.pid, "VmHWM")
        mismatches = []
        for text, labels in zip(texts, shown):
            expected = reference.predict([text])[0].labels
            if sorted(lab for lab in labels if lab in reference.labels) != sorted(expected):
                mismatches.append({"text": text, "shown": labels, "expected": expected})
    finally:
        browser.close()
        app.close()
    result = {"bundle": bundle.name, "sessions": args.sessions, "seconds_all_sessions": seconds,
              "server_rss_after_one_session_mb": one_session, "server_peak_rss_mb": peak,
              "mismatches": mismatches}
    print(f"{args.sessions} concurrent sessions in {seconds:.1f} s; server RSS after one session {one_session:.0f} MiB, "
          f"peak with {args.sessions}: {peak:.0f} MiB; label mismatches vs single-user Predictor: {len(mismatches)}")
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=1, ensure_ascii=False))
    if mismatches:
        raise SystemExit(f"results differ from single-user results: {mismatches}")


if __name__ == "__main__":
    main()
