"""Errors raised by mlobs, and the two signals a component may raise.

Hierarchy::

    MlobsError                      base of everything mlobs raises
    ├── ConfigError                 bad arguments to configure()/run()/component()
    ├── ComponentError              raised *by user code* to end a component with an
    │   │                           explicit error_code (ARCHITECTURE §3)
    │   └── ModelLoadFailed         error_code ``model_load_failed``: never retried
    ├── CorruptArtifactError        a cached result's file is missing, truncated or edited
    │                               (mlobs.cache.store; a lookup turns it into a miss)
    └── WarehouseError              the SQL warehouse cannot be used
        ├── SchemaOutOfDateError    the database is not at the migrations' head revision
        └── InvalidRecordError      a record the warehouse refuses (names its id)

    Empty                           not an error: raised inside a component to end it with
                                    status ``empty`` and an ``empty_reason``
"""

from __future__ import annotations

import math

from mlobs.limits import CODE_MAX_CHARS
from mlobs.text import is_storable, shown


class MlobsError(Exception):
    """Base class of every error mlobs raises."""


class ConfigError(MlobsError, ValueError):
    """An argument to ``configure``, ``run`` or ``component`` is invalid."""


class WarehouseError(MlobsError):
    """The SQL warehouse cannot be opened or written."""


class SchemaOutOfDateError(WarehouseError):
    """The warehouse schema is not at the revision this mlobs needs.

    The message names the current and expected revisions and the command to run
    (``mlobs db upgrade``).
    """


class InvalidRecordError(WarehouseError):
    """A record the warehouse refuses; the message names the record and the problem.

    Retrying the same record cannot succeed, unlike a database that is away.

    Args:
        message: what was refused and why.
        run_ids: the runs whose records were refused, when known (others of the same
            batch were written).
    """

    def __init__(self, message: str, run_ids: frozenset[str] | None = None) -> None:
        super().__init__(message)
        self.run_ids = run_ids


def check_word(label: str, value: object, max_chars: int) -> str:
    """``value`` if it is a non-empty :func:`check_text` string.

    Raises:
        ConfigError: naming ``label`` and the problem.
    """
    if type(value) is str and value and len(value) <= max_chars and value.isascii():
        return value  # the common case, checked on every component call: no further call
    if not value or not isinstance(value, str):
        raise ConfigError(f"{label} must be a non-empty string, got {shown(value)}")
    return check_text(label, value, max_chars)


def check_text(label: str, value: object, max_chars: int) -> str:
    """``value`` if it is a string (maybe empty) of at most ``max_chars`` characters that
    encodes as UTF-8 (no lone surrogate).

    Raises:
        ConfigError: naming ``label`` and the problem.
    """
    if not isinstance(value, str):
        raise ConfigError(f"{label} must be a string, got {shown(value)}")
    if len(value) > max_chars:
        raise ConfigError(f"{label} must be at most {max_chars} characters, got {len(value)}")
    if not is_storable(value):
        raise ConfigError(f"{label} must be valid Unicode text (it holds a lone surrogate), "
                          f"got {shown(value)}")
    return value


def check_int(label: str, value: object, minimum: int) -> int:
    """``value`` if it is an integer (not a bool) of at least ``minimum``.

    Raises:
        ConfigError: ``<label> must be an integer >= <minimum>, got <value>``.
    """
    if type(value) is int and value >= minimum:
        return value  # the common case (a batch size on every component call)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{label} must be an integer >= {minimum}, got {shown(value, 40)}")
    return value


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


class ComponentError(MlobsError):
    """End the current component with status ``error`` and an explicit ``error_code``.

    Args:
        code: the error_code recorded, e.g. ``"model_load_failed"``,
            ``"triton_unavailable"`` (vocabulary: ARCHITECTURE §4, model system rules §7).
        message: human-readable detail; truncated in the record to a bound.
    """

    def __init__(self, code: str, message: str = "") -> None:
        check_word("ComponentError code", code, CODE_MAX_CHARS)
        super().__init__(message or code)
        self.code = code
        self.message = message


class ModelLoadFailed(ComponentError):
    """A model is missing or cannot be loaded: error_code ``model_load_failed``.

    Never retried and never answered by another model: the component fails fast
    (model system rules §7).
    """

    def __init__(self, message: str = "") -> None:
        super().__init__("model_load_failed", message)


class Empty(Exception):
    """Raise inside a component to end it as ``empty`` (a success) with ``reason``.

    Deliberately not an ``MlobsError``: it is a signal, not a failure. Outside a run it
    propagates like any exception.

    Args:
        reason: the empty_reason, e.g. ``"no_speech"``, ``"no_faces"``.
    """

    def __init__(self, reason: str) -> None:
        check_word("Empty reason", reason, CODE_MAX_CHARS)
        super().__init__(reason)
        self.reason = reason
