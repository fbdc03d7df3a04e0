"""A tiny headless-Chromium driver over the DevTools protocol, for browser tests and screenshots.

Starts ``streamlit run app.py`` on a free loopback port with a given models folder, and Debian's
``chromium`` (never Playwright's own download) with remote debugging; the test talks to the
page through CDP: evaluate JavaScript, wait for text or elements, type like a user
(``Input.insertText``), click buttons by their label, take screenshots.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import websockets

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


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
            time.sleep(0.3)
    raise TimeoutError(f"no answer from {url} within {seconds:.0f}s")


class App:
    """``streamlit run app.py`` on loopback, stopped on exit."""

    def __init__(self, models: Path, extra_env: dict[str, str] | None = None):
        self.port = free_port()
        env = {**os.environ, "EMOSCOPE_MODELS_DIR": str(models), **(extra_env or {})}
        self.started = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(self.port),
                                      "--server.address", "127.0.0.1"], cwd=ROOT, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(f"http://127.0.0.1:{self.port}/_stcore/health", 120)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Page:
    """One tab, driven over its own DevTools websocket (synchronous wrapper)."""

    def __init__(self, ws_url: str, width: int = 1300, height: int = 900):
        self.loop = asyncio.new_event_loop()
        self.ws = self.loop.run_until_complete(websockets.connect(ws_url, max_size=64 << 20))
        self.counter = 0
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def call(self, method: str, **params):
        async def go():
            self.counter += 1
            await self.ws.send(json.dumps({"id": self.counter, "method": method, "params": params}))
            while True:
                msg = json.loads(await self.ws.recv())
                if msg.get("id") == self.counter:
                    if "error" in msg:
                        raise RuntimeError(f"{method}: {msg['error']}")
                    return msg.get("result", {})
        return self.loop.run_until_complete(go())

    def js(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"JavaScript failed: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    def wait(self, expression: str, timeout: float = 120, what: str = "") -> object:
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = self.js(f"!!({expression})")
            if value:
                return value
            time.sleep(0.25)
        raise TimeoutError(f"the page never showed {what or expression} within {timeout:.0f}s; it shows: "
                           + str(self.js("document.body ? document.body.innerText.slice(0, 1500) : ''")))

    def wait_text(self, text: str, timeout: float = 120) -> None:
        self.wait(f"document.body && document.body.innerText.includes({json.dumps(text)})", timeout, repr(text))

    def goto(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def type_into(self, selector: str, text: str) -> None:
        """Focus the element, select what it holds, type ``text`` over it, then leave it (Streamlit commits on blur)."""
        self.wait(f"document.querySelector({json.dumps(selector)})", 60, selector)
        self.js(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.focus(); e.select(); }})()")
        self.call("Input.insertText", text=text)
        self.js(f"document.querySelector({json.dumps(selector)}).blur()")

    def click_button(self, label: str, timeout: float = 60, within: str = "") -> None:
        """Click the first button labelled ``label`` (inside the elements matching CSS ``within``, if
        given: Streamlit's own toolbar shows a "Stop" button of its own while a script runs)."""
        buttons = json.dumps(f"{within} button".strip())
        finder = (f"Array.from(document.querySelectorAll({buttons})).find(b => b.innerText.trim() === "
                  f"{json.dumps(label)})")
        self.wait(finder, timeout, f"a button {label!r}")
        self.js(f"{finder}.click()")

    def screenshot(self, path: Path) -> Path:
        time.sleep(1.0)  # let charts finish drawing
        png = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)
        return path

    def close_socket(self) -> None:
        try:
            self.loop.run_until_complete(self.ws.close())
        finally:
            self.loop.close()


class Browser(Page):
    """Debian's headless Chromium with one page open at ``url``; ``new_tab`` opens more."""

    def __init__(self, url: str, width: int = 1300, height: int = 900):
        self.debug_port = free_port()
        self.profile = tempfile.mkdtemp(prefix="emoscope-chromium-")
        self.proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--remote-debugging-port={self.debug_port}",
                                      f"--user-data-dir={self.profile}", f"--window-size={width},{height}", url],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        targets = json.loads(wait_http(f"http://127.0.0.1:{self.debug_port}/json", 30))
        super().__init__(next(t for t in targets if t.get("type") == "page")["webSocketDebuggerUrl"], width, height)
        self.tabs: list[Page] = []

    def new_tab(self, url: str) -> Page:
        import urllib.parse

        request = urllib.request.Request(f"http://127.0.0.1:{self.debug_port}/json/new?{urllib.parse.quote(url, safe='')}",
                                         method="PUT")
        target = json.loads(urllib.request.urlopen(request, timeout=10).read().decode())
        tab = Page(target["webSocketDebuggerUrl"])
        self.tabs.append(tab)
        return tab

    def close(self) -> None:
        try:
            for tab in self.tabs:
                tab.close_socket()
            self.close_socket()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            shutil.rmtree(self.profile, ignore_errors=True)
