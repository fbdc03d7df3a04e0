"""Errors EmoScope raises for bad input: each says what was wrong and what to do.

The CLI prints these as one line and exits non-zero; anything else is a bug and keeps
its traceback.
"""


class EmoScopeError(Exception):
    """Base class for errors caused by the user's input, files or environment."""


class DataError(EmoScopeError):
    """A dataset file or spec is missing, malformed or unreadable."""


class ConfigError(EmoScopeError):
    """A training recipe or option is invalid."""


class EncoderError(EmoScopeError):
    """An encoder source is unknown, not installed, or its files are broken."""


class BundleError(EmoScopeError):
    """A model bundle is missing, incomplete, tampered with or of an unsupported format."""


class InputError(EmoScopeError):
    """Text or a file given for prediction cannot be used."""
