"""Load test of the app on loopback: sessions predicting while others run LIME, one fresh server per run.

Each run starts ``streamlit run app.py`` on 127.0.0.1 (a free port) with a models folder holding
only the given bundle, its own ``TMPDIR`` (so the disk its sessions' upload folders use can be
measured) and a short ``server.disconnectedSessionTTL``, and drives it over Streamlit's own
websocket protocol (protobuf ``BackMsg``/``ForwardMsg``, what the browser sends and receives,
uploads through the same HTTP route the browser uses): every session is a real server session
running the real pages, the work queue and the start-up warm-up, and no browser competes with
the server for the CPU. Nothing in the app is mocked. Phases, in one run:

* start: every session opens at once on the fresh server (the first page load: warm-up, model load),
  then each predicting session predicts every text once, checked but not timed;
* idle: the predicting sessions each predict ``--predictions`` texts in turn on the Predict page,
  a user's think time (``--think``) before each;
* loaded: the same texts again, while ``--lime`` sessions run LIME (``--samples``) on the Explain
  page back to back, each on a new text (no cached explanation);
* batch: one session uploads a CSV on the Batch page and predicts it; then every session closes
  and the upload folders under the server's ``TMPDIR`` must be gone within ``--disk-timeout`` s.

A prediction's latency is its server round trip: the rerun message out to ``script_finished``
back. Its probabilities (from the Predict page's chart) and labels must equal a single-threaded
``Predictor``'s for the same text (``--atol``). Errors: any exception or ``st.error`` on a page, a
protocol failure or a timeout. Bounded: at most 32 sessions and 200 predictions per session, a
wall-clock limit per run (``--run-timeout``); it stops by itself and stops its servers.

    .venv/bin/python benchmarks/load_test.py --bundle models/quick --runs 3 --output benchmarks/results/load-test.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests
import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.Common_pb2 import FileURLs
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState

ROOT = Path(__file__).resolve().parent.parent
TEXTS = ["I am so angry about the delay", "What a lovely surprise!", "I'm scared of the exam tomorrow",
         "We won the cup!!! 🎉", "This is disgusting, I hate it", "أنا سعيد جداً بنجاحي اليوم", "خائف من الغد وحزين",
         "غاضب جداً من هذا القرار", "الله يرحمه، حزن كبير في قلبي", "يا لها من مفاجأة رائعة"]
FINISHED = (ForwardMsg.FINISHED_SUCCESSFULLY, ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY)


class PageRun:
    """What one script run drew: its elements, and any errors on it."""

    def __init__(self) -> None:
        self.elements: list = []
        self.errors: list[str] = []

    def of(self, kind: str) -> list:
        return [getattr(e, kind) for e in self.elements if e.WhichOneof("type") == kind]

    def widget(self, kind: str, key: str | None = None, label: str | None = None) -> str:
        for w in self.of(kind):
            if (key is None or w.id.endswith(f"-{key}")) and (label is None or w.label.startswith(label)):
                return w.id
        raise LookupError(f"no {kind} {key or label} on the page")


class Session:
    """One browser tab's worth of protocol: a websocket, the page it is on, its widget values."""

    def __init__(self, port: int, timeout: float) -> None:
        self.port, self.timeout = port, timeout
        self.pages: dict[str, str] = {}
        self.page_hash, self.session_id = "", ""
        self.ws = None

    async def open(self) -> PageRun:
        self.ws = await websockets.connect(f"ws://127.0.0.1:{self.port}/_stcore/stream", subprotocols=["streamlit"],
                                           max_size=None, ping_interval=None, open_timeout=60)
        return await self.run()

    async def run(self, widgets: list[WidgetState] = (), page: str | None = None) -> PageRun:
        msg = BackMsg()
        state = msg.rerun_script
        state.page_script_hash = self.pages.get(page, "") if page else self.page_hash
        state.widget_states.widgets.extend(widgets)
        await self.ws.send(msg.SerializeToString())
        return await asyncio.wait_for(self._until_finished(), self.timeout)

    async def _until_finished(self) -> PageRun:
        out = PageRun()
        while True:
            msg = ForwardMsg()
            msg.ParseFromString(await self.ws.recv())
            kind = msg.WhichOneof("type")
            if kind == "new_session":
                self.session_id = msg.new_session.initialize.session_id or self.session_id
            elif kind == "navigation":
                self.pages = {p.url_pathname: p.page_script_hash for p in msg.navigation.app_pages}
                self.page_hash = msg.navigation.page_script_hash
            elif kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
                element = msg.delta.new_element
                out.elements.append(element)
                if element.WhichOneof("type") == "exception":
                    out.errors.append(f"exception: {element.exception.message}")
                elif element.WhichOneof("type") == "alert" and element.alert.format == element.alert.ERROR:
                    out.errors.append(f"st.error: {element.alert.body}")
            elif kind == "script_finished":
                if msg.script_finished in FINISHED:
                    return out
                if msg.script_finished == ForwardMsg.FINISHED_WITH_COMPILE_ERROR:
                    out.errors.append("script compile error")
                    return out

    async def file_urls(self, name: str) -> FileURLs:
        msg = BackMsg()
        msg.file_urls_request.request_id, msg.file_urls_request.session_id = "load-test", self.session_id
        msg.file_urls_request.file_names.append(name)
        await self.ws.send(msg.SerializeToString())
        while True:
            reply = ForwardMsg()
            reply.ParseFromString(await asyncio.wait_for(self.ws.recv(), self.timeout))
            if reply.WhichOneof("type") == "file_urls_response":
                return reply.file_urls_response.file_urls[0]

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


def text_state(widget_id: str, text: str) -> WidgetState:
    return WidgetState(id=widget_id, string_value=text)


def shown_prediction(run: PageRun) -> tuple[dict[str, float], list[str]]:
    """The probabilities in the Predict page's chart and the labels in its 'Predicted' line."""
    [chart] = run.of("plotly_chart")
    bars = json.loads(chart.spec)["data"][0]
    probs = dict(zip(bars["y"], bars["x"]))
    line = next((m.body for m in run.of("markdown") if m.body.startswith("**") or m.body.startswith("_no emotion")), "")
    labels = [part.strip().strip("*") for part in line.split(",")] if line.startswith("**") else []
    return probs, labels


async def predicting(session: Session, text_id: str, texts: list[str], refs: dict, atol: float, out: dict,
                     think: list[float]) -> None:
    """Predict each text in turn on the Predict page, a user's think time before each; each round
    trip's seconds, errors and mismatches."""
    for text, pause in zip(texts, think):
        await asyncio.sleep(pause)
        started = time.perf_counter()
        run = await session.run([text_state(text_id, text)])
        out["latency"].append(time.perf_counter() - started)
        out.setdefault("sent_at", []).append(started)
        out["errors"] += run.errors
        try:
            probs, labels = shown_prediction(run)
        except ValueError:
            out["errors"].append(f"no chart for {text!r}")
            continue
        want_probs, want_labels = refs[text]
        if set(probs) != set(want_probs) or any(abs(probs[k] - want_probs[k]) > atol for k in want_probs) \
                or sorted(labels) != sorted(want_labels):
            out["mismatches"].append({"text": text, "shown": [probs, labels], "expected": [want_probs, want_labels]})


async def explaining(session: Session, texts: list[str], samples: int, stop: asyncio.Event, out: dict) -> None:
    """LIME on the Explain page, text after text, until ``stop``; each run's seconds (queue wait included)."""
    page = await session.run(page="explain")
    text_id, method_id = page.widget("text_area", "explain_text"), page.widget("radio", "explain_method")
    base = [text_state(text_id, texts[0]), WidgetState(id=method_id, string_value="LIME")]
    page = await session.run(base)
    samples_id, button_id = page.widget("slider", "explain_lime_samples"), page.widget("button", label="Explain")
    for i in range(10_000):
        if stop.is_set():
            return
        text = texts[i % len(texts)] + f" ({i})"  # a new text every time: never a cached explanation
        states = [text_state(text_id, text), base[1], WidgetState(id=samples_id, string_array_value={"data": [str(samples)]}),
                  WidgetState(id=button_id, trigger_value=True)]
        started = time.perf_counter()
        run = await session.run(states)
        out["errors"] += run.errors
        out["lime_queued"] += any("waiting for a free slot" in a.body for a in run.of("alert"))
        if not any("es-word" in h.body for h in run.of("html")):
            out["errors"].append(f"LIME showed no explanation for {text!r}")
        out["lime_s"].append(time.perf_counter() - started)


async def batch_upload(session: Session, port: int, rows: list[str], out: dict) -> None:
    """Upload a CSV on the Batch page, predict it, and check the row count it reports."""
    page = await session.run(page="batch")
    uploader = page.widget("file_uploader", "batch_file")
    content = ("text\n" + "\n".join(f'"{r}"' for r in rows) + "\n").encode("utf-8")
    urls = await session.file_urls("rows.csv")
    http = requests.Session()
    http.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=60)  # sets the XSRF cookie, as for the browser
    token = http.cookies.get("_streamlit_xsrf", "")
    reply = await asyncio.to_thread(http.put, f"http://127.0.0.1:{port}{urls.upload_url}", timeout=60,
                                    files={"file": ("rows.csv", content, "text/csv")}, headers={"X-Xsrftoken": token})
    reply.raise_for_status()
    state = WidgetState(id=uploader)
    info = state.file_uploader_state_value.uploaded_file_info.add()
    info.name, info.size, info.file_id = "rows.csv", len(content), urls.file_id
    info.file_urls.CopyFrom(urls)
    page = await session.run([state])
    run = await session.run([state, WidgetState(id=page.widget("button", label="Predict"), trigger_value=True)])
    out["errors"] += run.errors
    if not any(a.body.startswith(f"{len(rows)} rows") for a in run.of("alert")):
        out["errors"].append("the Batch page did not report its rows")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``streamlit run app.py`` on loopback over one bundle, with its own TMPDIR; stopped on exit."""

    def __init__(self, bundle: Path, work: Path, ttl_s: int) -> None:
        self.port, self.tmp, models = free_port(), work / "tmp", work / "models"
        self.tmp.mkdir(parents=True)
        models.mkdir()
        (models / bundle.name).symlink_to(bundle.resolve(), target_is_directory=True)
        env = {**os.environ, "EMOSCOPE_MODELS_DIR": str(models), "EMOSCOPE_MODEL": str(models / bundle.name),
               "TMPDIR": str(self.tmp), "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.address", "127.0.0.1",
                   "--server.port", str(self.port), "--server.headless", "true",
                   "--server.disconnectedSessionTTL", str(ttl_s), "--browser.gatherUsageStats", "false"]
        self.log = (work / "server.log").open("w")
        self.proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.rss_peak = 0.0

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the server exited ({self.proc.returncode}); see its log")
            try:
                if requests.get(f"http://127.0.0.1:{self.port}/_stcore/health", timeout=2).text == "ok":
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise SystemExit("the server did not come up")

    def rss_mb(self) -> float:
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) / 1024
                    self.rss_peak = max(self.rss_peak, rss)
                    return rss
        except OSError:
            pass
        return float("nan")

    def upload_bytes(self) -> int:
        return sum(f.stat().st_size for d in self.tmp.glob("emoscope-*") for f in d.rglob("*") if f.is_file())

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


async def watch_memory(server: Server, stop: asyncio.Event) -> None:
    while not stop.is_set():
        server.rss_mb()
        await asyncio.sleep(0.5)


def timeline(sent_at: list[float], latencies: list[float]) -> list[tuple[float, float]]:
    """(seconds since the phase's first prediction, latency) of each prediction, in order sent."""
    first = min(sent_at, default=0.0)
    return sorted((round(t - first, 3), round(dt, 3)) for t, dt in zip(sent_at, latencies))


def summary(latencies: list[float]) -> dict[str, float]:
    if not latencies:
        return {"n": 0}
    return {"n": len(latencies), "median_s": statistics.median(latencies), "p95_s": float(np.percentile(latencies, 95)),
            "max_s": max(latencies)}


async def one_run(args, server: Server, refs: dict) -> dict:
    """Open every session at once, then the idle, loaded and batch phases; close them; watch the disk."""
    out = {"latency": [], "errors": [], "mismatches": [], "lime_s": [], "lime_queued": 0}
    rng = np.random.default_rng(0)  # the same think times in both phases and every run
    think = [list(rng.uniform(0.5, 1.5, args.predictions) * args.think) for _ in range(args.sessions)]
    sessions = [Session(server.port, args.page_timeout) for _ in range(args.sessions + args.lime + 1)]
    stop_memory = asyncio.Event()
    memory = asyncio.create_task(watch_memory(server, stop_memory))
    started = time.perf_counter()
    opened = await asyncio.gather(*(s.open() for s in sessions))  # a fresh server: every first page load at once
    result = {"first_page_all_sessions_s": time.perf_counter() - started}
    for run in opened:
        out["errors"] += run.errors
    result["rss_after_start_mb"] = server.rss_mb()
    predictors, explainers, uploader = sessions[:args.sessions], sessions[args.sessions:-1], sessions[-1]
    text_ids = [run.widget("text_area", "predict_text") for run in opened[:args.sessions]]
    texts = [[TEXTS[(i + k) % len(TEXTS)] for k in range(args.predictions)] for i in range(args.sessions)]
    # Warm-up, checked but not timed: each session predicts every text once (the first predictions of each
    # text length after a model load run slower, which would inflate whichever phase came first).
    warm = {"latency": [], "errors": out["errors"], "mismatches": out["mismatches"]}
    await asyncio.gather(*(predicting(s, t, TEXTS, refs, args.atol, warm, [0.0] * len(TEXTS))
                           for s, t in zip(predictors, text_ids)))
    result["warm_up_predictions"] = len(warm["latency"])
    await asyncio.gather(*(predicting(s, t, x, refs, args.atol, out, w)
                           for s, t, x, w in zip(predictors, text_ids, texts, think)))
    idle, out["latency"] = out["latency"], []
    idle_timeline, out["sent_at"] = timeline(out.pop("sent_at"), idle), []
    stop = asyncio.Event()
    lime = [asyncio.create_task(explaining(s, TEXTS[i:] + TEXTS[:i], args.samples, stop, out))
            for i, s in enumerate(explainers)]
    await asyncio.sleep(args.lime_head_start)  # the explanations are running (and queued) before predictions start
    await asyncio.gather(*(predicting(s, t, x, refs, args.atol, out, w)
                           for s, t, x, w in zip(predictors, text_ids, texts, think)))
    stop.set()
    for session in explainers:
        await session.close()  # mid-LIME: the server stops that work at its next progress report
    for outcome in await asyncio.gather(*lime, return_exceptions=True):
        if isinstance(outcome, BaseException) and not isinstance(outcome, websockets.ConnectionClosed):
            out["errors"].append(f"LIME session: {outcome!r}")  # closing a session mid-LIME is expected, nothing else
    result["rss_after_loaded_mb"] = server.rss_mb()
    result["timelines"] = {"idle": idle_timeline, "loaded": timeline(out.pop("sent_at"), out["latency"])}
    await batch_upload(uploader, server.port, [f"{TEXTS[i % len(TEXTS)]} {i}" for i in range(args.batch_rows)], out)
    result["upload_bytes_with_a_session_open"] = server.upload_bytes()
    for session in predictors + [uploader]:
        await session.close()
    result["upload_bytes_after_close"], waited = await disk_back_to_zero(server, args.disk_timeout)
    result["upload_disk_zero_after_s"] = waited
    stop_memory.set()
    await memory
    return {**result, "idle": summary(idle), "loaded": summary(out["latency"]), "lime_runs": len(out["lime_s"]), "lime_runs_that_queued": out["lime_queued"],
            "lime_s": summary(out["lime_s"]), "errors": out["errors"], "mismatches": out["mismatches"],
            "server_peak_rss_mb": server.rss_peak}


async def disk_back_to_zero(server: Server, timeout: float) -> tuple[int, float | None]:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        left = server.upload_bytes()
        if left == 0 and not list(server.tmp.glob("emoscope-*")):
            return 0, time.monotonic() - started
        await asyncio.sleep(1)
    return server.upload_bytes(), None


def references(bundle: Path) -> dict[str, tuple[dict[str, float], list[str]]]:
    """Single-threaded reference predictions of every text the predicting sessions send."""
    import torch

    from emoscope.predict import Predictor

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    predictor = Predictor(bundle, device="cpu")
    refs = {}
    for text in TEXTS:
        [p] = predictor.predict([text])
        refs[text] = ({k: float(v) for k, v in p.probabilities.items()}, list(p.labels))
    torch.set_num_threads(threads)
    return refs


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True, type=Path)
    parser.add_argument("--sessions", type=int, default=8, help="sessions predicting")
    parser.add_argument("--lime", type=int, default=4, help="sessions running LIME meanwhile")
    parser.add_argument("--samples", type=int, default=1000, choices=(100, 250, 500, 1000, 2000, 5000))
    parser.add_argument("--predictions", type=int, default=20, help="predictions per session and phase")
    parser.add_argument("--think", type=float, default=3.0, help="mean seconds a user waits before each prediction "
                                                                  "(uniform over 0.5x-1.5x, seeded)")
    parser.add_argument("--batch-rows", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3, help="each from a fresh server")
    parser.add_argument("--atol", type=float, default=1e-5)
    parser.add_argument("--lime-head-start", type=float, default=3.0)
    parser.add_argument("--page-timeout", type=float, default=300.0, help="seconds one page run may take")
    parser.add_argument("--run-timeout", type=float, default=1800.0, help="seconds one whole run may take")
    parser.add_argument("--disk-timeout", type=float, default=60.0)
    parser.add_argument("--ttl", type=int, default=2, help="server.disconnectedSessionTTL (s)")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    if not (1 <= args.sessions <= 32 and 0 <= args.lime <= 16 and 1 <= args.predictions <= 200 and 1 <= args.runs <= 5):
        parser.error("bounded: 1-32 sessions, 0-16 LIME sessions, 1-200 predictions, 1-5 runs")
    return args


def main() -> None:
    args = parse_args()
    refs = references(args.bundle)
    runs = []
    for i in range(args.runs):
        work = Path(tempfile.mkdtemp(prefix="emoscope-load-"))
        server = Server(args.bundle, work, args.ttl)
        try:
            server.wait_ready()
            result = asyncio.run(asyncio.wait_for(one_run(args, server, refs), args.run_timeout))
        finally:
            server.stop()
            shutil.rmtree(work, ignore_errors=True)
        runs.append(result)
        idle, loaded = result["idle"], result["loaded"]
        print(f"run {i + 1}: idle median {idle['median_s']:.3f} s p95 {idle['p95_s']:.3f} s · with {args.lime} LIME "
              f"sessions median {loaded['median_s']:.3f} s p95 {loaded['p95_s']:.3f} s "
              f"(p95 {loaded['p95_s'] / idle['p95_s']:.2f}x idle) · {result['lime_runs']} LIME runs · peak RSS "
              f"{result['server_peak_rss_mb']:.0f} MiB · {len(result['errors'])} errors, "
              f"{len(result['mismatches'])} mismatches · uploads {result['upload_bytes_with_a_session_open']} B open, "
              f"{result['upload_bytes_after_close']} B after close", flush=True)
    report = {"bundle": str(args.bundle), "cpu": cpu_name(), "cores": len(os.sched_getaffinity(0)),
              "work_slots": os.environ.get("EMOSCOPE_WORK_SLOTS", "default (half the cores)"),
              "settings": {k: str(v) for k, v in vars(args).items()}, "runs": runs}
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=1, ensure_ascii=False))
    bad = sum(len(r["errors"]) + len(r["mismatches"]) for r in runs)
    if bad:
        raise SystemExit(f"{bad} errors or mismatches: see {args.output or 'the run lines above'}")


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "?"


if __name__ == "__main__":
    main()
