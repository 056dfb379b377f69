"""Errors raised by mlobs, and the two signals a component may raise.

Hierarchy::

    MlobsError                      base of everything mlobs raises
    ├── ConfigError                 bad arguments to configure()/run()/component()
    ├── ComponentError              raised *by user code* to end a component with an
    │                               explicit error_code (ARCHITECTURE §3)
    └── WarehouseError              the SQL warehouse cannot be used
        └── SchemaOutOfDateError    the database is not at the migrations' head revision

    Empty                           not an error: raised inside a component to end it with
                                    status ``empty`` and an ``empty_reason``
"""

from __future__ import annotations


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


class ComponentError(MlobsError):
    """End the current component with status ``error`` and an explicit ``error_code``.

    Args:
        code: the error_code recorded, e.g. ``"model_load_failed"``,
            ``"triton_unavailable"`` (vocabulary: ARCHITECTURE §4, model system rules §7).
        message: human-readable detail; truncated in the record to a bound.
    """

    def __init__(self, code: str, message: str = "") -> None:
        if not code or not isinstance(code, str):
            raise ConfigError("ComponentError needs a non-empty string error code")
        super().__init__(message or code)
        self.code = code
        self.message = message


class Empty(Exception):
    """Raise inside a component to end it as ``empty`` (a success) with ``reason``.

    Deliberately not an ``MlobsError``: it is a signal, not a failure. Outside a run it
    propagates like any exception.

    Args:
        reason: the empty_reason, e.g. ``"no_speech"``, ``"no_faces"``.
    """

    def __init__(self, reason: str) -> None:
        if not reason or not isinstance(reason, str):
            raise ConfigError("Empty needs a non-empty string reason")
        super().__init__(reason)
        self.reason = reason
