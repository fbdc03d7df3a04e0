"""Text normalisation, language detection and word segmentation for Arabic and English.

Each normalisation step is one pure, documented function (in the manner of CAMeL Tools and
pysentimiento); `normalize` chains the steps a `NormalizerConfig` switches on, in one fixed
order. `segment_words` is the single word segmentation every encoder and explainer shares, so
sub-word vectors and attributions are always pooled onto the same words, with character offsets
into the text exactly as the user typed it.

Uses the `regex` module (a dependency of transformers) for Unicode properties such as
`\\p{Extended_Pictographic}` and `\\p{Script=Arabic}`, which the standard `re` lacks.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

import regex

from emoscope.errors import ConfigError, InputError

__all__ = [
    "MAX_CHARS", "NormalizerConfig", "Word", "arabic_digits_to_western", "check_text", "detect_language", "is_rtl",
    "nfc", "normalize", "prepare_words", "reduce_elongation", "remove_diacritics", "remove_tatweel",
    "replace_mentions", "replace_urls", "segment_words", "truncate", "unencodable", "unify_alef",
    "unify_ta_marbuta", "unify_ya",
]

MAX_CHARS = 20_000
"""Longest text the model is given; longer input is cut by `truncate` (callers warn)."""

# Whitespace is exactly what str.isspace() accepts (tests check the list is complete), so
# `"".join(text.split())` is the reference for what segmentation must preserve.
_WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
    "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_WS_CLASS = "[" + "".join(f"\\u{ord(c):04x}" for c in _WHITESPACE) + "]"
_NOT_WS_CLASS = "[^" + _WS_CLASS[1:]

_ARABIC_DIACRITICS = regex.compile("[\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06ed]")
_TATWEEL = "\u0640"
_DIGITS_TO_WESTERN = str.maketrans(
    "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669"
    "\u06f0\u06f1\u06f2\u06f3\u06f4\u06f5\u06f6\u06f7\u06f8\u06f9",
    "01234567890123456789",
)
_ALEF_VARIANTS = str.maketrans(
    {"\u0623": "\u0627", "\u0625": "\u0627", "\u0622": "\u0627", "\u0671": "\u0627"}
)
_ALEF_MAKSURA_TO_YA = str.maketrans({"\u0649": "\u064a"})
_TA_MARBUTA_TO_HA = str.maketrans({"\u0629": "\u0647"})

# A URL stops before trailing punctuation ("see https://x.org/a." keeps the full stop out).
_URL_PATTERN = (
    rf"(?:https?://|www\.){_NOT_WS_CLASS}+?"
    rf"(?=[.,!?;:'\"()\[\]{{}}<>\u060c\u061b\u061f\u2026]*(?:{_WS_CLASS}|$))"
)
# "@<username>" is how BRIGHTER anonymises handles; the look-behind keeps e-mail addresses
# ("a@b.com") from being read as mentions.
_MENTION_PATTERN = r"(?<![\p{L}\p{M}\p{N}_])@(?:<[\p{L}\p{N}_]+>|[\p{L}\p{M}\p{N}_]+)"
_HASHTAG_PATTERN = r"(?<![\p{L}\p{M}\p{N}_])#[\p{L}\p{N}_][\p{L}\p{M}\p{N}_]*"
_KEYCAP_PATTERN = r"[#*0-9]\uFE0F?\u20E3"
_EMOJI_PIECE = r"\p{Extended_Pictographic}(?:\uFE0F|\p{Emoji_Modifier}|[\U000E0020-\U000E007F])*"
_EMOJI_PATTERN = rf"\p{{Regional_Indicator}}{{2}}|{_EMOJI_PIECE}(?:\u200D{_EMOJI_PIECE})*"
# Apostrophes (straight and typographic) join letters ("don't", "l'homme"); ZWNJ joins
# the parts of Persian-script words.
_WORD_PATTERN = r"[\p{L}\p{M}\p{N}]+(?:['\u2019\u200c][\p{L}\p{M}\p{N}]+)*"
_PUNCT_RUN_PATTERN = r"(?P<punct>\p{P})(?P=punct)*"

_URL = regex.compile(_URL_PATTERN)
_MENTION = regex.compile(_MENTION_PATTERN)
_ELONGATION_CACHE: dict[int, regex.Pattern[str]] = {}
# Order matters: at each position the first alternative that matches wins, so URLs,
# mentions, hashtags and emoji are tried before the generic word and punctuation rules,
# and the last alternative takes any other single non-space character so nothing is lost.
_TOKEN = regex.compile("|".join([_URL_PATTERN, _MENTION_PATTERN, _HASHTAG_PATTERN, _KEYCAP_PATTERN, _EMOJI_PATTERN,
                                  _WORD_PATTERN, _PUNCT_RUN_PATTERN, _NOT_WS_CLASS]))

_LETTER = regex.compile(r"\p{L}")
_ARABIC_LETTER = regex.compile(r"(?=\p{L})\p{Script_Extensions=Arabic}")
_LATIN_LETTER = regex.compile(r"(?=\p{L})\p{Script=Latin}")
_MIXED_SHARE = 0.2


# --- normalisation steps ---------------------------------------------------------------------


def nfc(text: str) -> str:
    """Compose characters to Unicode NFC, so "آ" typed as alef + madda equals the single code point.

    >>> nfc("\u0627\u0653") == "\u0622"
    True
    """
    return unicodedata.normalize("NFC", text)


def remove_diacritics(text: str) -> str:
    """Remove Arabic diacritics: harakat, tanween, shadda, sukun, dagger alef and Quranic marks.

    Covers U+0610–U+061A, U+064B–U+065F, U+0670 and U+06D6–U+06ED. Latin accents are kept
    (they distinguish words in German and Spanish).

    >>> remove_diacritics("مُحَمَّدٌ")
    'محمد'
    """
    return _ARABIC_DIACRITICS.sub("", text)


def remove_tatweel(text: str) -> str:
    """Remove the Arabic tatweel (kashida, U+0640), a purely visual stretch: "جميـــل" → "جميل"."""
    return text.replace(_TATWEEL, "")


def reduce_elongation(text: str, max_repeat: int = 2) -> str:
    """Shorten any letter repeated more than `max_repeat` times to `max_repeat` copies.

    Letters only (any script), so numbers such as "1000" are untouched.

    >>> reduce_elongation("soooo good")
    'soo good'
    >>> reduce_elongation("ههههههه")
    'هه'
    """
    if max_repeat < 1:
        raise ValueError(f"max_repeat must be at least 1, got {max_repeat}")
    pattern = _ELONGATION_CACHE.get(max_repeat)
    if pattern is None:
        pattern = regex.compile(rf"(\p{{L}})\1{{{max_repeat},}}")
        _ELONGATION_CACHE[max_repeat] = pattern
    return pattern.sub(lambda m: m.group(1) * max_repeat, text)


def arabic_digits_to_western(text: str) -> str:
    """Map Arabic-Indic (U+0660–0669) and Eastern Arabic/Persian (U+06F0–06F9) digits to 0–9.

    >>> arabic_digits_to_western("٢٠٢٤ و ۳")
    '2024 و 3'
    """
    return text.translate(_DIGITS_TO_WESTERN)


def unify_alef(text: str) -> str:
    """Map the hamza and madda alef forms أ إ آ and alef wasla ٱ to bare alef ا."""
    return text.translate(_ALEF_VARIANTS)


def unify_ya(text: str) -> str:
    """Map alef maksura ى to ya ي (the two are used interchangeably at word ends)."""
    return text.translate(_ALEF_MAKSURA_TO_YA)


def unify_ta_marbuta(text: str) -> str:
    """Map ta marbuta ة to ha ه (often written the same in dialectal text)."""
    return text.translate(_TA_MARBUTA_TO_HA)


def replace_urls(text: str, placeholder: str = "URL") -> str:
    """Replace each http(s):// or www. URL with `placeholder`, leaving trailing punctuation.

    >>> replace_urls("see https://t.co/abc.")
    'see URL.'
    """
    return _URL.sub(placeholder, text)


def replace_mentions(text: str, placeholder: str = "@USER") -> str:
    """Replace each @mention (including BRIGHTER's "@<username>") with `placeholder`.

    E-mail addresses are not mentions and are left alone.

    >>> replace_mentions("@RanaAyyub شكرا")
    '@USER شكرا'
    """
    return _MENTION.sub(placeholder, text)


# --- the configurable pipeline ---------------------------------------------------------------


@dataclass(frozen=True)
class NormalizerConfig:
    """Which normalisation steps `normalize` applies; each field is named after its step function.

    Defaults suit tweets and short posts in both languages. The Arabic letter unifications
    are off by default because they merge distinct words (e.g. ة/ه changes "his" vs. feminine
    endings); switch them on for noisy dialectal text.
    """

    nfc: bool = True
    replace_urls: bool = True
    replace_mentions: bool = True
    remove_diacritics: bool = True
    remove_tatweel: bool = True
    unify_alef: bool = False
    unify_ya: bool = False
    unify_ta_marbuta: bool = False
    arabic_digits_to_western: bool = True
    reduce_elongation: bool = True

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, bool):
                raise ConfigError(f"normalizer option {f.name!r} must be true or false, got {value!r}")

    def to_dict(self) -> dict[str, bool]:
        """Return the options as a plain dict (for manifests and recipes)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NormalizerConfig:
        """Build a config from a dict: missing keys take defaults, unknown keys are errors."""
        known = {f.name for f in fields(cls)}
        for key in data:
            if key not in known:
                raise ConfigError(f"unknown normalizer option {key!r}; valid options: {', '.join(sorted(known))}")
        return cls(**data)


# Application order, and why: NFC first so later steps see composed letters; URLs and mentions
# before any letter-level step so they are replaced whole; diacritics and tatweel before
# elongation so "هـــههههه" and "هَههه" are seen as plain repeats; letter unification before
# elongation so "اأاا" collapses too.
_STEPS: tuple[Callable[[str], str], ...] = (nfc, replace_urls, replace_mentions, remove_diacritics, remove_tatweel,
                                            unify_alef, unify_ya, unify_ta_marbuta, arabic_digits_to_western,
                                            reduce_elongation)


def normalize(text: str, config: NormalizerConfig = NormalizerConfig()) -> str:
    """Apply the steps `config` enables, in the fixed order: NFC, URLs, mentions, diacritics,
    tatweel, alef, ya, ta marbuta, digits, elongation.

    >>> normalize("شكراااا @ali ❤️ https://t.co/x")
    'شكراا @USER ❤️ URL'
    """
    for step in _STEPS:
        if getattr(config, step.__name__):
            text = step(text)
    return text


# --- word segmentation -------------------------------------------------------------------------


@dataclass(frozen=True)
class Word:
    """One word of a text: its characters and where they sit, so `text[start:end] == self.text`."""

    text: str
    start: int
    end: int


def segment_words(text: str) -> list[Word]:
    """Split `text` into words with character offsets into `text`.

    Rules: whitespace separates and is dropped; a run of letters, combining marks and digits
    in any script is one word (so Arabic with diacritics and tatweel stays whole), with
    apostrophes inside allowed ("don't"); a URL, an @mention or a #hashtag (Arabic ones with
    underscores included) is one word; each punctuation mark is a word, a run of the same mark
    ("!!!", "...") is one; an emoji with its ZWJ joins, skin-tone modifiers and variation
    selectors, a flag and a keycap are one word each. Every non-whitespace character lands
    in exactly one word.
    """
    return [Word(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(text)]


def prepare_words(text: str, config: NormalizerConfig = NormalizerConfig()) -> tuple[list[Word], list[str]]:
    """Segment the original `text` and normalise each word on its own.

    Segmenting before normalising keeps every offset in the text exactly as the user typed
    it, so explainers can highlight the user's own characters; normalising afterwards, word by
    word, gives the encoders their cleaned input with a one-to-one map back. A word that
    normalises to "" (e.g. a lone diacritic) is kept with "" and callers decide what to do.
    """
    words = segment_words(text)
    return words, [_normalize_word(w.text, config) for w in words]


# Words repeat across texts (Zipf), and `normalize` is pure: caching it per word makes the
# prediction path's preprocessing several times cheaper.
_normalize_word = functools.lru_cache(maxsize=1 << 16)(normalize)


# --- language and direction --------------------------------------------------------------------


def detect_language(text: str) -> str:
    """Guess the script of `text` from its letters: "ar", "en", "mixed" or "unknown".

    "mixed" when Arabic-script and Latin letters are each at least 20% of all letters; "ar"
    or "en" when that script holds the majority of letters; "unknown" when there are no
    letters or neither script is the majority (e.g. Hindi). Letters inside URLs and @mentions
    do not count, so an Arabic tweet addressed to "@someone" stays "ar". Latin script is
    reported as "en": this is a script test, not a language identifier, so German or Spanish
    also give "en".
    """
    text = replace_mentions(replace_urls(text, ""), "")
    letters = len(_LETTER.findall(text))
    if letters == 0:
        return "unknown"
    arabic = len(_ARABIC_LETTER.findall(text)) / letters
    latin = len(_LATIN_LETTER.findall(text)) / letters
    if arabic >= _MIXED_SHARE and latin >= _MIXED_SHARE:
        return "mixed"
    if arabic > 0.5:
        return "ar"
    if latin > 0.5:
        return "en"
    return "unknown"


def is_rtl(text: str) -> bool:
    """True when right-to-left letters (Arabic, Hebrew, ...) outnumber left-to-right ones.

    Counting every strong character, rather than looking at the first one as HTML's
    `dir="auto"` does, keeps an Arabic tweet that starts with "@user" right to left.
    """
    rtl = ltr = 0
    for ch in text:
        direction = unicodedata.bidirectional(ch)
        if direction in ("R", "AL"):
            rtl += 1
        elif direction == "L":
            ltr += 1
    return rtl > ltr


# --- length limit --------------------------------------------------------------------------------


def truncate(text: str, max_chars: int = MAX_CHARS) -> tuple[str, bool]:
    """Cut `text` to at most `max_chars` characters; return the text and whether it was cut.

    Cuts after the last whole word that fits (see `segment_words`); when a single word is
    longer than the limit, cuts inside it but never between a character and its combining
    marks. Keeps a pasted 100,000-character input from exhausting memory in the encoders.
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be at least 1, got {max_chars}")
    if len(text) <= max_chars:
        return text, False
    # Segmenting a little past the limit tells whether the word at the limit continues.
    window = text[: max_chars + 256]
    ends = [w.end for w in segment_words(window) if w.end <= max_chars]
    if ends:
        return text[: ends[-1]], True
    cut = max_chars
    while cut > 0 and unicodedata.category(text[cut])[0] == "M":
        cut -= 1
    return text[: cut or max_chars], True


# --- text that cannot be encoded -----------------------------------------------------------------

# NUL marks binary data; a lone surrogate is not a character at all: it is what Python makes of
# bytes that are not UTF-8 (argv, surrogateescape) or of a broken JSON escape ("\udc80"), and the
# tokenizers cannot take it. Other control characters encode fine and occur in real data
# (SemEval-2018 en has a U+0092), so they are left as they are.
_UNENCODABLE = regex.compile("[\x00\ud800-\udfff]")


def unencodable(text: str) -> str | None:
    """What makes ``text`` unusable as text, or None: a NUL character, or a lone surrogate."""
    found = _UNENCODABLE.search(text)
    if found is None:
        return None
    at = f"at character {found.start() + 1:,}"
    if found.group() == "\x00":
        return f"a NUL character {at}: it looks like binary data, not text"
    return (f"a lone surrogate {found.group().encode('utf-8', 'backslashreplace').decode()} {at}: bytes that were "
            "not valid UTF-8, or a broken \\u escape; give UTF-8 text")


def check_text(text: str, what: str = "the text") -> str:
    """``text`` unchanged, or an ``InputError`` naming ``what`` when it cannot be encoded
    (:func:`unencodable`): the one rule for predict, explain, batch files and training data."""
    problem = unencodable(text)
    if problem is not None:
        raise InputError(f"{what} holds {problem}")
    return text
