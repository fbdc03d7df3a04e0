"""Screenshot an app page for the docs, in Debian's headless Chromium, as a user would see it.

Starts ``streamlit run app.py`` headless on a free port with the given models folder, opens
``/?text=…`` in Chromium and, over the DevTools protocol, waits in real time until the page
shows what is asked for (``--wait-for``, text searched in the page), then writes a PNG.

    .venv/bin/python scripts/screenshot.py --models models --text "أنا سعيد جدا" \
        --wait-for Predicted --output docs/img/predict-ar.png
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import websockets

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, seconds: float) -> str:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            return urllib.request.urlopen(url, timeout=2).read().decode()
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"no answer from {url} within {seconds:.0f}s")


async def capture(ws_url: str, wait_for: str, timeout: float, width: int, height: int) -> bytes:
    async with websockets.connect(ws_url, max_size=64 << 20) as ws:
        counter = 0

        async def call(method: str, **params):
            nonlocal counter
            counter += 1
            await ws.send(json.dumps({"id": counter, "method": method, "params": params}))
            while True:
                msg = json.loads(await ws.recv())
                if msg.get("id") == counter:
                    return msg.get("result", {})

        await call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        deadline = time.time() + timeout
        script = f"document.body && document.body.innerText.includes({json.dumps(wait_for)})"
        while time.time() < deadline:
            result = await call("Runtime.evaluate", expression=script, returnByValue=True)
            if result.get("result", {}).get("value"):
                break
            await asyncio.sleep(0.5)
        else:
            raise SystemExit(f"the page never showed {wait_for!r} within {timeout:.0f}s")
        await asyncio.sleep(1.5)  # let charts finish drawing
        shot = await call("Page.captureScreenshot", format="png")
        return base64.b64decode(shot["data"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", required=True, help="folder of bundles (EMOSCOPE_MODELS_DIR)")
    parser.add_argument("--text", default="", help="text to predict (?text=…)")
    parser.add_argument("--wait-for", default="Predicted", help="page text that means the page is ready")
    parser.add_argument("--output", required=True)
    parser.add_argument("--width", type=int, default=1300)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("--timeout", type=float, default=180)
    args = parser.parse_args()

    app_port, debug_port = free_port(), free_port()
    env = {**os.environ, "EMOSCOPE_MODELS_DIR": args.models}
    app = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(app_port)],
                           cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    browser = None
    try:
        wait_http(f"http://localhost:{app_port}/_stcore/health", 90)
        url = f"http://localhost:{app_port}/?text={urllib.parse.quote(args.text)}"
        browser = subprocess.Popen(["chromium", *CHROMIUM_FLAGS, f"--remote-debugging-port={debug_port}",
                                    f"--user-data-dir={tempfile.mkdtemp()}", f"--window-size={args.width},{args.height}",
                                    url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        targets = json.loads(wait_http(f"http://127.0.0.1:{debug_port}/json", 30))
        page = next(t for t in targets if t.get("type") == "page")
        png = asyncio.run(capture(page["webSocketDebuggerUrl"], args.wait_for, args.timeout, args.width, args.height))
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_bytes(png)
        print(f"wrote {args.output}")
    finally:
        for proc in (browser, app):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=10)


if __name__ == "__main__":
    main()
