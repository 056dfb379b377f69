"""Argument checks shared by the API, the records and the warehouse: each returns the
value it accepts or raises :class:`~mlobs.core.errors.ConfigError` naming the argument.

Bounds come from :mod:`mlobs.core.limits` (the warehouse's column sizes).
"""

from __future__ import annotations

import math
import operator
import threading
from datetime import datetime

from mlobs.core.errors import ConfigError
from mlobs.core.limits import INT32_BOUND
from mlobs.core.text import is_storable, shown


def check_word(label: str, value: object, max_chars: int) -> str:
    """``value`` if it is a non-empty :func:`check_text` string.

    Raises:
        ConfigError: naming ``label`` and the problem.
    """
    if type(value) is str and value and len(value) <= max_chars and value.isascii() \
            and "\x00" not in value:
        return value  # the common case, checked on every component call: no further call
    if not value or not isinstance(value, str):
        raise ConfigError(f"{label} must be a non-empty string, got {shown(value)}")
    return check_text(label, value, max_chars)


def check_text(label: str, value: object, max_chars: int) -> str:
    """``value`` if it is a string (maybe empty) of at most ``max_chars`` characters that
    encodes as UTF-8 (no lone surrogate) and holds no NUL character.

    Raises:
        ConfigError: naming ``label`` and the problem.
    """
    if not isinstance(value, str):
        raise ConfigError(f"{label} must be a string, got {shown(value)}")
    if len(value) > max_chars:
        raise ConfigError(f"{label} must be at most {max_chars} characters, got {len(value)}")
    if not is_storable(value):
        raise ConfigError(f"{label} must be valid Unicode text without NUL (it holds a lone "
                          "surrogate or a NUL character), "
                          f"got {shown(value)}")
    return value


def check_int(label: str, value: object, minimum: int, below: int = INT32_BOUND,
              bound_reason: str = "what the warehouse stores") -> int:
    """``value`` as a plain int if it is an integer (not a bool; numpy's integers and
    other ``__index__`` types too) in ``[minimum, below)`` (default bound: what a
    warehouse ``Integer`` column holds, :mod:`mlobs.core.limits`).

    Raises:
        ConfigError: ``<label> must be an integer >= <minimum>, got <value>``, or
            ``... must be an integer < <below> (<bound_reason>) ...`` when it is too large.
    """
    if type(value) is int and minimum <= value < below:
        return value  # the common case (a batch size on every component call)
    number = None
    if not isinstance(value, bool):
        try:
            number = operator.index(value)  # type: ignore[arg-type]
        except TypeError:
            number = None
    if number is None or number < minimum:
        raise ConfigError(f"{label} must be an integer >= {minimum}, got {shown(value, 40)}")
    if number >= below:
        raise ConfigError(f"{label} must be an integer < {_power(below)} ({bound_reason}), "
                          f"got {shown(value, 40)}")
    return int(number)


def _power(n: int) -> str:
    exponent = n.bit_length() - 1
    return f"2**{exponent}" if n == 2**exponent and exponent > 16 else str(n)


def finite_number(value: object) -> int | float | None:
    """``value`` as a plain int or float when it is a finite number (not a bool) that a
    float can hold, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        as_float = float(value)
    except OverflowError:  # an int beyond a float's range
        return None
    if not math.isfinite(as_float):
        return None
    return int(value) if isinstance(value, int) else as_float


def check_finite(label: str, value: object, *, positive: bool = False) -> float:
    """``value`` if it is a :func:`finite_number`, ``>= 0`` (``> 0`` when ``positive``).

    Raises:
        ConfigError: ``<label> must be a finite number >= 0, got <value>`` (``> 0``).
    """
    number = finite_number(value)
    if number is None or not (0 < number if positive else 0 <= number):
        raise ConfigError(f"{label} must be a finite number {'>' if positive else '>='} 0, "
                          f"got {shown(value, 40)}")
    return number


def check_timeout(label: str, value: object) -> float | None:
    """``value`` if it is a number of seconds a thread can wait: finite, ``>= 0`` and at
    most :data:`threading.TIMEOUT_MAX` (beyond it ``wait()`` raises OverflowError), or
    None (no bound: wait as long as it takes).

    Raises:
        ConfigError: naming ``label`` and the problem.
    """
    if value is None:
        return None
    seconds = check_finite(label, value)
    if seconds > threading.TIMEOUT_MAX:
        raise ConfigError(f"{label} must be at most {threading.TIMEOUT_MAX:g} seconds, got "
                          f"{shown(value, 40)}")
    return seconds


def check_time_range(owner: str, since: object, until: object) -> None:
    """``since`` and ``until`` (either may be None) are timezone-aware datetimes with
    since before until; ``owner`` names them in messages (``a window``, ``a run set``).

    Raises:
        ConfigError: a naive datetime or another type, or since not before until.
    """
    for name, value in (("since", since), ("until", until)):
        if value is not None and (not isinstance(value, datetime)
                                  or value.utcoffset() is None):
            raise ConfigError(f"{owner}'s {name} must be a timezone-aware datetime, "
                              f"got {value!r:.60}")
    if since is not None and until is not None and since >= until:  # type: ignore[operator]
        raise ConfigError(f"{owner}'s since ({since}) must be before its until ({until})")
