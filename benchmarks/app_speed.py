"""App speed: time from ``streamlit run`` to a ready page, and the server time of a prediction and
of a threshold-slider change, each against a reference measured in the same run.

* start-up: ``streamlit run app.py`` launched → the Predict page of a trained bundle shows its
  model caption in headless Chromium (first model load included), median of ``--starts``.
* prediction: the Predict page's script run after typing a text (``AppTest``, in-process: that
  is the server's work for the interaction), against ``Predictor.predict`` on the same text.
* slider: the Thresholds page's script run after moving one slider, against one
  ``compute_metrics`` call on the validation predictions (what the page must compute).

    .venv/bin/python benchmarks/app_speed.py --models models --output benchmarks/results/app-speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def startup_seconds(models: str) -> float:
    from browser import App, Browser

    started = time.perf_counter()
    app = App(Path(models))
    browser = Browser(app.url)
    try:
        browser.wait_text("Model: ", 300)  # the Predict page caption, shown once the model is loaded
        return time.perf_counter() - started
    finally:
        browser.close()
        app.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", required=True, help="models folder; its newest bundle is used")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--output")
    args = parser.parse_args()
    os.environ["EMOSCOPE_MODELS_DIR"] = args.models
    from streamlit.testing.v1 import AppTest

    from emoscope.bundle import find_bundles, read_manifest, read_validation
    from emoscope.metrics import compute_metrics
    from emoscope.predict import Predictor

    bundle = find_bundles(args.models)[0]
    texts = ["أنا سعيد جداً بنجاحي اليوم", "I am so angry about the delay", "خائف من الغد", "What a lovely surprise!"]
    app_path = str(ROOT / "app.py")
    at = AppTest.from_file(app_path, default_timeout=300).run()
    predictor = Predictor(bundle, device="cpu", verify=False)
    predict_page, reference = [], []
    for i in range(args.repeats):
        text = texts[i % len(texts)] + f" {i}"
        t0 = time.perf_counter()
        at.text_area(key="predict_text").input(text).run()
        predict_page.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        predictor.predict([text])
        reference.append(time.perf_counter() - t0)
        assert not at.exception, at.exception
    at.switch_page("pages/thresholds.py").run()
    manifest = read_manifest(bundle, verify=False)
    validation = read_validation(bundle, manifest)
    label = manifest.labels[0]
    slider, metrics_ref = [], []
    for i in range(args.repeats):
        value = 0.2 + 0.6 * (i % 7) / 6
        t0 = time.perf_counter()
        at.slider(key=f"slider::{label}").set_value(round(value, 2)).run()
        slider.append(time.perf_counter() - t0)
        thresholds = [s.value for s in at.slider]
        t0 = time.perf_counter()
        compute_metrics(validation.labels, validation.probs, thresholds, label_names=manifest.labels,
                        label_mask=validation.mask)
        metrics_ref.append(time.perf_counter() - t0)
        assert not at.exception, at.exception
    starts = [startup_seconds(args.models) for _ in range(args.starts)]
    result = {
        "bundle": bundle.name, "validation_texts": len(validation.texts),
        "startup_s": statistics.median(starts), "startups": starts,
        "predict_page_ms": statistics.median(predict_page) * 1e3, "predictor_ms": statistics.median(reference) * 1e3,
        "slider_page_ms": statistics.median(slider) * 1e3, "compute_metrics_ms": statistics.median(metrics_ref) * 1e3,
    }
    print(f"start-up to a ready page: {result['startup_s']:.1f} s (median of {len(starts)})")
    print(f"prediction: page run {result['predict_page_ms']:.0f} ms vs Predictor.predict {result['predictor_ms']:.0f} ms")
    print(f"slider change: page run {result['slider_page_ms']:.0f} ms vs compute_metrics {result['compute_metrics_ms']:.1f} ms")
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
