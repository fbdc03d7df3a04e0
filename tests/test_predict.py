"""Predictor: same answers as the training loop, batching, files, and bad input."""

import csv
import json

import numpy as np
import pytest

from emoscope.bundle import read_manifest, read_validation
from emoscope.errors import InputError
from emoscope.predict import Predictor


@pytest.fixture(scope="module")
def predictor(tiny_bundle):
    return Predictor(tiny_bundle, device="cpu", batch_size=7)


def test_reproduces_the_validation_probabilities_saved_at_training(predictor, tiny_bundle):
    val = read_validation(tiny_bundle, read_manifest(tiny_bundle))
    np.testing.assert_allclose(predictor.predict_proba(val.texts), val.probs, atol=1e-5)


def test_batching_and_order_do_not_change_results(predictor):
    texts = ["happy day", "we were terrified and crying today", "غاضب جدا اليوم", "the day was sad", "سعيد"]
    one_by_one = np.vstack([predictor.predict_proba([t]) for t in texts])
    np.testing.assert_allclose(predictor.predict_proba(texts), one_by_one, atol=1e-5)


def test_cue_words_drive_labels(predictor):
    [angry, happy] = predictor.predict(["we went home furious", "سعيد اليوم في البيت"])
    assert "anger" in angry.labels and "joy" not in angry.labels
    assert "joy" in happy.labels and happy.language == "ar"
    assert set(angry.probabilities) == set(predictor.labels)


def test_custom_thresholds(predictor):
    [none] = predictor.predict(["happy"], thresholds=[1.0] * 4)
    [all_] = predictor.predict(["happy"], thresholds=[0.0] * 4)
    assert none.labels == [] and all_.labels == predictor.labels


@pytest.mark.parametrize("text", ["", "   \n\t "])
def test_empty_text_is_refused(predictor, text):
    with pytest.raises(InputError, match="empty"):
        predictor.predict([text])


def test_binary_garbage_is_refused(predictor):
    with pytest.raises(InputError, match="binary"):
        predictor.predict(["\x00\x01\x02PK\x03\x04"])


def test_non_string_is_refused(predictor):
    with pytest.raises(InputError, match="not a string"):
        predictor.predict([b"bytes"])


def test_huge_text_is_truncated_with_a_warning(predictor):
    text = "happy day " * 10_000  # 100,000 characters
    with pytest.warns(UserWarning, match="100,000 characters"):
        [result] = predictor.predict([text])
    assert result.truncated and "joy" in result.labels


def _write_csv(path, rows, delimiter=","):
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_csv_file_round_trip_keeps_columns_and_adds_predictions(predictor, tmp_path):
    rows = [{"id": str(i), "tweet": t, "extra": "x"} for i, t in enumerate(
        ["happy day", "", "خائف جدا", "furious, really", "sad"] * 7)]
    src = _write_csv(tmp_path / "in.csv", rows)
    stats = predictor.predict_file(src, tmp_path / "out.csv", text_column="tweet", chunk_size=4)
    assert stats == {"rows": 35, "predicted": 28, "empty": 7}
    with (tmp_path / "out.csv").open(encoding="utf-8") as f:
        out = list(csv.DictReader(f))
    assert list(out[0])[:3] == ["id", "tweet", "extra"]
    assert [r["id"] for r in out] == [r["id"] for r in rows]
    for label in predictor.labels:
        assert f"prob_{label}" in out[0] and label in out[0]
    direct = predictor.predict_proba(["furious, really"])[0]
    assert float(out[3]["prob_anger"]) == pytest.approx(direct[0], abs=1e-5)
    assert out[1]["prob_anger"] == "" and out[1]["anger"] == ""


def test_jsonl_in_tsv_out(predictor, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps({"text": t, "n": i}, ensure_ascii=False) for i, t in enumerate(["happy", "حزين"])),
                   encoding="utf-8")
    predictor.predict_file(src, tmp_path / "out.tsv")
    lines = (tmp_path / "out.tsv").read_text(encoding="utf-8").splitlines()
    assert lines[0].split("\t")[:2] == ["text", "n"] and len(lines) == 3


def test_csv_without_text_column(predictor, tmp_path):
    src = _write_csv(tmp_path / "in.csv", [{"id": "1", "tweet": "happy"}])
    with pytest.raises(InputError, match=r"no column 'text' \(columns: id, tweet\).*--text-column"):
        predictor.predict_file(src, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


def test_non_utf8_file(predictor, tmp_path):
    src = tmp_path / "in.csv"
    src.write_bytes("text\nسعيد\n".encode("cp1256"))
    with pytest.raises(InputError, match="line 2 is not valid UTF-8"):
        predictor.predict_file(src, tmp_path / "out.csv")


def test_binary_file(predictor, tmp_path):
    src = tmp_path / "in.csv"
    src.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(InputError, match="binary"):
        predictor.predict_file(src, tmp_path / "out.csv")


def test_unsupported_extension(predictor, tmp_path):
    src = tmp_path / "in.xlsx"
    src.write_bytes(b"PK")
    with pytest.raises(InputError, match="unsupported file type"):
        predictor.predict_file(src, tmp_path / "out.csv")


def test_streaming_memory_is_bounded_by_chunk(predictor, tmp_path, monkeypatch):
    rows = [{"text": f"happy day {i}"} for i in range(100)]
    src = _write_csv(tmp_path / "in.csv", rows)
    seen = []
    original = predictor._probs
    monkeypatch.setattr(predictor, "_probs", lambda texts: seen.append(len(texts)) or original(texts))
    predictor.predict_file(src, tmp_path / "out.csv", chunk_size=16)
    assert max(seen) == 16 and sum(seen) == 100


def test_ragged_row_is_named(predictor, tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("id,text\n1,happy\n2,sad,extra,fields\n", encoding="utf-8")
    with pytest.raises(InputError, match="line 3 has more fields than the header"):
        predictor.predict_file(src, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


def test_predicts_in_the_precision_the_thresholds_were_tuned_in(tiny_bundle, tmp_path):
    """A bundle trained in fp32 (or one from before bundles said) predicts in fp32 even on a
    GPU; one trained in bf16 follows the device's default (bf16 on a GPU that has it)."""
    import shutil

    manifest = read_manifest(tiny_bundle)
    assert manifest.training["precision"] == "fp32"  # trained on this CPU
    assert Predictor(tiny_bundle, device="cpu").precision == "fp32"
    copy = tmp_path / "bf16"
    shutil.copytree(tiny_bundle, copy)
    raw = json.loads((copy / "manifest.json").read_text(encoding="utf-8"))
    raw["training"]["precision"] = "bf16"
    (copy / "manifest.json").write_text(json.dumps(raw), encoding="utf-8")
    bf16 = Predictor(copy, device="cpu", verify=False)
    assert bf16.precision is None
    # on a CPU the device default is fp32, so the answers are the fp32 ones
    texts = ["happy day", "غاضب جدا اليوم"]
    np.testing.assert_allclose(bf16.predict_proba(texts), Predictor(tiny_bundle, device="cpu").predict_proba(texts), atol=1e-6)
    del raw["training"]["precision"]
    (copy / "manifest.json").write_text(json.dumps(raw), encoding="utf-8")
    assert Predictor(copy, device="cpu", verify=False).precision == "fp32"


# --- bad input: texts that cannot be encoded, outputs whole or not at all, columns ---------------------


@pytest.mark.parametrize("texts, message", [
    (["\udc80 hi"], r"^the text holds a lone surrogate \\udc80 at character 1"),
    (["fine", "bad \udcff"], r"^text 1 holds a lone surrogate \\udcff at character 5"),
])
def test_text_that_cannot_be_encoded_is_refused_by_index(predictor, texts, message):
    with pytest.raises(InputError, match=message):
        predictor.predict(texts)
    with pytest.raises(InputError, match=message):
        predictor.predict_proba(texts)


def test_a_failure_midway_leaves_no_output_and_keeps_the_old_one(predictor, tmp_path, monkeypatch):
    src = _write_csv(tmp_path / "in.csv", [{"text": f"happy day {i}"} for i in range(40)])
    out = tmp_path / "out.csv"
    out.write_text("the previous output\n", encoding="utf-8")
    original, calls = predictor._probs, []

    def fail_on_the_second_chunk(texts):
        calls.append(len(texts))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(texts)

    monkeypatch.setattr(predictor, "_probs", fail_on_the_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        predictor.predict_file(src, out, chunk_size=16)
    assert out.read_text(encoding="utf-8") == "the previous output\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out.csv"]  # no partial file left


def test_every_row_is_checked_before_the_model_reads_one(predictor, tmp_path, monkeypatch):
    rows = [json.dumps({"text": f"happy {i}"}) for i in range(50)] + [json.dumps({"text": 7})]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(rows) + "\n", encoding="utf-8")
    monkeypatch.setattr(predictor, "_probs", lambda texts: pytest.fail("the model ran before the file was checked"))
    with pytest.raises(InputError, match=r"line 51: 'text' is a number \(7\), not text"):
        predictor.predict_file(src, tmp_path / "out.csv", chunk_size=8)


def test_jsonl_to_jsonl_keeps_each_rows_own_keys(predictor, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "happy", "a": 1}\n\n{"text": "sad", "b": {"x": [1]}, "id": "\\udc80"}\n', encoding="utf-8")
    predictor.predict_file(src, tmp_path / "out.jsonl")
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert set(out[0]) - {f"prob_{lab}" for lab in predictor.labels} - set(predictor.labels) == {"text", "a"}
    assert out[1]["b"] == {"x": [1]} and out[1]["id"] == "\udc80"  # a lone surrogate elsewhere round-trips


def test_input_columns_named_like_predictions_are_replaced_with_a_warning(predictor, tmp_path):
    src = _write_csv(tmp_path / "in.csv", [{"text": "happy", "joy": "gold"}])
    with pytest.warns(UserWarning, match=r"the input column\(s\) joy are replaced"):
        predictor.predict_file(src, tmp_path / "out.csv")
    with (tmp_path / "out.csv").open(encoding="utf-8") as f:
        header = next(csv.reader(f))
    assert header[:2] == ["text", "joy"] and header.count("joy") == 1


def test_thresholds_must_be_one_per_label(predictor, tmp_path):
    src = _write_csv(tmp_path / "in.csv", [{"text": "happy"}])
    for bad in ([0.5], [0.5] * 5, [2.0] * 4, [float("nan")] * 4):
        with pytest.raises(InputError, match="one threshold in \\[0, 1\\] per label"):
            predictor.predict(["happy"], thresholds=bad)
        with pytest.raises(InputError, match="one threshold in \\[0, 1\\] per label"):
            predictor.predict_file(src, tmp_path / "out.csv", thresholds=bad)


def test_two_writers_of_one_output_never_share_a_partial_file(predictor, tmp_path):
    from emoscope.fsutil import atomic_file

    with atomic_file(tmp_path / "out.csv") as a, atomic_file(tmp_path / "out.csv") as b:
        assert a != b and a.exists() and b.exists()
        a.write_text("a")
        b.write_text("b")
    assert (tmp_path / "out.csv").read_text() == "a"  # the last to finish wins, each whole
