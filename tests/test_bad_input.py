"""Bad input, everywhere (issue 16, item 1): every malformed input to predict, explain, evaluate and
train is one line on stderr with exit code 2, never a traceback; outputs appear whole or not at all;
no input file is modified; ``--overwrite`` replaces only a bundle.

Each case runs the real command (``emoscope.cli.main``) on the tiny bundle. Where an output is wrong,
the model is given as a folder that does not exist: the output's error coming first shows it is
checked before any work. The property tests at the end feed random bytes and random Unicode to
predict and explain.
"""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_rows, write_brighter_csv
from emoscope.cli import main
from emoscope.errors import EmoScopeError, InputError

NO_MODEL = "/nonexistent-bundle"  # an output or input error must come before the model loads


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def refused(capsys, *args: str) -> str:
    """Run a command that must fail: exit 2, one line (warnings aside), no traceback; the line."""
    code, _, err = run(capsys, *args)
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("warning:")]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def random_bytes_as_argv(n: int, seed: int) -> str:
    """What ``--text "$(head -c N /dev/urandom)"`` becomes in Python: bytes decoded with
    surrogateescape (the shell drops NUL bytes)."""
    data = random.Random(seed).randbytes(n).replace(b"\x00", b"")
    return os.fsdecode(data)


# --- predict --text and explain: text that cannot be encoded ------------------------------------------


@pytest.mark.parametrize("command", ["predict", "explain"])
@pytest.mark.parametrize("text, message", [
    (random_bytes_as_argv(4096, 1), "holds a lone surrogate"),
    ("\udc80 hi", "holds a lone surrogate \\udc80 at character 1"),
    ("happy\x00day", "holds a NUL character at character 6"),
])
def test_text_that_cannot_be_encoded_is_refused(capsys, tiny_bundle, command, text, message):
    extra = ["--method", "attention"] if command == "explain" else []
    line = refused(capsys, command, "--model", tiny_bundle, "--text", text, *extra)
    assert message in line and line.startswith(f"emoscope {command}: error: the text")


def test_control_characters_that_encode_are_kept(capsys, tiny_bundle):
    # U+0092 is in SemEval-2018 en train; control characters encode, so they are read as typed
    code, out, err = run(capsys, "predict", "--model", tiny_bundle, "--text", "happy \x92 day \x1b[31m", "--json")
    assert code == 0, err
    assert set(json.loads(out)["probabilities"]) == {"anger", "fear", "joy", "sadness"}


# --- predict --input -----------------------------------------------------------------------------------


def _jsonl(path: Path, *lines: str) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_a_lone_surrogate_in_a_jsonl_row_is_refused_by_line(capsys, tiny_bundle, tmp_path):
    src = _jsonl(tmp_path / "in.jsonl", '{"text": "happy"}', '{"text": "\\udc80 hi"}')
    line = refused(capsys, "predict", "--model", tiny_bundle, "--input", src, "--output", tmp_path / "out.csv")
    assert "in.jsonl: line 2: the text holds a lone surrogate \\udc80" in line
    assert not (tmp_path / "out.csv").exists()


def test_nul_anywhere_in_a_file_is_refused_by_line(capsys, tiny_bundle, tmp_path):
    rows = [{"text": f"happy day number {i}"} for i in range(5000)]  # NUL well past the first 64 KiB
    src = tmp_path / "in.csv"
    with src.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["text"])
        writer.writeheader()
        writer.writerows(rows)
    src.write_bytes(src.read_bytes() + b"sad\x00day\n")
    line = refused(capsys, "predict", "--model", tiny_bundle, "--input", src, "--output", tmp_path / "out.csv")
    assert "line 5002 holds a NUL byte" in line and "binary" in line


@pytest.mark.parametrize("value, kind", [("12345", "a number"), ('["x"]', "an array"), ("true", "a boolean"),
                                         ('{"a": 1}', "an object")])
def test_a_text_that_is_not_a_string_is_refused_by_line(capsys, tiny_bundle, tmp_path, value, kind):
    src = _jsonl(tmp_path / "in.jsonl", '{"text": "happy"}', f'{{"text": {value}}}')
    line = refused(capsys, "predict", "--model", tiny_bundle, "--input", src, "--output", tmp_path / "out.csv")
    assert f"line 2: 'text' is {kind}" in line and "not text" in line


def test_jsonl_to_csv_keeps_every_key_of_every_row(capsys, tiny_bundle, tmp_path):
    src = _jsonl(tmp_path / "in.jsonl", '{"id": 1, "text": "happy"}', '{"text": "sad", "source": "web", "tags": ["a"]}',
                 '{"text": null, "id": 3}')
    code, out, err = run(capsys, "predict", "--model", tiny_bundle, "--input", src, "--output", tmp_path / "out.csv",
                         "--quiet")
    assert code == 0, err
    assert out.strip() == f"2 of 3 rows predicted into {tmp_path / 'out.csv'}; 1 rows with empty text left blank"
    with (tmp_path / "out.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:4] == ["id", "text", "source", "tags"]
    assert [r["source"] for r in rows] == ["", "web", ""] and rows[1]["tags"] == '["a"]'
    assert rows[2]["id"] == "3" and rows[2]["prob_joy"] == "" and rows[0]["prob_joy"] != ""


def test_a_cell_over_pythons_csv_limit_is_read_and_its_text_cut(capsys, tiny_bundle, tmp_path):
    from emoscope.predict import Predictor
    from emoscope.text import MAX_CHARS, truncate

    long_text = "happy day " * 20_000  # 200,000 characters: over csv's default 131,072
    src = tmp_path / "in.csv"
    with src.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([["id", "text"], ["1", long_text], ["2", "sad"]])
    with pytest.warns(UserWarning, match=r"1 text\(s\) have more than 20,000 characters.*\(lines 2\)"):
        code, out, err = run(capsys, "predict", "--model", tiny_bundle, "--input", src, "--output",
                             tmp_path / "out.csv", "--quiet")
    assert code == 0, err
    with (tmp_path / "out.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["text"] == long_text  # the output keeps the input as it was
    expected = Predictor(tiny_bundle).predict_proba([truncate(long_text, MAX_CHARS)[0]])[0][0]
    assert float(rows[0]["prob_anger"]) == pytest.approx(expected, abs=1e-5)


def test_a_cell_over_the_field_limit_is_refused_by_line(capsys, tiny_bundle, tmp_path):
    from emoscope.data.tables import FIELD_LIMIT

    src = tmp_path / "in.csv"
    src.write_text('id,text\n1,happy\n2,"never closed\n' + "x" * (FIELD_LIMIT + 10) + "\n", encoding="utf-8")
    line = refused(capsys, "predict", "--model", tiny_bundle, "--input", src, "--output", tmp_path / "out.csv")
    assert "line 3: malformed CSV row" in line and "never closed" in line


@pytest.mark.parametrize("output, message", [
    ("missing/out.csv", "the folder {tmp}/missing does not exist"),
    (".", "is a directory"),
    ("out.xlsx", "unsupported file type '.xlsx'"),
])
def test_a_bad_output_is_refused_before_any_work(capsys, tmp_path, output, message):
    src = _jsonl(tmp_path / "in.jsonl", '{"text": "happy"}')
    target = tmp_path / output if output != "." else tmp_path
    line = refused(capsys, "predict", "--model", NO_MODEL, "--input", src, "--output", target)
    assert message.format(tmp=tmp_path) in line and "bundle" not in line


def test_the_output_may_not_be_the_input(capsys, tmp_path):
    src = write_brighter_csv(tmp_path / "in.csv", make_rows(5, seed=1))
    before = src.read_bytes()
    for same in (src, tmp_path / "." / "in.csv", tmp_path / "link.csv"):
        if same.name == "link.csv":
            os.link(src, same)  # a hard link is the same file under another name
        line = refused(capsys, "predict", "--model", NO_MODEL, "--input", src, "--output", same)
        assert "is the input file" in line
    assert src.read_bytes() == before


@pytest.mark.parametrize("content, message", [
    (b"", "the file is empty"),
    (b"\n\n", "the file is empty"),
    (b"id,text\n", "no rows after the header"),
    ("id,text\n1,hi\n".encode("utf-16"), "UTF-16"),
    (b"id,text,id\n1,hi,2\n", "duplicate column name(s) id"),
    ("text\ncaf\xe9\n".encode("latin-1"), "line 2 is not valid UTF-8"),
    (b'text\n"a"b\n', "line 2: malformed CSV row"),
])
def test_malformed_csv_files_are_one_line_errors(capsys, tiny_bundle, tmp_path, content, message):
    src = tmp_path / "in.csv"
    src.write_bytes(content)
    line = refused(capsys, "predict", "--model", tiny_bundle, "--input", src, "--output", tmp_path / "out.csv")
    assert message in line
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize("lines, message", [
    (['{"text": "hi"', ], "line 1 is not valid JSON"),
    (['["hi"]'], "line 1 is an array, not a JSON object"),
    (['{"tweet": "hi"}'], "line 1 has no 'text' field"),
    (["", "  "], "no rows; nothing to predict"),
    (["[" * 100_000 + "]" * 100_000], "line 1"),
])
def test_malformed_jsonl_files_are_one_line_errors(capsys, tiny_bundle, tmp_path, lines, message):
    src = _jsonl(tmp_path / "in.jsonl", *lines)
    assert message in refused(capsys, "predict", "--model", tiny_bundle, "--input", src, "--output", tmp_path / "o.csv")


def test_bom_crlf_and_lone_cr_files_are_read(capsys, tiny_bundle, tmp_path):
    outputs = []
    for name, content in (("bom-crlf.csv", b"\xef\xbb\xbfid,text\r\n1,happy\r\n2,sad\r\n"),
                          ("cr.csv", b"id,text\r1,happy\r2,sad\r"), ("plain.csv", b"id,text\n1,happy\n2,sad\n")):
        (tmp_path / name).write_bytes(content)
        code, _, err = run(capsys, "predict", "--model", tiny_bundle, "--input", tmp_path / name, "--output",
                           tmp_path / f"out-{name}", "--quiet")
        assert code == 0, err
        outputs.append((tmp_path / f"out-{name}").read_text(encoding="utf-8"))
    assert outputs[0] == outputs[1] == outputs[2] and outputs[0].startswith("id,text,prob_")


@pytest.mark.parametrize("args, message", [
    (["--chunk-size", "0"], "--chunk-size must be a whole number of rows, at least 1; got 0"),
    (["--chunk-size", "-3"], "at least 1; got -3"),
])
def test_a_bad_chunk_size_is_refused(capsys, tmp_path, args, message):
    src = _jsonl(tmp_path / "in.jsonl", '{"text": "happy"}')
    assert message in refused(capsys, "predict", "--model", NO_MODEL, "--input", src, "--output", tmp_path / "o.csv",
                              *args)


def test_a_folder_as_input_and_a_file_as_model(capsys, tiny_bundle, tmp_path):
    assert "is a folder, not a file" in refused(capsys, "predict", "--model", NO_MODEL, "--input", tmp_path,
                                                "--output", tmp_path / "o.csv")
    assert "is a file; a model bundle is a directory" in refused(
        capsys, "predict", "--model", tiny_bundle / "manifest.json", "--text", "hi")


# --- explain and evaluate ------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["explain", "evaluate"])
@pytest.mark.parametrize("output, message", [("missing/x.json", "does not exist"), (".", "is a directory")])
def test_explain_and_evaluate_refuse_a_bad_output_before_any_work(capsys, tmp_path, tiny_data, command, output,
                                                                  message):
    target = tmp_path / output if output != "." else tmp_path
    args = ["--text", "happy"] if command == "explain" else ["--data", tiny_data["dev"]]
    line = refused(capsys, command, "--model", NO_MODEL, *args, "--output", target)
    assert message in line and "bundle" not in line


@pytest.mark.parametrize("args, message", [
    (["--method", "lime", "--samples", "0"], "lime: samples must be at least"),
    (["--method", "ig", "--steps", "0"], "ig: n_steps must be at least 2, got 0"),
    (["--evaluate", "--data", "{dev}", "--n", "0"], "--n must be at least 1"),
    (["--method", "attention", "--label", "nope"], "unknown label(s) nope"),
    (["--text", "x" * 20_001], "explanations take at most 20,000"),
])
def test_explain_refuses_bad_options(capsys, tiny_bundle, tiny_data, args, message):
    args = [a.replace("{dev}", str(tiny_data["dev"])) for a in args]
    if "--text" not in args and "--evaluate" not in args:
        args = ["--text", "happy", *args]
    assert message in refused(capsys, "explain", "--model", tiny_bundle, *args)


def _labelled(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([["text", "anger", "fear", "joy", "sadness"], *rows])
    return path


def test_evaluate_reads_a_huge_cell_and_cuts_its_text(capsys, tiny_bundle, tmp_path):
    src = _labelled(tmp_path / "d.csv", [["happy " * 30_000, "0", "0", "1", "0"], ["sad", "0", "0", "0", "1"]])
    with pytest.warns(UserWarning, match=r"1 text\(s\) longer than 20,000 characters were cut.*\(lines 2\)"):
        code, out, err = run(capsys, "evaluate", "--model", tiny_bundle, "--data", src)
    assert code == 0, err
    assert "(2 texts)" in out


@pytest.mark.parametrize("make, message", [
    (lambda p: _labelled(p, [["happy", "0", "0", "1", "0"]] * 11 + [["sad", "0", "0", "2", "1"]]),
     "line 13: label column 'joy' must be 0 or 1, found '2'"),
    (lambda p: p.write_text("text,joy\nhappy,yes\nsad,no\n") and p, "column 'joy' has 'yes' on line 2"),
    (lambda p: p.write_bytes(b"text,joy\nhappy,1\nsad\x00,0\n") and p, "line 3 (byte offset"),
    (lambda p: p.write_bytes(b"text,anger\n") and p, "no data rows after the header"),
    (lambda p: p.mkdir() or p, "not a file"),
])
def test_evaluate_refuses_malformed_data(capsys, tiny_bundle, tmp_path, make, message):
    src = make(tmp_path / "d.csv")
    assert message in refused(capsys, "evaluate", "--model", tiny_bundle, "--data", src)


def test_a_dataset_spec_with_a_typo_names_the_valid_choices(capsys, tiny_bundle):
    line = refused(capsys, "evaluate", "--model", tiny_bundle, "--data", "brighter:eng:dve")
    assert "unknown split 'dve'; valid: train, dev, test" in line


# --- bundles whose manifest is valid JSON with the wrong shapes ----------------------------------------


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(files=list(m["files"])), "'files' has the wrong type"),
    (lambda m: m.update(model="encoder-classifier"), "model must be a JSON object"),
    (lambda m: m["model"].update(path=["model"]), "'path' has the wrong type"),
    (lambda m: m["model"].pop("kind"), "kind"),
    (lambda m: m["model"].update(max_length=4096), "more than the 128 tokens this encoder takes"),
])
@pytest.mark.parametrize("command", ["predict", "evaluate", "explain"])
def test_a_malformed_manifest_is_one_line_for_every_command(capsys, tiny_bundle, tiny_data, tmp_path, edit, message,
                                                            command):
    bundle = shutil.copytree(tiny_bundle, tmp_path / "b")
    raw = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    edit(raw)
    (bundle / "manifest.json").write_text(json.dumps(raw), encoding="utf-8")
    args = ["--data", tiny_data["dev"]] if command == "evaluate" else ["--text", "happy"]
    assert message in refused(capsys, command, "--model", bundle, *args)


# --- train ---------------------------------------------------------------------------------------------


def _recipe(tmp_path: Path, tiny_encoder: Path, tiny_data: dict[str, Path], training: str = "", loss: str = "",
            max_length: int = 32) -> Path:
    path = tmp_path / "r.toml"
    path.write_text(f"""name = "r"
[data]
train = "{tiny_data['train']}"
validation = "{tiny_data['dev']}"
[[encoders]]
source = "{tiny_encoder}"
max_length = {max_length}
[training]
epochs = 1
{training}
[loss]
{loss}
""", encoding="utf-8")
    return path


@pytest.mark.parametrize("training, loss, message", [
    ("lr = inf", "", "training.lr: expected a finite number, got inf"),
    ("lr = nan", "", "training.lr: expected a finite number, got nan"),
    ("weight_decay = inf", "", "training.weight_decay: expected a finite number"),
    ("grad_clip = -inf", "", "training.grad_clip: expected a finite number"),
    ("lr = 10.0", "", "training.lr must be > 0 and at most 1"),
    ("", 'name = "focal"\ngamma = inf', "loss.gamma: expected a finite number"),
    ("", 'name = "hybrid"\ntemperature = nan', "loss.temperature: expected a finite number"),
    ("seed = -1", "", "training.seed must be a whole number from 0 to 4294967295, got -1"),
    ("seed = 4294967296", "", "got 4294967296"),
])
def test_recipe_values_fatal_later_are_refused_up_front(capsys, tmp_path, tiny_encoder, tiny_data, training, loss,
                                                        message):
    recipe = _recipe(tmp_path, tiny_encoder, tiny_data, training, loss)
    assert message in refused(capsys, "train", "--config", recipe, "--output", tmp_path / "out", "--quiet")
    assert not (tmp_path / "out").exists()


def test_max_length_beyond_the_encoders_positions_is_refused_naming_both(capsys, tmp_path, tiny_encoder, tiny_data):
    recipe = _recipe(tmp_path, tiny_encoder, tiny_data, max_length=512)
    line = refused(capsys, "train", "--config", recipe, "--output", tmp_path / "out", "--quiet")
    assert "max_length 512 is more than the 128 tokens this encoder takes" in line


def test_a_long_text_never_crashes_a_model_at_its_full_positions(tmp_path, tiny_encoder, tiny_data):
    from conftest import tiny_config
    from emoscope.config import EncoderConfig
    from emoscope.predict import Predictor
    from emoscope.training import train

    config = tiny_config(tiny_encoder, tiny_data, epochs=1)
    config = config.replace(encoders=(EncoderConfig(source=str(tiny_encoder), max_length=128),))
    bundle = train(config, tmp_path / "b", progress=False, log=lambda _: None)
    [result] = Predictor(bundle).predict(["happy furious day " * 3000])
    assert len(result.probabilities) == 4


@pytest.mark.parametrize("make", [
    lambda p: (p.mkdir(), (p / "thesis.txt").write_text("years of work")),
    lambda p: (p.mkdir(), (p / "manifest.json").write_text('{"format": "someone-else"}')),
    lambda p: p.write_text("a file"),
])
def test_overwrite_replaces_only_a_bundle(capsys, tmp_path, tiny_encoder, tiny_data, make):
    target = tmp_path / "out"
    make(target)
    before = sorted((p.name, p.read_bytes()) for p in (target.iterdir() if target.is_dir() else [target]))
    recipe = _recipe(tmp_path, tiny_encoder, tiny_data)
    line = refused(capsys, "train", "--config", recipe, "--output", target, "--overwrite", "--quiet")
    assert "--overwrite replaces only an EmoScope bundle" in line and "nothing was deleted" in line
    assert sorted((p.name, p.read_bytes()) for p in (target.iterdir() if target.is_dir() else [target])) == before


def test_overwrite_replaces_a_bundle(capsys, tmp_path, tiny_encoder, tiny_data, tiny_bundle):
    target = shutil.copytree(tiny_bundle, tmp_path / "out")
    (target / "old-marker").write_text("x")
    code, _, err = run(capsys, "train", "--config", _recipe(tmp_path, tiny_encoder, tiny_data), "--output", target,
                       "--overwrite", "--quiet")
    assert code == 0, err
    assert not (target / "old-marker").exists() and (target / "manifest.json").exists()


def test_a_second_run_into_the_same_output_is_refused_while_the_first_runs(capsys, tmp_path, tiny_encoder, tiny_data):
    target = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from emoscope.fsutil import lock_output; "
         f"lock_output({str(target)!r}); print('locked', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        recipe = _recipe(tmp_path, tiny_encoder, tiny_data)
        for extra in ([], ["--overwrite"]):
            line = refused(capsys, "train", "--config", recipe, "--output", target, "--quiet", *extra)
            assert f"is being written by another training run (process {holder.pid})" in line
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    code, _, err = run(capsys, "train", "--config", recipe, "--output", target, "--quiet")  # the lock died with it
    assert code == 0, err


def test_a_bundle_is_never_renamed_onto_one_that_appeared_meanwhile(tmp_path):
    from emoscope.fsutil import OutputExists, atomic_directory

    target = tmp_path / "b"
    with pytest.raises(OutputExists, match="appeared while this run was writing it"):
        with atomic_directory(target, overwrite=False) as staging:
            (staging / "mine").write_text("new")
            target.mkdir()
            (target / "theirs").write_text("first")
    assert [p.name for p in target.iterdir()] == ["theirs"]
    assert [p.name for p in tmp_path.iterdir() if p.name != "b"] == []  # no staging folder left


# --- property-style: random bytes and random Unicode never raise anything but EmoScopeError ------------

PIECES = [
    "\udc80", "\ud83d", "\udfff",  # lone surrogates
    "\u202e", "\u202d", "\u2066", "\u2069", "\u200f", "\u061c",  # bidi controls
    "\x00", "\x01", "\x1b[31m", "\x7f", "\x85", "\x9b",  # NUL, C0, C1
    "\u0301", "\u0651", "\u064b\u064b", "e\u0301\u0302\u0303",  # combining marks
    "# heading\n", "**bold**", "[link](http://x.org)", "![p](http://attacker/t.png)", "`code`", "<script>x</script>",
    "\n\n", " ", "\t", "\u3000", "\u200b", "\ufeff", "\ufffd", "\uffff", "\U0010ffff",
    "😀", "👩\u200d👩\u200d👧", "🇸🇦", "happy", "حزين", "غاضب جدا", "ـــــ",
]


def random_texts(n: int, seed: int) -> list[str]:
    """Random bytes as argv gives them, mixes of the pieces above, the same without the pieces that
    cannot be encoded, and random code points from every plane (surrogates excluded)."""
    rng = random.Random(seed)
    encodable = [p for p in PIECES if "\x00" not in p and not any(0xD800 <= ord(c) <= 0xDFFF for c in p)]
    texts = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            texts.append(random_bytes_as_argv(rng.randint(1, 300), seed * 1000 + i))
        elif kind in (1, 2):
            texts.append("".join(rng.choice(PIECES if kind == 1 else encodable) for _ in range(rng.randint(1, 12))))
        else:
            points = [rng.choice([rng.randint(1, 0xD7FF), rng.randint(0xE000, 0xFFFF), rng.randint(0x10000, 0x10FFFF)])
                      for _ in range(rng.randint(1, 40))]
            texts.append("".join(map(chr, points)))
    return texts


def _expected_to_work(text: str) -> bool:
    from emoscope.text import unencodable

    return bool(text.strip()) and unencodable(text) is None


@pytest.fixture(scope="module")
def predictor(tiny_bundle):
    from emoscope.predict import Predictor

    return Predictor(tiny_bundle, device="cpu")


def test_predict_takes_any_text_or_refuses_it_in_one_line(predictor):
    for text in random_texts(160, seed=3):
        try:
            [result] = predictor.predict([text])
        except InputError as exc:
            assert not _expected_to_work(text), f"{text!r} refused: {exc}"
            assert "\n" not in str(exc)
            continue
        assert _expected_to_work(text), repr(text)
        assert all(0.0 <= p <= 1.0 for p in result.probabilities.values())


def test_explain_takes_any_text_or_refuses_it_in_one_line(predictor):
    from emoscope.explain import ExplainModel, explain

    model = ExplainModel(predictor)
    for i, text in enumerate(random_texts(48, seed=4)):
        method, params = [("attention", {}), ("lime", {"samples": 10}), ("ig", {"n_steps": 2})][i % 3]
        try:
            exp = explain(model, text, method, ["joy"], params)
        except EmoScopeError as exc:
            assert not _expected_to_work(text), f"{text!r} refused by {method}: {exc}"
            continue
        assert _expected_to_work(text), repr(text)
        assert len(exp.scores("joy")) == len(exp.words)
        json.dumps(exp.to_json())


def test_a_file_of_random_texts_is_predicted_or_refused_by_line(predictor, tmp_path):
    good = [t for t in random_texts(60, seed=5) if _expected_to_work(t)]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in good), encoding="utf-8")
    stats = predictor.predict_file(src, tmp_path / "out.csv")
    assert stats["rows"] == len(good) and stats["predicted"] == len(good)
    bad = good[:3] + ["ok \udc80"] + good[3:]
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in bad), encoding="utf-8")
    with pytest.raises(InputError, match="line 4: the text holds a lone surrogate"):
        predictor.predict_file(src, tmp_path / "out2.csv")
    assert not (tmp_path / "out2.csv").exists()


def test_random_bytes_through_the_command_line_never_give_a_traceback(capsys, tiny_bundle, tmp_path):
    for seed in range(4):
        text = random_bytes_as_argv(2048, seed)
        for command, extra in (("predict", []), ("explain", ["--method", "attention"])):
            code, _, err = run(capsys, command, "--model", tiny_bundle, "--text", text, *extra)
            assert code == 2 and "Traceback" not in err and err.count("\n") == 1, err
        (tmp_path / "in.csv").write_bytes(random.Random(seed).randbytes(4096))
        code, _, err = run(capsys, "predict", "--model", tiny_bundle, "--input", tmp_path / "in.csv", "--output",
                           tmp_path / "out.csv")
        assert code == 2 and "Traceback" not in err, err
