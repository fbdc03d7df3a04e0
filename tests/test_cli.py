"""The emoscope command: results on stdout, one-line errors with exit code 2."""

import json
import subprocess
import sys

import pytest

from conftest import make_rows, write_brighter_csv
from emoscope.cli import main


def run_cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_predict_text(capsys, tiny_bundle):
    code, out, _ = run_cli(capsys, "predict", "--model", str(tiny_bundle), "--text", "happy happy day")
    assert code == 0
    assert out.startswith("labels: joy")
    assert "threshold" in out


def test_predict_text_json(capsys, tiny_bundle):
    code, out, _ = run_cli(capsys, "predict", "--model", str(tiny_bundle), "--text", "حزين اليوم", "--json")
    result = json.loads(out)
    assert code == 0 and "sadness" in result["labels"] and result["language"] == "ar"


def test_predict_file(capsys, tiny_bundle, tmp_path):
    src = write_brighter_csv(tmp_path / "in.csv", make_rows(10, seed=5))
    code, out, _ = run_cli(capsys, "predict", "--model", str(tiny_bundle), "--input", str(src),
                           "--output", str(tmp_path / "out.jsonl"), "--quiet")
    assert code == 0 and "10 of 10 rows" in out
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(rows) == 10 and {"prob_joy", "joy", "id", "text"} <= set(rows[0])


def test_evaluate_prints_and_writes_metrics(capsys, tiny_bundle, tiny_data, tmp_path):
    out_json = tmp_path / "m.json"
    code, out, _ = run_cli(capsys, "evaluate", "--model", str(tiny_bundle), "--data", str(tiny_data["dev"]),
                           "--output", str(out_json))
    metrics = json.loads(out_json.read_text())
    assert code == 0 and "macro" in out.lower()
    assert metrics["n_samples"] == 60 and set(metrics["per_class"]) == {"anger", "fear", "joy", "sadness"}
    for key in ("micro_f1", "macro_f1", "weighted_f1", "samples_f1", "jaccard", "hamming_loss", "roc_auc_macro"):
        assert 0.0 <= metrics[key] <= 1.0


@pytest.mark.parametrize("args, message", [
    (["predict", "--model", "/nonexistent", "--text", "hi"], "model bundle not found"),
    (["predict", "--model", "{bundle}", "--text", "   "], "empty"),
    (["predict", "--model", "{bundle}"], "either --text"),
    (["predict", "--model", "{bundle}", "--input", "x.csv"], "--input needs --output"),
    (["evaluate", "--model", "{bundle}", "--data", "brighter:xx:dev"], "xx"),
    (["train", "--config", "/nonexistent.toml"], "recipe file not found"),
    (["predict", "--model", "{bundle}", "--text", "\udc80"], "lone surrogate"),
    (["predict", "--model", "{bundle}", "--input", "{bundle}", "--output", "o.csv"], "is a folder, not a file"),
    (["explain", "--model", "{bundle}", "--text", "a\x00b"], "NUL character"),
    (["explain", "--model", "{bundle}", "--text", "hi", "--method", "lime", "--samples", "0"], "samples must be at least"),
    (["evaluate", "--model", "{bundle}", "--data", "{bundle}"], "not a file"),
    (["data", "/nonexistent.csv"], "file not found"),
    (["models", "prepare", "nope"], "unknown offline encoder source"),
])
def test_errors_are_one_line_with_exit_code_2(capsys, tiny_bundle, args, message):
    args = [a.replace("{bundle}", str(tiny_bundle)) for a in args]
    code, _, err = run_cli(capsys, *args)
    assert code == 2
    lines = [line for line in err.splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in err


def test_console_entry_point_runs_as_a_process(tiny_bundle):
    proc = subprocess.run([sys.executable, "-m", "emoscope.cli", "predict", "--model", str(tiny_bundle / "missing"),
                           "--text", "x"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "not found" in proc.stderr


def test_models_list(capsys):
    code, out, _ = run_cli(capsys, "models")
    assert code == 0
    for name in ("minilm-l6", "mpnet-base", "me5-small"):
        assert name in out


def test_evaluate_generic_file_with_another_text_column(capsys, tiny_bundle, tmp_path):
    rows = [{"tweet": r["text"], **{k: v for k, v in r.items() if k not in ("id", "text")}} for r in make_rows(12, seed=4)]
    src = write_brighter_csv(tmp_path / "mine.csv", rows)
    code, out, err = run_cli(capsys, "evaluate", "--model", str(tiny_bundle), "--data", str(src), "--text-column", "tweet")
    assert code == 0, err
    assert "12 texts" in out


def test_data_summary(capsys, tiny_data):
    code, out, _ = run_cli(capsys, "data", str(tiny_data["train"]))
    assert code == 0 and "160 texts" in out and "anger" in out
