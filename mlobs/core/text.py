"""Text a record can hold, made from any value.

What mlobs writes must encode as UTF-8 (manifest files, spool lines, database columns)
and hold no NUL character (PostgreSQL's text columns refuse it),
and turning a user's object into text must never raise into the pipeline: a lone
surrogate (a file name decoded with ``surrogateescape``) or an object whose ``__str__``
or ``__repr__`` raises would otherwise lose the record or replace the user's exception.
"""

from __future__ import annotations


def is_storable(text: str) -> bool:
    """Whether ``text`` encodes as UTF-8 (no lone surrogates) and holds no NUL character
    (PostgreSQL's text columns refuse it)."""
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def storable(text: str) -> str:
    """``text``, with any lone surrogate replaced by its ``\\udcXX`` escape and any NUL
    by ``\\x00``."""
    if is_storable(text):
        return text
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def text_of(value: object) -> str:
    """``str(value)`` made :func:`storable`; ``<unprintable Type: why>`` when ``__str__``
    raises."""
    try:
        return storable(str(value))
    except Exception as broken:
        return f"<unprintable {type(value).__qualname__}: {_why(broken)}>"


def shown(value: object, max_chars: int = 80) -> str:
    """``repr(value)`` cut to ``max_chars``, for messages; never raises."""
    try:
        return storable(repr(value))[:max_chars]
    except Exception as broken:
        return f"<{type(value).__qualname__} whose repr failed: {_why(broken)}>"[:max_chars]


def _why(broken: Exception) -> str:
    try:
        return storable(f"{type(broken).__name__}: {broken}")
    except Exception:
        return type(broken).__name__
