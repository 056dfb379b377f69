"""The compact form of a component record: a JSON array of its fields, in a fixed order.

The pipeline's process writes a finished component to the spool in this form, built from
the invocation's values without making a :class:`~mlobs.core.records.ComponentRecord`
(measured on the sink thread: a third of the CPU per record of the dataclass, its
``to_dict`` and their JSON); the warehouse writer, in its own process, turns it back into
the record. Layout::

    [1, component_run_id, run_id, component, ..., metrics, events]

The leading ``1`` is the layout's version; the fields follow :data:`FIELDS` (the
record's own order), with ``started_at`` and ``finished_at`` as integer microseconds
since the Unix epoch (UTC), ``models_used`` as 7-element arrays in ModelRef's order, and
``events`` as ``[event_id, kind, occurred_at_us, attributes]``. A later version may add
fields at the end only; a shorter array gets the record's defaults for the missing ones.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from mlobs.core.records import ComponentRecord, EventRecord, ModelRef

COMPACT_VERSION = 1
#: ComponentRecord's fields in a compact array, after the version (its declaration order).
FIELDS = tuple(f.name for f in dataclasses.fields(ComponentRecord))
_INDEX = {name: index for index, name in enumerate(FIELDS)}
_STARTED, _FINISHED = _INDEX["started_at"], _INDEX["finished_at"]
_MODELS, _EVENTS = _INDEX["models_used"], _INDEX["events"]
_REQUIRED_FIELDS = sum(f.default is dataclasses.MISSING
                       and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
                       for f in dataclasses.fields(ComponentRecord))
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)


def epoch_us(value: datetime) -> int:
    """A timezone-aware datetime as integer microseconds since the Unix epoch."""
    return (value - _EPOCH) // _US


def from_epoch_us(value: int) -> datetime:
    """Inverse of :func:`epoch_us` (UTC)."""
    return _EPOCH + timedelta(microseconds=value)


def model_values(model: ModelRef) -> tuple[str, ...]:
    """A ModelRef's fields in its own order (the compact ``models_used`` entry)."""
    return (model.name, model.version, model.weights_digest, model.runtime, model.engine,
            model.precision, model.device)


def compact_line(values: list[Any]) -> bytes:
    """The spool line (with its newline) of a component's compact values.

    Args:
        values: the fields in :data:`FIELDS` order, in their compact forms (see the
            module docstring); finite floats only.

    Raises:
        TypeError: a value JSON cannot hold (an int beyond 64 bits, an object).
    """
    return orjson.dumps([COMPACT_VERSION, *values]) + b"\n"


def is_compact(line: bytes | str) -> bool:
    """Whether a spool line holds a compact component (an array, not an object)."""
    return line[:1] in (b"[", "[")


def record_from_compact(row: list[Any]) -> ComponentRecord:
    """The ComponentRecord of a decoded compact array.

    Raises:
        ValueError: an unknown version, or fewer fields than the record requires.
        TypeError, KeyError, IndexError: fields of the wrong shape.
    """
    if not row or row[0] != COMPACT_VERSION:
        raise ValueError(f"unknown compact component version {row[:1]!r}")
    values = list(row[1:len(FIELDS) + 1])
    if len(values) < _REQUIRED_FIELDS:
        raise ValueError(f"a compact component needs {_REQUIRED_FIELDS} fields, "
                         f"got {len(values)}")
    for index in (_STARTED, _FINISHED):
        values[index] = from_epoch_us(values[index])
    record = ComponentRecord(*values)
    if len(values) > _MODELS:
        record.models_used = [ModelRef(*model) for model in record.models_used]
    if len(values) > _EVENTS:
        record.events = [EventRecord(event_id, record.run_id, record.component_run_id,
                                     kind, from_epoch_us(at_us), attributes)
                         for event_id, kind, at_us, attributes in record.events]
    return record
