"""Errors raised by mlobs, and the signal a component may raise to end empty.

Errors only: the argument checks that raise :class:`ConfigError` live in
:mod:`mlobs.core.checks`.

Hierarchy::

    MlobsError                      base of everything mlobs raises
    ├── ConfigError                 bad arguments to configure()/run()/component()
    ├── ComponentError              raised *by user code* to end a component with an
    │   │                           explicit error_code (ARCHITECTURE §3)
    │   └── ModelLoadFailed         error_code ``model_load_failed``: never retried
    ├── CorruptArtifactError        a cached result's file is missing, truncated or edited
    │                               (mlobs.cache.store; a lookup turns it into a miss)
    ├── ManifestError               a manifest file is missing, not JSON, or not
    │                               ``mlobs.manifest/1`` (mlobs.core.manifest)
    └── WarehouseError              the SQL warehouse cannot be used
        ├── SchemaOutOfDateError    the database is not at the migrations' head revision
        └── InvalidRecordError      a record the warehouse refuses (names its id)

    Empty                           not an error: raised inside a component to end it with
                                    status ``empty`` and an ``empty_reason``
"""

from __future__ import annotations

from mlobs.core.limits import CODE_MAX_CHARS
from mlobs.core.text import is_storable, shown


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


class CorruptArtifactError(MlobsError):
    """A cached version file is missing, truncated or edited (its digest no longer
    matches); the cache lookup turns it into a ``corrupt`` miss."""


class ManifestError(MlobsError):
    """A manifest file cannot be read: missing, not JSON, or not ``mlobs.manifest/1``."""


class InvalidRecordError(WarehouseError):
    """A record the warehouse refuses; the message names the record and the problem.

    Retrying the same record cannot succeed, unlike a database that is away.

    Args:
        message: what was refused and why.
        run_ids: the runs whose records were refused, when known (others of the same
            batch were written).
        refused: the run_id of each refused record, when the batch's other records were
            written (a sink counts exactly these as failed).
    """

    def __init__(self, message: str, run_ids: frozenset[str] | None = None,
                 refused: tuple[str, ...] | None = None) -> None:
        super().__init__(message)
        self.run_ids = run_ids if run_ids is not None or refused is None else frozenset(refused)
        self.refused = refused


def _code(label: str, value: object) -> str:
    # check_word's rule (mlobs.core.checks imports this module, so it cannot be used here)
    if isinstance(value, str) and value and len(value) <= CODE_MAX_CHARS and \
            is_storable(value):
        return value
    raise ConfigError(f"{label} must be a non-empty string of at most {CODE_MAX_CHARS} "
                      f"characters of valid Unicode, got {shown(value)}")


class ComponentError(MlobsError):
    """End the current component with status ``error`` and an explicit ``error_code``.

    Args:
        code: the error_code recorded, e.g. ``"model_load_failed"``,
            ``"triton_unavailable"`` (vocabulary: ARCHITECTURE §4, model system rules §7).
        message: human-readable detail; truncated in the record to a bound.
    """

    def __init__(self, code: str, message: str = "") -> None:
        _code("ComponentError code", code)
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
        _code("Empty reason", reason)
        super().__init__(reason)
        self.reason = reason
