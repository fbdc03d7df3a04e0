"""Unit tests for emoscope.text: each normalisation step, the pipeline, segmentation, detection."""

import doctest
import itertools
import sys

import pytest

from emoscope import text as text_module
from emoscope.errors import ConfigError
from emoscope.text import (
    MAX_CHARS,
    NormalizerConfig,
    Word,
    arabic_digits_to_western,
    detect_language,
    is_rtl,
    nfc,
    normalize,
    prepare_words,
    reduce_elongation,
    remove_diacritics,
    remove_tatweel,
    replace_mentions,
    replace_urls,
    segment_words,
    truncate,
    unify_alef,
    unify_ta_marbuta,
    unify_ya,
)


def words(text: str) -> list[str]:
    return [w.text for w in segment_words(text)]


# --- normalisation steps ---------------------------------------------------------------------


def test_docstring_examples_hold():
    result = doctest.testmod(text_module)
    assert result.attempted > 0
    assert result.failed == 0


def test_nfc_composes_alef_madda_and_latin_accent():
    assert nfc("\u0627\u0653") == "\u0622"  # alef + combining madda -> آ
    assert nfc("cafe\u0301") == "caf\u00e9"
    assert nfc("مرحبا") == "مرحبا"


def test_remove_diacritics_strips_harakat_tanween_shadda_sukun():
    assert remove_diacritics("مُحَمَّدٌ") == "محمد"
    assert remove_diacritics("كِتَابٌ مَكْتُوبٌ") == "كتاب مكتوب"
    assert remove_diacritics("هٰذا") == "هذا"  # superscript alef U+0670


def test_remove_diacritics_strips_quranic_marks_and_keeps_latin_accents():
    assert remove_diacritics("الرَّحِيمِ\u06d6") == "الرحيم"
    assert remove_diacritics("\u0610اللّه") == "الله"
    assert remove_diacritics("café schön") == "café schön"


def test_remove_tatweel():
    assert remove_tatweel("جميـــل جداً") == "جميل جداً"
    assert remove_tatweel("no tatweel") == "no tatweel"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("soooo good", "soo good"),
        ("ههههههه", "هه"),
        ("حلوووووو", "حلوو"),
        ("cool", "cool"),  # a double letter is not elongation
        ("1000000", "1000000"),  # digits are not letters
        ("!!!!", "!!!!"),
    ],
)
def test_reduce_elongation_default(raw, expected):
    assert reduce_elongation(raw) == expected


def test_reduce_elongation_max_repeat():
    assert reduce_elongation("soooo", max_repeat=1) == "so"
    assert reduce_elongation("ههههههه", max_repeat=3) == "ههه"
    with pytest.raises(ValueError, match="at least 1"):
        reduce_elongation("soooo", max_repeat=0)


def test_arabic_digits_to_western():
    assert arabic_digits_to_western("٠١٢٣٤٥٦٧٨٩") == "0123456789"
    assert arabic_digits_to_western("۰۱۲۳۴۵۶۷۸۹") == "0123456789"
    assert arabic_digits_to_western("عمري ٢٥ سنة") == "عمري 25 سنة"


def test_unify_alef_ya_ta_marbuta():
    assert unify_alef("أحمد إلى آخر ٱلكتاب") == "احمد الى اخر الكتاب"
    assert unify_ya("على مستشفى") == "علي مستشفي"
    assert unify_ta_marbuta("مدرسة جميلة") == "مدرسه جميله"


def test_replace_urls_keeps_trailing_punctuation():
    assert replace_urls("see https://t.co/abc123.") == "see URL."
    assert replace_urls("شوف www.example.com/path?a=1، حلو") == "شوف URL، حلو"
    assert replace_urls("go to http://x.org/a_b", placeholder="<url>") == "go to <url>"
    assert replace_urls("no link here") == "no link here"


def test_replace_mentions_including_brighter_anonymised_handles():
    assert replace_mentions("@RanaAyyub @rajnathsingh Oh") == "@USER @USER Oh"
    assert replace_mentions("شكرا @محمد_علي") == "شكرا @USER"
    assert replace_mentions("te amo @<username> amor") == "te amo @USER amor"
    assert replace_mentions("mail me at a@b.com", placeholder="@U") == "mail me at a@b.com"


# --- configuration and pipeline ----------------------------------------------------------------


def test_config_defaults():
    config = NormalizerConfig()
    assert config.to_dict() == {
        "nfc": True,
        "replace_urls": True,
        "replace_mentions": True,
        "remove_diacritics": True,
        "remove_tatweel": True,
        "unify_alef": False,
        "unify_ya": False,
        "unify_ta_marbuta": False,
        "arabic_digits_to_western": True,
        "reduce_elongation": True,
    }


def test_config_round_trips_through_dict():
    config = NormalizerConfig(unify_alef=True, replace_urls=False)
    assert NormalizerConfig.from_dict(config.to_dict()) == config
    assert NormalizerConfig.from_dict({"unify_ya": True}) == NormalizerConfig(unify_ya=True)


def test_config_unknown_key_names_the_key():
    with pytest.raises(ConfigError, match="'diacritcs'"):
        NormalizerConfig.from_dict({"diacritcs": False})


def test_config_rejects_non_bool():
    with pytest.raises(ConfigError, match=r"'nfc'.*true or false"):
        NormalizerConfig.from_dict({"nfc": "yes"})


def test_normalize_default_pipeline_arabic_tweet():
    raw = "@user_1 هههههههه جميـــل جداً ٢٠٢٤ https://t.co/xyz"
    assert normalize(raw) == "@USER هه جميل جدا 2024 URL"


def test_normalize_default_pipeline_english_tweet():
    assert normalize("@bob sooooo happy!!! see www.x.com") == "@USER soo happy!!! see URL"


def test_normalize_order_diacritics_and_tatweel_before_elongation():
    assert normalize("هَـهـهَـهـه") == "هه"


def test_normalize_with_unification_enabled():
    config = NormalizerConfig(unify_alef=True, unify_ya=True, unify_ta_marbuta=True)
    assert normalize("إلى المدرسة", config) == "الي المدرسه"
    assert normalize("إلى المدرسة") == "إلى المدرسة"


def test_normalize_everything_off_is_identity():
    off = NormalizerConfig.from_dict({k: False for k in NormalizerConfig().to_dict()})
    raw = "مُحَمَّدٌ soooo @x https://t.co/a ١"
    assert normalize(raw, off) == raw


def test_normalize_nfc_before_diacritics_keeps_alef_madda():
    assert normalize("\u0627\u0653خر") == "آخر"


# --- segmentation --------------------------------------------------------------------------------


def test_segment_offsets_point_into_the_text():
    text = "  Hi, مُحَمَّد!  "
    result = segment_words(text)
    assert result == [Word("Hi", 2, 4), Word(",", 4, 5), Word("مُحَمَّد", 6, 14), Word("!", 14, 15)]
    assert all(text[w.start : w.end] == w.text for w in result)


def test_segment_english_apostrophes_and_punctuation_runs():
    assert words("I don't know!!! Really... ok?") == [
        "I",
        "don't",
        "know",
        "!!!",
        "Really",
        "...",
        "ok",
        "?",
    ]
    assert words("it’s fine?!") == ["it’s", "fine", "?", "!"]


def test_segment_arabic_with_diacritics_tatweel_and_arabic_punctuation():
    assert words("السَّلامُ عليكم، كيف الحـــال؟") == ["السَّلامُ", "عليكم", "،", "كيف", "الحـــال", "؟"]


def test_segment_urls_mentions_hashtags():
    assert words("@ali_1 see https://t.co/x. #يوم_الجمعة #Happy2024") == [
        "@ali_1",
        "see",
        "https://t.co/x",
        ".",
        "#يوم_الجمعة",
        "#Happy2024",
    ]
    assert words("@<username> hola") == ["@<username>", "hola"]
    assert words("a@b.com C#") == ["a", "@", "b", ".", "com", "C", "#"]


def test_segment_emoji_sequences_are_single_words():
    family = "👨\u200d👩\u200d👧\u200d👦"
    runner = "🏃\u200d♀️"
    assert words(f"love{family}🇸🇦 👍🏽❤️ {runner}1️⃣") == [
        "love",
        family,
        "🇸🇦",
        "👍🏽",
        "❤️",
        runner,
        "1️⃣",
    ]
    assert words("😂😂😂") == ["😂", "😂", "😂"]


def test_segment_digits_in_any_script():
    assert words("عمري ٢٥ سنة and 25") == ["عمري", "٢٥", "سنة", "and", "25"]


MIXED_STRINGS = [
    "",
    "   ",
    "Hello world",
    "مرحبا بالعالم 😊 hello!!",
    "أنا سعيد جداااا 😂😂 #فرحة_كبيرة @friend https://t.co/abc?x=1",
    "I'm soooo happy ❤️‍🔥 today... وانت؟",
    'عيني: "ما رايحينش نقعدوا هكذا". (قال)',
    "tabs\tand\nnewlines\r\nand\u00a0nbsp\u2028sep",
    "\u0301leading mark, \u200dzwj, \u200bzero width",
    "👩🏽\u200d💻 coder 🏳️\u200d🌈 🏴\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f",
    "C++ & $100 = 50% off; a/b <c> [d] {e} ~f^ |g|",
    "هَـهـهَـهـه١٢٣abc",
    "e-mail: a.b@c.com, tel +212 600-000",
    "\x00\x01 control \ufffd chars",
]


@pytest.mark.parametrize("text", MIXED_STRINGS)
def test_segment_drops_only_whitespace(text):
    result = segment_words(text)
    assert "".join(w.text for w in result) == "".join(text.split())
    assert all(text[w.start : w.end] == w.text for w in result)
    assert all(w.text and not any(ch.isspace() for ch in w.text) for w in result)
    assert all(a.end <= b.start for a, b in itertools.pairwise(result))


def test_segment_treats_every_unicode_whitespace_as_a_separator():
    spaces = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]
    for space in spaces:
        assert words(f"a{space}b") == ["a", "b"], repr(space)


def test_prepare_words_keeps_original_offsets_and_normalises_each_word():
    text = "@ali  جميـــل جداً!!! ١٢ https://t.co/x َ"
    found, normalised = prepare_words(text, NormalizerConfig())
    assert [w.text for w in found] == ["@ali", "جميـــل", "جداً", "!!!", "١٢", "https://t.co/x", "َ"]
    assert normalised == ["@USER", "جميل", "جدا", "!!!", "12", "URL", ""]
    assert all(text[w.start : w.end] == w.text for w in found)


# --- language and direction ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("أنا سعيد جدا اليوم", "ar"),
        ("I am very happy today", "en"),
        ("أنا سعيد جدا اليوم because of you", "mixed"),
        ("مرحبا بكم جميعا في بيتنا الجديد ok", "ar"),  # 2 Latin letters of 28: under 20%
        ("1234 !!! 😂", "unknown"),
        ("", "unknown"),
        ("मैं बहुत खुश हूँ", "unknown"),
        ("@user_name مرحبا https://t.co/abcdef", "ar"),  # URL and mention letters ignored
    ],
)
def test_detect_language(text, expected):
    assert detect_language(text) == expected


def test_is_rtl():
    assert is_rtl("مرحبا بكم")
    assert is_rtl("@user مرحبا بكم يا أصدقاء")
    assert not is_rtl("hello مرحبا friends")
    assert not is_rtl("1234 !!!")
    assert is_rtl("שלום עולם")


# --- truncation ----------------------------------------------------------------------------------


def test_truncate_leaves_short_text_alone():
    assert truncate("short text") == ("short text", False)
    assert truncate("x" * MAX_CHARS) == ("x" * MAX_CHARS, False)


def test_truncate_cuts_at_a_word_boundary():
    text = "hello world again"
    assert truncate(text, max_chars=14) == ("hello world", True)
    assert truncate("مرحبا بالعالم الجميل", max_chars=16) == ("مرحبا بالعالم", True)


def test_truncate_huge_input_to_the_default_limit():
    text = "كلمة word " * 10_000  # 100,000 characters
    cut, was_cut = truncate(text)
    assert was_cut
    assert len(cut) <= MAX_CHARS
    assert len(cut) > MAX_CHARS - 10
    assert text.startswith(cut)
    assert cut.endswith(("كلمة", "word"))


def test_truncate_single_long_word_never_splits_a_combining_mark():
    text = "بَ" * 20  # letter + fatha pairs, no word boundary inside
    cut, was_cut = truncate(text, max_chars=7)
    assert was_cut
    assert cut == "بَ" * 3


def test_truncate_rejects_non_positive_limit():
    with pytest.raises(ValueError, match="at least 1"):
        truncate("abc", max_chars=0)


# --- text that cannot be encoded ---------------------------------------------------------------------


@pytest.mark.parametrize("text, problem", [
    ("\udc80 hi", "a lone surrogate \\udc80 at character 1"),
    ("ok \ud83d", "a lone surrogate \\ud83d at character 4"),
    ("a\x00b", "a NUL character at character 2"),
])
def test_unencodable_names_the_first_problem_and_where(text, problem):
    from emoscope.text import unencodable

    assert unencodable(text).startswith(problem)


@pytest.mark.parametrize("text", ["happy", "حزين \u0651", "\x01\x1b[31m\x7f\x85\x92\x9b", "\u202e\u2066x\u2069",
                                  "😀👩\u200d👩\u200d👧", "\uffff\U0010ffff", "e\u0301"])
def test_text_that_encodes_is_kept_as_it_is(text):
    from emoscope.text import check_text, unencodable

    assert unencodable(text) is None and check_text(text) is text
    text.encode("utf-8")


def test_check_text_is_an_input_error_naming_the_text():
    from emoscope.errors import InputError
    from emoscope.text import check_text

    with pytest.raises(InputError, match=r"^rows\.jsonl: line 3: the text holds a lone surrogate \\udcff at character 2"):
        check_text("x\udcff", "rows.jsonl: line 3: the text")


def test_read_words_refuses_unencodable_text_whatever_the_path():
    from emoscope.errors import InputError
    from emoscope.words import read_words

    with pytest.raises(InputError, match="lone surrogate"):
        read_words("happy \udc80", NormalizerConfig())
    assert read_words("happy day", NormalizerConfig()).model_words == ["happy", "day"]
