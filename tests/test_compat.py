"""Bundles trained before the redesign (issue 12) behave exactly as before after it.

The redesign promises the same bundle format, predictions, explanations and CLI. This module
holds it to that: the tree of commit ``6aeffa0`` (the last before the change) is extracted with
``git archive`` and run in subprocesses (``tests/legacy.py``, ``PYTHONPATH`` = that tree) to
train bundles and record what the old code gives for them: probabilities (float32, batched
and one text at a time), labels and thresholds, LIME / attention / IG explanations, and the
outputs of ``emoscope predict``, ``evaluate`` and ``explain``. The current code then loads the
same bundles and must give bit-identical probabilities, equal explanation JSON (only
``runtime_s`` dropped) and byte-identical CLI outputs (only timings dropped).

Both LIME (seeded) and IG were checked to give identical output when the old code is run twice
(same machine, same thread count), so every comparison here is exact, with no tolerance.

Fast set (default): two bundles over the tiny encoders of conftest, a single-encoder one and a
stacked one reading the fine-tuned encoder's classifier logits (``meta.base_logits``), one
encoder fine-tuned out-of-fold and one frozen. Slow set (``-m slow``): the real ``smoke`` and
``smoke-stack`` recipes, which need the packaged models and ``../shared/datasets``.

The new side uses only what the redesign keeps: ``Predictor(path)`` with ``predict_proba``,
``labels`` and ``thresholds``, ``explain(predictor, text, method, labels, params).to_json()``
and the ``emoscope`` command line.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
LEGACY = Path(__file__).resolve().with_name("legacy.py")
BEFORE = "6aeffa0"  # the last commit before the redesign of issue 12

# What is predicted and explained: English and Arabic, emoji, texts that normalise to nothing
# (tatweel only, diacritics only), one longer than the stacks' max_words and the encoders'
# max_length, mixed Arabic/English, punctuation runs.
TEXTS = [
    "I was so happy today 😀 and delighted!",
    "كان اليوم سعيد جدا 😂 فرح",
    "ـــ",
    "\u064e\u064f\u0650\u0651",
    " ".join(["the day was furious and we felt scared, then sad and crying at home"] * 8),
    "we went home و كان حزين and crying 😢",
    "Terrified!!! خائف من الرعب...",
    "غاضب غضب angry furious 😡😡",
]
# A few texts explained with every variant of each method; the rest with the defaults of the test.
VARIANT_TEXTS = [TEXTS[0], TEXTS[1], TEXTS[4]]


# --- the old tree, the subprocess runner ---------------------------------------------------------


@pytest.fixture(scope="session")
def old_tree(tmp_path_factory) -> Path:
    """``emoscope/`` and ``training/`` as they were at 6aeffa0."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed: the tree before the redesign cannot be extracted")
    if not (ROOT / ".git").exists():
        pytest.skip(f"{ROOT} is not a git checkout: the tree before the redesign cannot be extracted")
    found = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", "--quiet", f"{BEFORE}^{{commit}}"],
                           capture_output=True, text=True)
    if found.returncode != 0:
        pytest.skip(f"commit {BEFORE} (before the redesign) is not in this clone (a shallow clone?); "
                    "fetch the full history to run the compatibility tests")
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", BEFORE, "emoscope", "training"],
                             capture_output=True, check=True).stdout
    old = tmp_path_factory.mktemp("before-redesign") / "old"
    old.mkdir()
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(old, filter="data")
    assert (old / "emoscope" / "predict.py").is_file()
    return old


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def _data_root() -> Path | None:
    """Where the shared datasets are (as the product looks: EMOSCOPE_DATA_ROOT, else a
    ``shared/datasets`` above the checkout), without asking the code under test."""
    env = os.environ.get("EMOSCOPE_DATA_ROOT")
    candidates = [Path(env).expanduser()] if env else [p / "shared" / "datasets" for p in (ROOT, *ROOT.parents)]
    for root in candidates:
        if (root / "brighter_track_a" / "eng" / "dev.csv").is_file():
            return root
    return None


def run_helper(command: str, plan: dict[str, Any], code_root: Path, workdir: Path,
               timeout: int) -> subprocess.CompletedProcess:
    """Run ``tests/legacy.py COMMAND`` with ``code_root`` first on the path (checked inside)."""
    workdir.mkdir(parents=True, exist_ok=True)
    plan = {"expect_root": str(code_root), "threads": _threads(), **plan}
    plan_path = workdir / f"{command}-plan.json"
    plan_path.write_text(json.dumps(plan, ensure_ascii=False, indent=1), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(code_root), "TOKENIZERS_PARALLELISM": "false"}
    root = _data_root()
    if root is not None:
        env["EMOSCOPE_DATA_ROOT"] = str(root)
    # cwd outside the checkout: `python -m` and the script's folder must not shadow PYTHONPATH
    return subprocess.run([sys.executable, str(LEGACY), command, str(plan_path)], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _ok(proc: subprocess.CompletedProcess, what: str) -> None:
    assert proc.returncode == 0, f"{what} failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"


# --- what is asked of each bundle ----------------------------------------------------------------


def explain_plan(labels_hint: str, texts: list[str], variants: list[str]) -> list[dict[str, Any]]:
    """The explanation calls, in order: defaults of the test on every text, the variants on a few,
    and two refusals. ``labels_hint`` is a label every bundle here has."""
    lime = {"samples": 200, "seed": 3, "precision": "fp32"}
    ig = {"n_steps": 8, "precision": "fp32"}
    calls = []
    for text in texts:
        calls += [{"text": text, "method": "lime", "labels": None, "params": lime},
                  {"text": text, "method": "attention", "labels": None, "params": {}},
                  {"text": text, "method": "ig", "labels": None, "params": ig}]
    for text in variants:
        calls += [{"text": text, "method": "lime", "labels": [labels_hint], "params": {"samples": 200, "seed": 11}},
                  {"text": text, "method": "attention", "labels": None, "params": {"rollout": True, "encoder": "all"}},
                  {"text": text, "method": "attention", "labels": [labels_hint], "params": {"layer": 0, "head": 1}},
                  {"text": text, "method": "ig", "labels": [labels_hint],
                   "params": {"n_steps": 8, "internal_batch_size": 3, "precision": "fp32"}},
                  {"text": text, "method": "ig", "labels": None, "params": {"n_steps": 4}}]
    calls += [{"text": "   ", "method": "ig", "labels": None, "params": ig, "refusal": True},
              {"text": TEXTS[0], "method": "attention", "labels": ["no-such-label"], "params": {}, "refusal": True}]
    return calls


def write_predict_input(path: Path) -> Path:
    """A file to predict: the texts above, an empty row, quotes, commas and a line break."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"id": f"r{i}", "text": t} for i, t in enumerate(TEXTS)]
    rows += [{"id": "empty", "text": ""}, {"id": "quoted", "text": 'she said "so happy", then\nleft, sad'}]
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["id", "text"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def cli_runs(bundle: Path, cwd: Path, data: str, input_csv: Path, label: str, n_eval: int) -> list[dict[str, Any]]:
    """The CLI invocations; outputs are relative to ``cwd`` so both sides print the same names."""
    model = ["--model", str(bundle)]
    runs = [
        ("predict-json", ["predict", *model, "--text", TEXTS[0], "--json"]),
        ("predict-report", ["predict", *model, "--text", TEXTS[1]]),
        ("predict-csv", ["predict", *model, "--input", str(input_csv), "--output", "out.csv", "--quiet"]),
        ("predict-jsonl", ["predict", *model, "--input", str(input_csv), "--output", "out.jsonl", "--quiet",
                           "--chunk-size", "3"]),
        ("evaluate", ["evaluate", *model, "--data", data, "--output", "metrics.json"]),
        ("evaluate-05", ["evaluate", *model, "--data", data, "--threshold-05"]),
        ("explain-ig", ["explain", *model, "--text", TEXTS[5], "--method", "ig", "--steps", "8",
                        "--precision", "fp32", "--output", "ig.json"]),
        ("explain-lime", ["explain", *model, "--text", TEXTS[6], "--method", "lime", "--samples", "200",
                          "--seed", "5", "--label", label, "--output", "lime.json"]),
        ("explain-html", ["explain", *model, "--text", TEXTS[1], "--method", "attention", "--format", "html",
                          "--output", "attention.html"]),
        ("explain-evaluate", ["explain", *model, "--evaluate", "--data", data, "--n", str(n_eval),
                              "--methods", "attention,ig", "--steps", "4", "--precision", "fp32",
                              "--output", "faithfulness.json", "--quiet"]),
    ]
    return [{"name": name, "argv": argv, "cwd": str(cwd)} for name, argv in runs]


class Case:
    """One bundle trained by the old code, with what the old code recorded for it and the
    folder where the new code's CLI wrote its outputs."""

    def __init__(self, name: str, bundle: Path, reference: Path, old_cli: Path, new_cli: Path,
                 texts: list[str], calls: list[dict[str, Any]]):
        self.name, self.bundle, self.reference = name, bundle, reference
        self.old_cli, self.new_cli, self.texts, self.calls = old_cli, new_cli, texts, calls


def build_cases(specs: list[dict[str, Any]], old: Path, work: Path, extra_texts: list[str], data: str,
                n_eval: int, timeout: int) -> dict[str, Case]:
    """Train every spec with the old code, record its outputs, then run the new code's CLI."""
    runs = []
    for spec in specs:
        name = spec["name"]
        runs.append({"recipe": spec["recipe"], "output": str(work / "bundles" / name),
                     "work": str(work / "stage1" / name), "embeddings": str(work / "embeddings" / name)})
    proc = run_helper("train", {"runs": runs}, old, work / "old-train", timeout)
    if proc.returncode == 3:
        pytest.skip(f"the old code cannot train here: {proc.stderr.strip().splitlines()[-1]}")
    _ok(proc, "training with the code before the redesign")

    input_csv = write_predict_input(work / "inputs" / "in.csv")
    cases, bundles, old_runs, new_runs = {}, [], [], []
    for spec in specs:
        name, bundle = spec["name"], work / "bundles" / spec["name"]
        texts = TEXTS + extra_texts
        calls = explain_plan("joy", spec["explain_texts"], spec["variant_texts"])
        case = Case(name, bundle, work / "reference" / name, work / "old-cli" / name, work / "new-cli" / name,
                    texts, calls)
        bundles.append({"path": str(bundle), "out": str(case.reference), "texts": texts, "explain": calls})
        old_runs += cli_runs(bundle, case.old_cli, data, input_csv, "joy", n_eval)
        new_runs += cli_runs(bundle, case.new_cli, data, input_csv, "joy", n_eval)
        cases[name] = case
    _ok(run_helper("record", {"bundles": bundles, "runs": old_runs}, old, work / "old-record", timeout),
        "recording (outputs and CLI) with the old code")
    # The new CLI's failures (an import broken mid-refactor) show in the CLI tests, with stderr.
    _ok(run_helper("cli", {"runs": new_runs}, ROOT, work / "new-cli-runs", timeout), "the CLI runner on the new code")
    return cases


@pytest.fixture(scope="module")
def fast_cases(old_tree, tiny_encoder, tiny_encoder_b, tiny_data,
               tmp_path_factory) -> Iterator[dict[str, Case]]:
    data = {"train": str(tiny_data["train"]), "validation": str(tiny_data["dev"])}
    encoder = {"pooling": "mean", "max_length": 32, "dropout": 0.0}
    training = {"lr": 3e-3, "head_lr": 1e-2, "batch_size": 16, "warmup_ratio": 0.0, "seed": 7}
    single = {"name": "compat-single", "data": data, "encoders": [{"source": str(tiny_encoder), **encoder}],
              "training": {**training, "epochs": 10, "patience": 10}}
    stacked = {"name": "compat-stack", "data": data,
               "encoders": [{"source": str(tiny_encoder), "name": "tiny0", "fine_tune": True, **encoder},
                            {"source": str(tiny_encoder_b), "name": "tiny1", "fine_tune": False, **encoder}],
               "training": {**training, "epochs": 4, "patience": 4},
               "stack": {"folds": 2, "max_words": 16},
               "meta": {"hidden_size": 16, "dense_size": 16, "epochs": 30, "patience": 30, "lr": 1e-2,
                        "dropout": 0.1, "base_logits": True},
               "loss": {"name": "hybrid"}}
    with tiny_data["dev"].open(encoding="utf-8") as f:
        dev_texts = [row["text"] for row in csv.DictReader(f)]
    specs = [{"name": "single", "recipe": single, "explain_texts": TEXTS, "variant_texts": VARIANT_TEXTS},
             {"name": "stack-base-logits", "recipe": stacked, "explain_texts": TEXTS, "variant_texts": VARIANT_TEXTS}]
    folder = tmp_path_factory.mktemp("compat-fast")
    yield build_cases(specs, old_tree, folder, dev_texts, str(tiny_data["dev"]), n_eval=4, timeout=900)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def slow_cases(old_tree, tiny_data, tmp_path_factory) -> Iterator[dict[str, Case]]:
    if _data_root() is None:
        pytest.skip("shared datasets not found (../shared/datasets or EMOSCOPE_DATA_ROOT; see scripts/setup.sh)")
    configs = old_tree / "training" / "configs"
    with tiny_data["dev"].open(encoding="utf-8") as f:
        extra = [row["text"] for row in csv.DictReader(f)][:40]
    few = [TEXTS[0], TEXTS[2], TEXTS[4], TEXTS[5]]
    specs = [{"name": "smoke", "recipe": str(configs / "smoke.toml"), "explain_texts": few, "variant_texts": TEXTS[:1]},
             {"name": "smoke-stack", "recipe": str(configs / "smoke-stack.toml"), "explain_texts": few,
              "variant_texts": TEXTS[:1]}]
    folder = tmp_path_factory.mktemp("compat-slow")  # about 1 GB of bundles and stage-1 models
    yield build_cases(specs, old_tree, folder, extra, "brighter:eng:dev", n_eval=2, timeout=3000)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(params=["single", "stack-base-logits", pytest.param("smoke", marks=pytest.mark.slow),
                        pytest.param("smoke-stack", marks=pytest.mark.slow)])
def case(request) -> Case:
    cases = request.getfixturevalue("slow_cases" if request.param.startswith("smoke") else "fast_cases")
    return cases[request.param]


# --- the new side ---------------------------------------------------------------------------------

_PREDICTORS: dict[Path, Any] = {}


def new_predictor(case: Case):
    """The current code's Predictor for the bundle (loaded once per bundle)."""
    from emoscope.predict import Predictor

    if case.bundle not in _PREDICTORS:
        _PREDICTORS[case.bundle] = Predictor(case.bundle)
    return _PREDICTORS[case.bundle]


def new_explanation(predictor, call: dict[str, Any]) -> dict[str, Any]:
    from emoscope.explain import explain

    try:
        raw = explain(predictor, call["text"], call["method"], call["labels"], call["params"]).to_json()
    except Exception as exc:
        return {"error": [type(exc).__name__, str(exc)]}
    raw.pop("runtime_s", None)
    return {"result": json.loads(json.dumps(raw))}


def first_difference(old: Any, new: Any, where: str = "") -> str | None:
    """Where two JSON values first differ (NaN equals NaN), or None."""
    if isinstance(old, dict) and isinstance(new, dict):
        if list(old) != list(new):
            return f"{where or '/'}: keys {list(old)} != {list(new)}"
        for key in old:
            found = first_difference(old[key], new[key], f"{where}/{key}")
            if found:
                return found
        return None
    if isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            return f"{where}: length {len(old)} != {len(new)}"
        for i, (a, b) in enumerate(zip(old, new)):
            found = first_difference(a, b, f"{where}[{i}]")
            if found:
                return found
        return None
    if isinstance(old, float) and isinstance(new, float) and math.isnan(old) and math.isnan(new):
        return None
    if type(old) is not type(new) or old != new:
        return f"{where}: old {old!r} != new {new!r}"
    return None


def check_explanations(case: Case, method: str | None) -> int:
    """Explain each planned call of ``method`` (None: the refusals) with the new code, compare."""
    old = json.loads((case.reference / "explanations.json").read_text(encoding="utf-8"))
    predictor = new_predictor(case)
    checked = 0
    for call, recorded in zip(case.calls, old):
        if call.get("refusal", False) != (method is None) or method is not None and call["method"] != method:
            continue
        assert ("error" in recorded) == (method is None), f"{case.name}: the old code gave {recorded} for {call}"
        found = first_difference(recorded, new_explanation(predictor, call))
        assert found is None, (f"{case.name}: {call['method']} of {call['text'][:40]!r} labels={call['labels']} "
                               f"params={call['params']} differs at {found}")
        checked += 1
    return checked


# --- probabilities, labels, thresholds -----------------------------------------------------------


def _assert_same_array(old: np.ndarray, new: np.ndarray, what: str) -> None:
    new = np.asarray(new)
    assert new.dtype == old.dtype and new.shape == old.shape, f"{what}: {new.dtype}{new.shape} != {old.dtype}{old.shape}"
    if not np.array_equal(old, new, equal_nan=True):
        i = tuple(int(k) for k in np.argwhere(~((old == new) | (np.isnan(old) & np.isnan(new))))[0])
        raise AssertionError(f"{what}: first difference at {i}: old {old[i]!r} new {new[i]!r} "
                             f"(max |diff| {np.nanmax(np.abs(old.astype(np.float64) - new)):.3g})")


def test_probabilities_of_a_batch_are_bit_identical(case):
    """predict_proba over all texts at once (several length-sorted batches)."""
    old = np.load(case.reference / "probs.npy")
    _assert_same_array(old, new_predictor(case).predict_proba(case.texts), f"{case.name} probabilities")


def test_probabilities_one_text_at_a_time_are_bit_identical(case):
    """predict_proba per text (no padding against other texts)."""
    old = np.load(case.reference / "probs_single.npy")
    predictor = new_predictor(case)
    new = np.concatenate([predictor.predict_proba([t]) for t in case.texts])
    _assert_same_array(old, new, f"{case.name} one-text probabilities")


def test_labels_and_thresholds_are_identical(case):
    predictor = new_predictor(case)
    assert list(predictor.labels) == json.loads((case.reference / "labels.json").read_text(encoding="utf-8"))
    _assert_same_array(np.load(case.reference / "thresholds.npy"), np.asarray(predictor.thresholds),
                       f"{case.name} thresholds")


# --- explanations ----------------------------------------------------------------------------------


def test_lime_explanations_are_identical(case):
    assert check_explanations(case, "lime") >= len(TEXTS[:4])


def test_attention_explanations_are_identical(case):
    assert check_explanations(case, "attention") >= len(TEXTS[:4])


def test_ig_explanations_are_identical(case):
    assert check_explanations(case, "ig") >= len(TEXTS[:4])


def test_explain_refuses_the_same_inputs_with_the_same_message(case):
    assert check_explanations(case, None) == 2


# --- the command line --------------------------------------------------------------------------------


def cli_result(case: Case, name: str) -> tuple[str, str]:
    """The stdout of one CLI run on each side, after checking both exited 0."""
    for side, folder in (("old", case.old_cli), ("new", case.new_cli)):
        rc = (folder / f"{name}.rc").read_text(encoding="utf-8")
        stderr = (folder / f"{name}.stderr").read_text(encoding="utf-8")
        assert rc == "0", f"{case.name}: the {side} CLI's {name} exited {rc}:\n{stderr[-4000:]}"
    return tuple((folder / f"{name}.stdout").read_text(encoding="utf-8") for folder in (case.old_cli, case.new_cli))


def assert_same_text(old: str, new: str, what: str) -> None:
    if old != new:
        old_lines, new_lines = old.splitlines(), new.splitlines()
        i = next((k for k, (a, b) in enumerate(zip(old_lines, new_lines)) if a != b), min(len(old_lines), len(new_lines)))
        raise AssertionError(f"{what} differs at line {i + 1}:\nold: {old_lines[i:i + 1]}\nnew: {new_lines[i:i + 1]}")


def assert_same_file(case: Case, filename: str) -> None:
    old, new = (case.old_cli / filename).read_bytes(), (case.new_cli / filename).read_bytes()
    if old != new:
        assert_same_text(old.decode("utf-8", "replace"), new.decode("utf-8", "replace"), f"{case.name}: {filename}")
        raise AssertionError(f"{case.name}: {filename} differs in bytes")


def test_cli_predict_text_json_is_identical(case):
    old, new = cli_result(case, "predict-json")
    assert_same_text(old, new, f"{case.name}: predict --text --json")


def test_cli_predict_text_report_is_identical(case):
    old, new = cli_result(case, "predict-report")
    assert_same_text(old, new, f"{case.name}: predict --text")


def test_cli_predict_file_csv_is_identical(case):
    old, new = cli_result(case, "predict-csv")
    assert_same_text(old, new, f"{case.name}: predict --input (stdout)")
    assert_same_file(case, "out.csv")


def test_cli_predict_file_jsonl_in_chunks_is_identical(case):
    old, new = cli_result(case, "predict-jsonl")
    assert_same_text(old, new, f"{case.name}: predict --output .jsonl (stdout)")
    assert_same_file(case, "out.jsonl")


def test_cli_evaluate_report_and_metrics_json_are_identical(case):
    old, new = cli_result(case, "evaluate")
    assert_same_text(old, new, f"{case.name}: evaluate (stdout)")
    assert_same_file(case, "metrics.json")  # no timing fields in it


def test_cli_evaluate_at_threshold_05_is_identical(case):
    old, new = cli_result(case, "evaluate-05")
    assert_same_text(old, new, f"{case.name}: evaluate --threshold-05")


def _explain_json(case: Case, folder: Path, filename: str) -> dict[str, Any]:
    raw = json.loads((folder / filename).read_text(encoding="utf-8"))
    raw.pop("runtime_s")  # the only timing in it
    return raw


@pytest.mark.parametrize("run, filename", [("explain-ig", "ig.json"), ("explain-lime", "lime.json")])
def test_cli_explain_json_with_faithfulness_is_identical(case, run, filename):
    old, new = cli_result(case, run)
    assert_same_text(old, new, f"{case.name}: {run} (stdout)")
    found = first_difference(_explain_json(case, case.old_cli, filename), _explain_json(case, case.new_cli, filename))
    assert found is None, f"{case.name}: {filename} differs at {found}"


def test_cli_explain_html_is_identical(case):
    old, new = cli_result(case, "explain-html")
    assert_same_text(old, new, f"{case.name}: explain --format html (stdout)")
    assert_same_file(case, "attention.html")


def _without_seconds(stdout: str) -> str:
    """The faithfulness table with its 'seconds per text' column blanked (a timing)."""
    lines = []
    for line in stdout.splitlines():
        cells = line.split(" | ")
        if line.startswith("| ") and len(cells) == 7 and not line.startswith("| method"):
            cells[5] = "-"
        lines.append(" | ".join(cells))
    return "\n".join(lines)


def test_cli_explain_evaluate_faithfulness_is_identical(case):
    old, new = cli_result(case, "explain-evaluate")
    assert_same_text(_without_seconds(old), _without_seconds(new), f"{case.name}: explain --evaluate (stdout)")
    tables = []
    for folder in (case.old_cli, case.new_cli):
        raw = json.loads((folder / "faithfulness.json").read_text(encoding="utf-8"))
        for row in raw["results"].values():
            row.pop("seconds", None)  # runtime per text
        tables.append(raw)
    found = first_difference(*tables)
    assert found is None, f"{case.name}: explain --evaluate JSON differs at {found}"
