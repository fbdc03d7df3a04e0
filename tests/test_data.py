"""Tests for emoscope.data: readers on small files built here, bad-file errors, Dataset,
stratified splitting, dataset specs, combining, and row counts of the real shared datasets."""

import re
from pathlib import Path

import numpy as np
import pytest

from emoscope.data import (
    Dataset,
    combine,
    default_data_root,
    iterative_stratified_split,
    load_dataset,
    read_brighter,
    read_goemotions,
    read_semeval2018,
    read_table,
    split_dataset,
    train_dev,
)
from emoscope.errors import ConfigError, DataError

SEMEVAL_LABELS = [
    "anger",
    "anticipation",
    "disgust",
    "fear",
    "joy",
    "love",
    "optimism",
    "pessimism",
    "sadness",
    "surprise",
    "trust",
]
SEMEVAL_HEADER = "\t".join(["ID", "Tweet", *SEMEVAL_LABELS])


def write(path: Path, content: str | bytes, newline: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.replace("\n", newline).encode("utf-8")
    path.write_bytes(content)
    return path


def brighter_file(tmp_path: Path, body: str, lang: str = "ary", **kwargs) -> Path:
    header = "id,text,anger,disgust,fear,joy,sadness,surprise\n"
    return write(tmp_path / lang / "train.csv", header + body, **kwargs)


def error_message(excinfo: pytest.ExceptionInfo) -> str:
    return str(excinfo.value)


# --- readers on good files -----------------------------------------------------------------------


def test_read_brighter_arabic_quoted_commas_crlf_and_bom(tmp_path):
    body = (
        'ary_train_1,"واش نتا مزيان، ولا لا؟",0,0,0,1,0,0\n'
        'ary_train_2,"قال ليا: ""سير فحالك""",1,1,0,0,1,0\n'
        "ary_train_3,I'm so happy today,0,0,0,1,0,1\n"
    )
    content = "\ufeffid,text,anger,disgust,fear,joy,sadness,surprise\n" + body
    path = write(tmp_path / "ary" / "train.csv", content, newline="\r\n")
    ds = read_brighter(path)
    assert ds.texts == ["واش نتا مزيان، ولا لا؟", 'قال ليا: "سير فحالك"', "I'm so happy today"]
    assert ds.label_names == ["anger", "disgust", "fear", "joy", "sadness", "surprise"]
    assert ds.labels.tolist() == [[0, 0, 0, 1, 0, 0], [1, 1, 0, 0, 1, 0], [0, 0, 0, 1, 0, 1]]
    assert ds.labels.dtype == np.uint8
    assert ds.ids == ["ary_train_1", "ary_train_2", "ary_train_3"]
    assert ds.language == "ar"
    assert ds.name == str(path)
    assert ds.dropped == []


def test_read_brighter_language_from_id_prefix_or_argument(tmp_path):
    path = write(
        tmp_path / "data" / "x.csv",
        "id,text,anger,fear\neng_dev_1,Hello there,0,1\neng_dev_2,Bye,1,0\n",
    )
    assert read_brighter(path).language == "en"
    assert read_brighter(path, language="de").language == "de"


def test_read_brighter_multiline_text_keeps_physical_line_numbers(tmp_path):
    path = brighter_file(tmp_path, 'a,"line one\nline two",0,0,0,1,0,0\nb,ok,0,0,0,0,0,7\n')
    with pytest.raises(DataError) as excinfo:
        read_brighter(path)
    assert "line 4" in error_message(excinfo)  # header 1, record on 2-3, bad row on 4


def test_read_semeval2018_crlf_arabic_and_literal_quotes(tmp_path):
    body = (
        '2018-Ar-1\tبقي ٣ ايام "والخلص" 😀\t1\t0\t1\t0\t1\t0\t0\t1\t0\t0\t0\n'
        "2018-Ar-2\t@user شكرا جزيلا\t0\t0\t0\t0\t1\t1\t1\t0\t0\t0\t1\n"
    )
    path = write(tmp_path / "ar" / "dev.txt", SEMEVAL_HEADER + "\n" + body, newline="\r\n")
    ds = read_semeval2018(path)
    assert ds.texts == ['بقي ٣ ايام "والخلص" 😀', "@user شكرا جزيلا"]
    assert ds.label_names[:3] == ["anger", "anticipation", "disgust"]
    assert len(ds.label_names) == 11
    assert ds.labels[0].tolist() == [1, 0, 1, 0, 1, 0, 0, 1, 0, 0, 0]
    assert ds.ids == ["2018-Ar-1", "2018-Ar-2"]
    assert ds.language == "ar"


def test_read_goemotions_quoted_text_and_multiple_labels(tmp_path):
    write(tmp_path / "labels.txt", "admiration\namusement\nanger\nneutral")  # no final newline
    path = write(
        tmp_path / "dev.tsv",
        'Is this real??\t3\tc1\n"He said ""no""\tthen left"\t0,2\tc2\nlol\t1\tc3\n',
    )
    ds = read_goemotions(path, tmp_path / "labels.txt")
    assert ds.texts == ["Is this real??", 'He said "no"\tthen left', "lol"]
    assert ds.label_names == ["admiration", "amusement", "anger", "neutral"]
    assert ds.labels.tolist() == [[0, 0, 0, 1], [1, 0, 1, 0], [0, 1, 0, 0]]
    assert ds.ids == ["c1", "c2", "c3"]
    assert ds.language == "en"


def test_read_goemotions_defaults_to_labels_txt_beside_the_file(tmp_path):
    write(tmp_path / "labels.txt", "joy\nsadness\n")
    path = write(tmp_path / "train.tsv", "yay\t0\tc1\n")
    assert read_goemotions(path).label_names == ["joy", "sadness"]


def test_read_goemotions_rejects_out_of_range_label_id(tmp_path):
    write(tmp_path / "labels.txt", "joy\nsadness\n")
    path = write(tmp_path / "train.tsv", "yay\t0\tc1\nnay\t1,5\tc2\n")
    with pytest.raises(DataError) as excinfo:
        read_goemotions(path)
    message = error_message(excinfo)
    assert "train.tsv" in message and "line 2" in message and "out of range 0-1" in message


def test_read_goemotions_rejects_malformed_label_ids(tmp_path):
    write(tmp_path / "labels.txt", "joy\nsadness\n")
    path = write(tmp_path / "train.tsv", "yay\tjoy\tc1\n")
    with pytest.raises(
        DataError, match=r"train\.tsv: line 1: .*comma-separated label ids 0-1, found 'joy'"
    ):
        read_goemotions(path)


def test_read_table_detects_binary_label_columns_and_ignores_others(tmp_path):
    path = write(
        tmp_path / "mine.csv",
        'source,text,happy,sad,score\nweb,"I love it, really",1,0,3\ntw,أنا حزين جدا,0,1,5\n',
    )
    ds = read_table(path)
    assert ds.label_names == ["happy", "sad"]
    assert ds.labels.tolist() == [[1, 0], [0, 1]]
    assert ds.texts == ["I love it, really", "أنا حزين جدا"]
    assert ds.ids == ["2", "3"]  # line numbers when there is no id column
    assert ds.language == "mixed"


def test_read_table_explicit_columns_and_sniffed_tab_delimiter(tmp_path):
    path = write(
        tmp_path / "data.txt", "ID\tsentence\tjoy\tanger\nx1\tمرحبا بكم\t1\t0\nx2\tأهلا\t0\t0\n"
    )
    ds = read_table(path, text_column="sentence", label_columns=["anger"], id_column="ID")
    assert ds.label_names == ["anger"]
    assert ds.labels.tolist() == [[0], [0]]
    assert ds.ids == ["x1", "x2"]
    assert ds.language == "ar"


def test_read_table_semicolon_file_and_id_column_found_by_name(tmp_path):
    path = write(tmp_path / "data.csv", "id;Text;joy\n7;Hallo Welt;1\n8;Tschüss;0\n")
    ds = read_table(path, language="de")
    assert ds.texts == ["Hallo Welt", "Tschüss"]
    assert ds.ids == ["7", "8"]
    assert ds.language == "de"


# --- bad files -----------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    for reader in (read_brighter, read_semeval2018, read_table, load_dataset):
        with pytest.raises(DataError, match=r"nope\.csv: file not found"):
            reader(str(tmp_path / "nope.csv"))


def test_missing_text_column_lists_columns_and_suggests_option(tmp_path):
    path = write(tmp_path / "data.csv", "id,tweet,joy\n1,hello,1\n")
    with pytest.raises(DataError) as excinfo:
        read_table(path)
    message = error_message(excinfo)
    assert "data.csv: line 1: no column named 'text'" in message
    assert "columns found: id, tweet, joy" in message
    assert "--text-column" in message


def test_label_value_not_zero_or_one(tmp_path):
    path = brighter_file(tmp_path, "a,fine,0,0,0,1,0,0\nb,bad,0,0,yes,0,0,0\n")
    with pytest.raises(DataError) as excinfo:
        read_brighter(path)
    assert (
        error_message(excinfo) == f"{path}: line 3: label column 'fear' must be 0 or 1, found 'yes'"
    )


def test_generic_label_column_with_a_typo_is_reported_not_ignored(tmp_path):
    rows = "".join(f"text {i},{i % 2}\n" for i in range(20)) + "oops,2\n"
    path = write(tmp_path / "data.csv", "text,joy\n" + rows)
    with pytest.raises(
        DataError, match=r"data\.csv: line 22: label column 'joy' must be 0 or 1, found '2'"
    ):
        read_table(path)


def test_tsv_read_as_csv_says_it_is_tab_separated(tmp_path):
    path = write(tmp_path / "eng" / "train.csv", "id\ttext\tjoy\n1\thi\t1\n")
    with pytest.raises(DataError) as excinfo:
        read_brighter(path)
    message = error_message(excinfo)
    assert "train.csv: line 1" in message
    assert "expected comma-separated columns" in message
    assert "seems to be tab-separated" in message
    with pytest.raises(DataError, match=r"line 1: .*seems to be tab-separated"):
        read_table(path, delimiter=",")


def test_csv_read_as_semeval_says_it_is_comma_separated(tmp_path):
    path = write(tmp_path / "train.txt", "ID,Tweet,anger\n1,hi,0\n")
    with pytest.raises(
        DataError, match=r"train\.txt: line 1: expected tab-separated .*seems to be comma-separated"
    ):
        read_semeval2018(path)


def test_undecodable_bytes_name_line_offset_and_utf8(tmp_path):
    content = b"id,text,joy\n1,hello,1\n2,caf\xe9,0\n"
    path = write(tmp_path / "latin1.csv", content)
    with pytest.raises(DataError) as excinfo:
        read_table(path)
    message = error_message(excinfo)
    assert "latin1.csv: line 3 (byte offset 27)" in message
    assert "must be UTF-8" in message


def test_utf8_bom_is_accepted(tmp_path):
    path = write(tmp_path / "bom.csv", "\ufefftext,joy\nمرحبا,1\n")
    ds = read_table(path)
    assert ds.texts == ["مرحبا"]
    assert ds.label_names == ["joy"]


def test_utf16_file_is_rejected_with_advice(tmp_path):
    path = write(tmp_path / "u16.csv", "text,joy\nhi,1\n".encode("utf-16"))
    with pytest.raises(DataError, match=r"u16\.csv: the file is UTF-16 encoded; it must be UTF-8"):
        read_table(path)


def test_binary_garbage(tmp_path):
    garbage = bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)) + b"\x00"
    path = write(tmp_path / "model.bin", b"PK\x03\x04" + garbage)
    for reader in (read_table, read_brighter, load_dataset):
        with pytest.raises(DataError) as excinfo:
            reader(str(path))
        message = error_message(excinfo)
        assert "model.bin: line" in message
        assert "binary file" in message


def test_ragged_row_names_line_and_expected_fields(tmp_path):
    path = brighter_file(tmp_path, "a,ok,0,0,0,1,0,0\nb,no, quotes here,0,0,0,1,0,0\n")
    with pytest.raises(DataError) as excinfo:
        read_brighter(path)
    message = error_message(excinfo)
    assert "train.csv: line 3: expected 8 comma-separated fields" in message
    assert "found 9" in message
    assert "double quotes" in message


def test_short_row_in_tsv(tmp_path):
    path = write(tmp_path / "ar" / "dev.txt", SEMEVAL_HEADER + "\n2018-Ar-1\tنص\t1\t0\n")
    with pytest.raises(
        DataError, match=r"dev\.txt: line 2: expected 13 tab-separated fields .* found 4"
    ):
        read_semeval2018(path)


def test_unclosed_quote_points_at_its_line(tmp_path):
    path = brighter_file(
        tmp_path, 'a,ok,0,0,0,1,0,0\nb,"never closed,0,0,0,1,0,0\nc,x,0,0,0,0,0,0\n'
    )
    with pytest.raises(DataError, match=r"train\.csv: line 3: .*never closed"):
        read_brighter(path)


def test_header_only_has_no_data_rows(tmp_path):
    path = brighter_file(tmp_path, "")
    with pytest.raises(DataError, match=r"train\.csv: no data rows after the header on line 1"):
        read_brighter(path)


def test_empty_file(tmp_path):
    path = write(tmp_path / "empty.tsv", "")
    with pytest.raises(DataError, match=r"empty\.tsv: the file is empty; expected a header line"):
        read_table(path)
    write(tmp_path / "labels.txt", "joy\n")
    with pytest.raises(DataError, match=r"empty\.tsv: no data rows"):
        read_goemotions(path)


def test_wrong_brighter_header(tmp_path):
    path = write(tmp_path / "x.csv", "text,id,joy\nhi,1,0\n")
    with pytest.raises(
        DataError, match=r"x\.csv: line 1: expected a BRIGHTER header 'id,text,<label columns>'"
    ):
        read_brighter(path)


def test_empty_texts_are_dropped_with_a_warning(tmp_path):
    path = brighter_file(
        tmp_path, "a,,0,0,0,1,0,0\nb,good,0,0,0,1,0,0\nc,   ,1,0,0,0,0,0\nd,fine,0,0,0,0,0,0\n"
    )
    with pytest.warns(UserWarning) as record:
        ds = read_brighter(path)
    assert ds.texts == ["good", "fine"]
    assert ds.ids == ["b", "d"]
    assert ds.dropped == [(2, "empty text"), (4, "empty text")]
    message = str(record[0].message)
    assert str(path) in message
    assert "dropped 2 row(s) with empty text (lines 2, 4)" in message


def test_all_texts_empty_is_an_error(tmp_path):
    path = brighter_file(tmp_path, "a,,0,0,0,1,0,0\n")
    with (
        pytest.warns(UserWarning),
        pytest.raises(DataError, match=r"train\.csv: no data rows with text"),
    ):
        read_brighter(path)


# --- the Dataset ---------------------------------------------------------------------------------


def small_dataset(**overrides) -> Dataset:
    values = dict(
        texts=["أنا سعيد", "I am sad", "خايف بزاف"],
        labels=np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]]),
        label_names=["joy", "sadness", "fear"],
        language="mixed",
        name="small",
    )
    values.update(overrides)
    return Dataset(**values)


def test_dataset_defaults_and_helpers():
    ds = small_dataset(labels=np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1]]))
    assert len(ds) == 3
    assert ds.ids == ["0", "1", "2"]
    assert ds.labels.dtype == np.uint8
    assert ds.label_frequencies().tolist() == [2, 1, 1]
    part = ds.subset([2, 0])
    assert part.texts == ["خايف بزاف", "أنا سعيد"]
    assert part.labels.tolist() == [[0, 0, 1], [1, 0, 0]]
    assert part.ids == ["2", "0"]
    assert ds.subset(np.array([False, True, False])).texts == ["I am sad"]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"labels": np.zeros((2, 3))}, r"shape \(texts, label names\) = \(3, 3\), got \(2, 3\)"),
        ({"label_names": ["joy", "sadness"]}, r"= \(3, 2\), got \(3, 3\)"),
        ({"labels": np.full((3, 3), 2)}, "must be 0 or 1"),
        ({"language": "fr"}, "language must be one of"),
        ({"ids": ["a"]}, "1 ids for 3 texts"),
        ({"label_names": ["joy", "joy", "fear"]}, "duplicate label names"),
        ({"label_mask": np.ones((3, 2), dtype=bool)}, "label_mask shape"),
    ],
)
def test_dataset_validates(overrides, expected):
    with pytest.raises(DataError, match=expected):
        small_dataset(**overrides)


def test_fingerprint_is_stable_and_content_based():
    ds = small_dataset()
    assert ds.fingerprint() == small_dataset(name="other", ids=["x", "y", "z"]).fingerprint()
    # A fixed digest: bundles record it, so it must not change between runs or versions.
    assert ds.fingerprint() == "b8df336235c3880e891c469aa79581ee2099695cef9afa3a710690075f2b3fa3"
    flipped = ds.labels.copy()
    flipped[0, 1] = 1
    assert small_dataset(labels=flipped).fingerprint() != ds.fingerprint()
    assert small_dataset(texts=["أنا سعيد", "I am sad", "خايف"]).fingerprint() != ds.fingerprint()
    assert small_dataset(label_names=["joy", "sadness", "anger"]).fingerprint() != ds.fingerprint()


def test_to_frame():
    frame = small_dataset().to_frame()
    assert list(frame.columns) == ["id", "text", "joy", "sadness", "fear"]
    assert frame["text"].tolist() == ["أنا سعيد", "I am sad", "خايف بزاف"]
    assert frame["sadness"].tolist() == [0, 1, 0]


# --- stratified splitting ------------------------------------------------------------------------


def sparse_labels(n: int = 300, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rates = np.array([0.4, 0.2, 0.1, 0.05, 0.02])
    y = (rng.random((n, len(rates))) < rates).astype(np.uint8)
    rare = np.zeros((n, 4), dtype=np.uint8)
    for j, count in enumerate([2, 2, 3, 4]):
        rare[rng.choice(n, count, replace=False), j] = 1
    return np.hstack([y, rare, np.zeros((n, 1), dtype=np.uint8)])  # last label never occurs


def test_stratified_split_keeps_labels_with_two_positives_on_both_sides():
    for seed in range(5):
        y = sparse_labels(seed=seed)
        train, test = iterative_stratified_split(y, test_size=0.2, seed=seed)
        assert sorted(np.concatenate([train, test]).tolist()) == list(range(len(y)))
        assert abs(len(test) - 60) <= 3
        for j in np.flatnonzero(y.sum(axis=0) >= 2):
            assert y[train, j].any() and y[test, j].any(), (seed, j)


def test_stratified_split_keeps_proportions():
    y = sparse_labels(n=1000)
    train, test = iterative_stratified_split(y, test_size=0.25, seed=0)
    assert np.allclose(y[train, :5].mean(axis=0), y[test, :5].mean(axis=0), atol=0.02)


def test_stratified_split_is_deterministic_for_a_seed():
    y = sparse_labels()
    first = iterative_stratified_split(y, seed=3)
    second = iterative_stratified_split(y, seed=3)
    other = iterative_stratified_split(y, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert not np.array_equal(first[1], other[1])


def test_stratified_split_tiny_inputs():
    train, test = iterative_stratified_split(np.array([[1, 0], [0, 1]]), test_size=0.2)
    assert len(train) == 1 and len(test) == 1
    with pytest.raises(DataError, match="need at least 2"):
        iterative_stratified_split(np.array([[1, 0]]))
    with pytest.raises(ConfigError, match="between 0 and 1"):
        iterative_stratified_split(np.zeros((4, 2)), test_size=1.5)


def test_split_dataset_names_and_contents():
    ds = small_dataset(
        texts=[f"t{i}" for i in range(10)],
        labels=np.eye(10, 3, dtype=np.uint8) + np.eye(10, 3, k=-3, dtype=np.uint8),
    )
    train, dev = split_dataset(ds, test_size=0.2, seed=0)
    assert len(train) + len(dev) == 10
    assert sorted(train.texts + dev.texts) == sorted(ds.texts)
    assert train.name == "small[train 80% seed=0]"
    assert dev.name == "small[dev 20% seed=0]"


# --- dataset specs -------------------------------------------------------------------------------


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "datasets"
    header = "id,text,anger,disgust,fear,joy,sadness,surprise\n"
    rows = "".join(
        f"ary_train_{i},نص رقم {i},{i % 2},0,{(i // 2) % 2},1,0,{int(i < 2)}\n" for i in range(10)
    )
    write(root / "brighter_track_a" / "ary" / "train.csv", header + rows)
    reordered = "id,text,surprise,sadness,joy,fear,disgust,anger\nary_dev_1,مزيان,1,0,0,0,0,0\n"
    write(root / "brighter_track_a" / "ary" / "dev.csv", reordered)
    write(
        root / "semeval2018_ec" / "en" / "dev.txt",
        SEMEVAL_HEADER + "\r\n1\thi\t" + "\t".join("0" * 11) + "\r\n",
    )
    write(root / "goemotions" / "en" / "labels.txt", "joy\nneutral")
    write(root / "goemotions" / "en" / "dev.tsv", "nice\t0\tc1\nok\t1\tc2\n")
    return root


def test_load_dataset_specs(data_root):
    ds = load_dataset("brighter:ary:train", data_root=data_root)
    assert (len(ds), ds.language, ds.name) == (10, "ar", "brighter:ary:train")
    semeval = load_dataset("semeval2018:en:dev", data_root=data_root)
    assert (semeval.texts, semeval.language) == (["hi"], "en")
    goemotions = load_dataset("goemotions:en:dev", data_root=data_root)
    assert goemotions.label_names == ["joy", "neutral"]
    assert goemotions.labels.tolist() == [[1, 0], [0, 1]]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            "brighterr:ary:train",
            "unknown corpus 'brighterr'; valid corpora: brighter, semeval2018, goemotions",
        ),
        (
            "brighter:fra:train",
            "unknown language 'fra' for brighter; valid: eng, arq, ary, hin, deu, esp",
        ),
        ("semeval2018:ary:train", "unknown language 'ary' for semeval2018; valid: ar, en"),
        ("goemotions:en:validation", "unknown split 'validation'; valid: train, dev, test"),
        ("brighter:ary", "must be corpus:language:split"),
    ],
)
def test_bad_specs_list_valid_choices(spec, expected, data_root):
    with pytest.raises(DataError, match=re.escape(expected)):
        load_dataset(spec, data_root=data_root)


def test_spec_whose_file_is_absent(data_root):
    with pytest.raises(DataError, match=r"'brighter:eng:train': file not found: .*eng/train\.csv"):
        load_dataset("brighter:eng:train", data_root=data_root)


def test_load_dataset_detects_file_formats(data_root, tmp_path):
    assert (
        load_dataset(str(data_root / "semeval2018_ec" / "en" / "dev.txt")).label_names[-1]
        == "trust"
    )
    assert load_dataset(str(data_root / "brighter_track_a" / "ary" / "train.csv")).language == "ar"
    assert load_dataset(str(data_root / "goemotions" / "en" / "dev.tsv")).label_names == [
        "joy",
        "neutral",
    ]
    generic = write(tmp_path / "mine.tsv", "sentence\tjoy\nhello\t1\n")
    ds = load_dataset(str(generic), text_column="sentence", id_column=None)
    assert (ds.texts, ds.label_names) == (["hello"], ["joy"])


def test_load_dataset_rejects_generic_options_for_known_formats(data_root):
    path = data_root / "brighter_track_a" / "ary" / "train.csv"
    with pytest.raises(
        DataError, match=r"options \['text_column'\] apply to generic CSV/TSV files only"
    ):
        load_dataset(str(path), text_column="sentence")
    assert load_dataset(str(path), language="en").language == "en"


def test_default_data_root_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("EMOSCOPE_DATA_ROOT", str(tmp_path))
    assert default_data_root() == tmp_path
    monkeypatch.setenv("EMOSCOPE_DATA_ROOT", str(tmp_path / "missing"))
    with pytest.raises(DataError, match=r"EMOSCOPE_DATA_ROOT=.*missing is not a directory"):
        default_data_root()


def test_default_data_root_walks_up_from_the_current_directory(monkeypatch, tmp_path):
    monkeypatch.delenv("EMOSCOPE_DATA_ROOT", raising=False)
    (tmp_path / "shared" / "datasets").mkdir(parents=True)
    work = tmp_path / "main" / "sub"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    assert default_data_root() == tmp_path / "shared" / "datasets"


# --- train/dev and combining ---------------------------------------------------------------------


def test_train_dev_splits_train_without_a_dev_spec(data_root):
    train, dev = train_dev("brighter:ary:train", data_root=data_root, seed=0)
    assert (len(train), len(dev)) == (8, 2)
    assert set(train.ids).isdisjoint(dev.ids)


def test_train_dev_aligns_dev_label_order(data_root):
    train, dev = train_dev("brighter:ary:train", "brighter:ary:dev", data_root=data_root)
    assert dev.label_names == train.label_names
    assert dev.labels.tolist() == [[0, 0, 0, 0, 0, 1]]  # surprise, in train's last column


def test_train_dev_falls_back_to_a_split_when_the_dev_file_is_absent(data_root):
    (data_root / "brighter_track_a" / "ary" / "dev.csv").unlink()
    with pytest.warns(UserWarning, match="not found"):
        train, dev = train_dev("brighter:ary:train", "brighter:ary:dev", data_root=data_root)
    assert (len(train), len(dev)) == (8, 2)


def test_train_dev_rejects_dev_with_other_labels(data_root):
    with pytest.raises(
        DataError, match=r"different labels: missing \[\], extra \['anticipation', 'love'"
    ):
        train_dev("brighter:ary:train", "semeval2018:en:dev", data_root=data_root)


def test_combine_marks_unannotated_labels():
    english = small_dataset(language="en", name="en", texts=["a", "b", "c"])
    arabic = Dataset(
        texts=["حزين"],
        labels=np.array([[1, 1]]),
        label_names=["sadness", "anger"],
        language="ar",
        name="ar",
    )
    both = combine([english, arabic])
    assert both.label_names == ["joy", "sadness", "fear", "anger"]
    assert both.labels.tolist() == [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 1, 0, 1]]
    assert both.label_mask.tolist() == [
        [True, True, True, False],
        [True, True, True, False],
        [True, True, True, False],
        [False, True, False, True],
    ]
    assert both.language == "mixed"
    assert both.name == "en+ar"
    frame = both.to_frame()
    assert frame["anger"].isna().tolist() == [True, True, True, False]


def test_combine_same_labels_needs_no_mask():
    both = combine([small_dataset(), small_dataset()])
    assert both.label_mask is None
    assert len(both) == 6
    assert both.language == "mixed"


# --- the real shared datasets (skipped when absent) ----------------------------------------------


def real_root() -> Path:
    try:
        return default_data_root()
    except DataError:
        pytest.skip("shared datasets not found (set EMOSCOPE_DATA_ROOT)")


@pytest.mark.parametrize(
    ("spec", "rows", "language", "labels"),
    [
        ("brighter:eng:train", 2768, "en", 5),
        ("brighter:eng:dev", 116, "en", 5),
        ("brighter:arq:train", 901, "ar", 6),
        ("brighter:arq:dev", 100, "ar", 6),
        ("brighter:ary:train", 1608, "ar", 6),
        ("brighter:ary:dev", 267, "ar", 6),
        ("semeval2018:ar:train", 2278, "ar", 11),
        ("semeval2018:ar:dev", 585, "ar", 11),
        ("goemotions:en:dev", 5426, "en", 28),
    ],
)
def test_real_datasets_row_counts(spec, rows, language, labels):
    root = real_root()
    ds = load_dataset(spec, data_root=root)
    assert (len(ds), ds.language, len(ds.label_names)) == (rows, language, labels)
    assert ds.dropped == []
    assert all(text.strip() for text in ds.texts)


def test_real_goemotions_labels_and_quoted_texts():
    ds = load_dataset("goemotions:en:dev", data_root=real_root())
    assert ds.label_names[0] == "admiration" and ds.label_names[27] == "neutral"
    quoted = ds.texts[ds.ids.index("edjfyek")]  # CSV-quoted on line 288 of dev.tsv
    assert (
        quoted
        == 'I want a shirt that says "Brilliant, Beautiful, Ferocious, Thing". That\'s power.'
    )


def test_real_split_keeps_rare_labels_on_both_sides():
    ds = load_dataset("brighter:ary:train", data_root=real_root())
    train, dev = split_dataset(ds, seed=0)
    assert (train.label_frequencies() > 0).all() and (dev.label_frequencies() > 0).all()
    ratio = dev.label_frequencies() / ds.label_frequencies()
    assert np.allclose(ratio, 0.2, atol=0.03)


# --- bad input: encodings, NUL, huge cells, label values, texts built in code ---------------------------


def test_a_huge_cell_is_read_and_its_text_cut_with_a_warning(tmp_path):
    from emoscope.text import MAX_CHARS

    long_text = "كلمة word " * 20_000  # 200,000 characters: over csv's default field limit
    path = brighter_file(tmp_path, f'a,"{long_text}",0,0,0,1,0,0\nb,short,0,0,0,0,1,0\n')
    with pytest.warns(UserWarning, match=r"1 text\(s\) longer than 20,000 characters were cut .*\(lines 2\)"):
        ds = read_brighter(path)
    assert long_text.startswith(ds.texts[0]) and len(ds.texts[0]) <= MAX_CHARS and ds.texts[1] == "short"


def test_a_field_over_the_limit_is_an_unclosed_quote_by_line(tmp_path):
    from emoscope.data.tables import FIELD_LIMIT

    path = brighter_file(tmp_path, 'a,ok,0,0,0,1,0,0\nb,"never closed' + "x" * (FIELD_LIMIT + 1) + "\n")
    with pytest.raises(DataError, match=r"line 3: .*fields hold at most 1,048,576 characters.*never closed"):
        read_brighter(path)


def test_nul_after_the_first_line_names_its_line(tmp_path):
    path = brighter_file(tmp_path, "a,ok,0,0,0,1,0,0\n" * 3000 + "b,bad\x00,0,0,0,1,0,0\n")
    with pytest.raises(DataError, match=r"line 3002 \(byte offset \d+\): NUL byte"):
        read_brighter(path)


def test_latin1_file_names_line_and_bytes(tmp_path):
    path = write(tmp_path / "d.csv", "text,joy\nhappy,1\ncaf\xe9,0\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"line 3 \(byte offset 20\): bytes b'\\xe9' are not valid UTF-8"):
        read_table(path)


def test_no_label_columns_says_which_value_is_not_0_or_1(tmp_path):
    path = write(tmp_path / "d.csv", "text,joy,anger\nhappy,yes,1\nsad,no,2\n")
    with pytest.raises(DataError, match=r"no label columns: a label column holds only 0 or 1.*column 'joy' has 'yes' "
                                        r"on line 2; column 'anger' has '2' on line 3"):
        read_table(path)


def test_a_dataset_built_in_code_refuses_text_that_cannot_be_encoded():
    with pytest.raises(DataError, match=r"the text of id 'b' holds a lone surrogate \\udc80 at character 4"):
        Dataset(texts=["ok", "bad\udc80"], labels=np.zeros((2, 1)), label_names=["joy"], language="en", name="t",
                ids=["a", "b"])
    with pytest.raises(DataError, match="NUL character"):
        Dataset(texts=["\x00"], labels=np.zeros((1, 1)), label_names=["joy"], language="en", name="t")
    assert Dataset(texts=["fine \x92"], labels=np.zeros((1, 1)), label_names=["joy"], language="en", name="t")
