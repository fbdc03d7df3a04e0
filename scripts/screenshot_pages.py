"""Screenshots of every app page for the docs, in Debian's headless Chromium.

    .venv/bin/python scripts/screenshot_pages.py --models models --output docs/img

Starts ``streamlit run app.py`` on loopback with the models folder (its newest bundle is
preselected), then for each page does what a user would (Predict: an Arabic tweet; Explain:
Integrated Gradients for it; the others: open them) and saves ``<output>/<page>.png``.
"""

from __future__ import annotations

import argparse
import sys
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

TEXT = "والله فرحانة جداً بنجاح أختي اليوم، الحمد لله 😍 best day ever"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", required=True)
    parser.add_argument("--output", default="docs/img")
    parser.add_argument("--pages", default="predict,explain,thresholds,evaluate,errors,batch,model,train")
    args = parser.parse_args()
    from browser import App, Browser

    out = Path(args.output)
    app = App(Path(args.models))
    browser = Browser(app.url, height=1100)
    try:
        for name in args.pages.split(","):
            if name == "predict":
                browser.goto(f"{app.url}/?text={urllib.parse.quote(TEXT)}")
                browser.wait_text("Predicted", 300)
            elif name == "explain":  # as a user gets there: from a prediction, with its labels
                browser.goto(f"{app.url}/?text={urllib.parse.quote(TEXT)}")
                browser.wait_text("Predicted", 300)
                browser.click_button("Explain this prediction")
                browser.wait_text("Explain a prediction", 120)
                browser.click_button("Explain")
                browser.wait("document.querySelectorAll('.es-word').length > 3", 600, "highlighted words")
            else:
                browser.goto(f"{app.url}/{name}")
                ready = {"thresholds": "macro-F1", "evaluate": "Per-class confusion matrices", "errors": "Errors, class by class",
                         "batch": "Batch prediction", "model": "Model card", "train": "Train a model"}[name]
                browser.wait_text(ready, 300)
                if name in ("thresholds", "evaluate", "model"):
                    browser.wait("document.querySelector('.js-plotly-plot')", 120, "a chart")
            print("wrote", browser.screenshot(out / f"{name}.png"))
    finally:
        browser.close()
        app.close()


if __name__ == "__main__":
    main()
