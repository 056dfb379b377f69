"""Records → warehouse rows, with the checks that keep one bad record from failing a
batch: column bounds read from the models (string lengths, 32/64-bit integers, finite
floats, aware timestamps), statuses, labels (:mod:`mlobs.core.labels`), and JSON that
the columns can hold.

:class:`InvalidRecord` names the record; :class:`~mlobs.warehouse.store.WarehouseStore`
turns it into an :class:`~mlobs.core.errors.InvalidRecordError`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, Integer, String, Table

from mlobs.core.errors import ConfigError
from mlobs.core.labels import check_labels
from mlobs.core.limits import INT32_BOUND, INT64_BOUND
from mlobs.core.liveness import status_rank
from mlobs.core.records import (
    PREDICTION_STATUSES,
    RUN_STATUSES,
    STATUSES,
    ComponentRecord,
    EventRecord,
    ModelRef,
    RunRecord,
)
from mlobs.core.signature import model_signature as compute_signature
from mlobs.warehouse.models import (
    ArtifactIndex,
    ComponentRun,
    Event,
    ModelSignature,
    Run,
    RunLabel,
    index_key,
)

RUNS: Table = Run.__table__  # type: ignore[assignment]
COMPONENTS: Table = ComponentRun.__table__  # type: ignore[assignment]
SIGNATURES: Table = ModelSignature.__table__  # type: ignore[assignment]
EVENTS: Table = Event.__table__  # type: ignore[assignment]
ARTIFACT_INDEX: Table = ArtifactIndex.__table__  # type: ignore[assignment]
LABELS: Table = RunLabel.__table__  # type: ignore[assignment]

#: The artifact_index key columns, in key order.
INDEX_KEY = ("platform_id", "video_id", "config_hash", "sampling_policy_version",
             "pipeline_version")




class InvalidRecord(Exception):
    """One record cannot be stored (the message names it)."""


# -- turning records into rows (cheap checks on the hot path) ----------------------------

def _aware(value: Any) -> bool:
    return isinstance(value, datetime) and value.utcoffset() is not None


_STRING, _INT, _BOOL, _FLOAT = range(4)


def _column_checks(table: Table) -> tuple[tuple[str, int, int, bool], ...]:
    """(column, kind, bound, nullable) for the columns checked on the hot path.

    SQLite ignores VARCHAR lengths, integer widths and most types, PostgreSQL enforces
    them: checking here makes both backends accept and refuse the same records. JSON and
    datetime columns are checked elsewhere (serializer, record-specific checks).
    """
    checks = []
    for c in table.c:
        if isinstance(c.type, String) and c.type.length:
            checks.append((c.name, _STRING, c.type.length, bool(c.nullable)))
        elif isinstance(c.type, Integer):
            bound = INT64_BOUND if isinstance(c.type, BigInteger) else INT32_BOUND
            checks.append((c.name, _INT, bound, bool(c.nullable)))
        elif isinstance(c.type, Boolean):
            checks.append((c.name, _BOOL, 0, bool(c.nullable)))
        elif isinstance(c.type, Float):
            checks.append((c.name, _FLOAT, 0, bool(c.nullable)))
    return tuple(checks)


_RUN_CHECKS = _column_checks(RUNS)
_COMPONENT_CHECKS = _column_checks(COMPONENTS)
_EVENT_CHECKS = _column_checks(EVENTS)


def _column_problem(row: Mapping[str, Any],
                    checks: tuple[tuple[str, int, int, bool], ...]) -> str | None:
    """What is wrong with the checked columns of ``row`` (None: nothing)."""
    for name, kind, bound, nullable in checks:
        value = row[name]
        if value is None:
            if not nullable:
                return f"{name} is missing"
        elif kind == _STRING:
            if type(value) is not str or len(value) > bound:
                return f"{name} must be a string of at most {bound} characters, got {value!r:.80}"
        elif kind == _INT:
            if type(value) is not int or not -bound <= value < bound:
                return f"{name} must be an int in [-{bound}, {bound}), got {value!r:.80}"
        elif kind == _BOOL:
            if type(value) is not bool:
                return f"{name} must be a bool, got {value!r:.80}"
        elif type(value) not in (float, int) or not math.isfinite(value):
            return f"{name} must be a finite number, got {value!r:.80}"
    return None


def rows_of_runs(runs: Sequence[RunRecord]) -> list[dict[str, Any]]:
    """``runs`` rows (one per run_id: its latest state), without their labels."""
    return run_rows_and_labels(runs)[0]


def run_rows_and_labels(runs: Sequence[RunRecord]
                        ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``runs`` rows (one per run_id: its latest state) and the ``run_labels`` rows of the
    same records (run_id, key, value).

    Raises:
        InvalidRecord: a record is invalid (the message names it).
    """
    by_id: dict[str, dict[str, Any]] = {}
    labels_of: dict[str, dict[str, str]] = {}
    for run in runs:
        row = dict(vars(run))
        labels = row.pop("labels")
        what = f"run record {row.get('run_id')!r}"
        problem = _column_problem(row, _RUN_CHECKS)
        if problem:
            raise InvalidRecord(f"{what}: {problem}")
        try:
            labels = check_labels(labels) if labels else {}
        except ConfigError as exc:
            raise InvalidRecord(f"{what}: {exc}") from None
        if row["status"] not in RUN_STATUSES:
            raise InvalidRecord(f"{what}: status {row['status']!r} is not one of "
                                 f"{RUN_STATUSES}")
        if not _aware(row["started_at"]) or (row["finished_at"] is not None
                                             and not _aware(row["finished_at"])):
            raise InvalidRecord(f"{what}: started_at/finished_at must be timezone-aware "
                                 "datetimes")
        previous = by_id.get(run.run_id)
        # One row per run_id (PostgreSQL refuses to upsert a key twice in one statement);
        # like the upsert itself, a later state never demotes an earlier one.
        if previous is None or status_rank(run.status) >= status_rank(previous["status"]):
            by_id[run.run_id] = row
            labels_of[run.run_id] = labels
    label_rows = [{"run_id": run_id, "key": key, "value": value}
                  for run_id, labels in labels_of.items() for key, value in labels.items()]
    return list(by_id.values()), label_rows


def index_rows(run_rows: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """artifact_index candidates: per key, the latest successful run of the batch (one
    row per key: PostgreSQL refuses to upsert a key twice in one statement)."""
    best: dict[tuple[str, ...], dict[str, Any]] = {}
    for row in run_rows:
        if row["status"] != "ok" or row["finished_at"] is None:
            continue
        key = index_key(*(row[name] for name in INDEX_KEY))
        identity = tuple(key.values())
        previous = best.get(identity)
        if previous is None or ((row["finished_at"], row["run_id"])
                                > (previous["finished_at"], previous["latest_success_run_id"])):
            best[identity] = {**key, "latest_success_run_id": row["run_id"],
                              "finished_at": row["finished_at"], "updated_at": now}
    return list(best.values())


class ComponentBatch:
    """Component, signature and event rows of one write() call.

    Args:
        components: the records (a component_run_id given twice keeps its first record).

    Raises:
        InvalidRecord: a record is invalid (the message names it).
    """

    def __init__(self, components: Sequence[ComponentRecord]) -> None:
        self.component_rows: list[dict[str, Any]] = []
        self.event_rows: list[dict[str, Any]] = []
        # models tuple -> (signature, manifest dicts); computed once per distinct list.
        self._models: dict[tuple[ModelRef, ...], tuple[str | None, list[dict[str, str]]]] = {}
        self._first_seen: dict[str, tuple[datetime, list[dict[str, str]]]] = {}
        self._rows_with_models: list[tuple[dict[str, Any], str, list[dict[str, str]]]] = []
        seen: set[str] = set()
        for component in components:
            if component.component_run_id in seen:
                continue  # insert-or-ignore: the first copy wins
            seen.add(component.component_run_id)
            self._add(component)

    def _add(self, component: ComponentRecord) -> None:
        row = dict(vars(component))
        models_used = row.pop("models_used")
        events = row.pop("events")
        problem = _column_problem(row, _COMPONENT_CHECKS) or _component_problem(row)
        if problem is not None:
            raise InvalidRecord(f"{_component_what(row)}: {problem}")
        key = tuple(models_used)
        known = self._models.get(key)
        if known is None:
            known = self._models[key] = (compute_signature(key), [m.to_dict() for m in key])
        signature, dicts = known
        if row["model_signature"] != signature:
            raise InvalidRecord(f"{_component_what(row)}: model_signature "
                                 f"{row['model_signature']!r} is not the signature of its "
                                 f"models_used ({signature!r})")
        row["models_used_override"] = None
        if signature is not None:
            first = self._first_seen.get(signature)
            if first is None or row["started_at"] < first[0]:
                self._first_seen[signature] = (row["started_at"], dicts)
            self._rows_with_models.append((row, signature, dicts))
        self.component_rows.append(row)
        for seq, event in enumerate(events):
            self.event_rows.append(_event_row(event, seq, component))

    @property
    def signatures(self) -> list[str]:
        return list(self._first_seen)

    def signature_rows(self) -> list[dict[str, Any]]:
        return [{"model_signature": signature, "models": dicts, "first_seen_at": seen_at}
                for signature, (seen_at, dicts) in self._first_seen.items()]

    def set_overrides(self, stored: Mapping[str, list[dict[str, Any]]]) -> None:
        """Keep a component's own models list where it differs from the stored one."""
        for row, signature, dicts in self._rows_with_models:
            if stored.get(signature) != dicts:
                row["models_used_override"] = dicts


def _component_what(row: Mapping[str, Any]) -> str:
    return (f"component record {row.get('component_run_id')!r} (run {row.get('run_id')!r}, "
            f"component {row.get('component')!r})")


def _component_problem(row: Mapping[str, Any]) -> str | None:
    """The component rules the column checks do not cover (None: the row is fine)."""
    if row["status"] not in STATUSES:
        return f"status {row['status']!r} is not one of {STATUSES}"
    # Checked here too so that both backends refuse it with this message, not with an
    # IntegrityError from ck_component_runs_prediction_status.
    prediction_status = row["prediction_status"]
    if prediction_status is not None and prediction_status not in PREDICTION_STATUSES:
        return (f"prediction_status {prediction_status!r} is not one of "
                f"{PREDICTION_STATUSES} or None")
    if not (_aware(row["started_at"]) and _aware(row["finished_at"])):
        return "started_at and finished_at must be timezone-aware datetimes"
    return None


def _event_row(event: EventRecord, seq: int, component: ComponentRecord) -> dict[str, Any]:
    row = dict(vars(event))
    row["seq"] = seq
    problem = _column_problem(row, _EVENT_CHECKS)
    if problem is None and (event.run_id != component.run_id
                            or event.component_run_id != component.component_run_id):
        problem = (f"run_id/component_run_id ({event.run_id!r}, "
                   f"{event.component_run_id!r}) are not its component's")
    if problem is None and not _aware(event.occurred_at):
        problem = "occurred_at must be a timezone-aware datetime"
    if problem is not None:
        raise InvalidRecord(f"event record {row.get('event_id')!r} of "
                             f"{_component_what(vars(component))}: {problem}")
    return row


# -- naming the culprit of a failed write (slow path) ------------------------------------

def json_problem(run_rows: list[dict[str, Any]], batch: ComponentBatch) -> str | None:
    """The first record with a JSON column that cannot be serialised, and why (None: all
    can)."""
    for table, rows, key in ((RUNS, run_rows, "run_id"),
                             (COMPONENTS, batch.component_rows, "component_run_id"),
                             (EVENTS, batch.event_rows, "event_id")):
        for row in rows:
            problem = _json_problem(table, row)
            if problem:
                return f"{table.name} record {row[key]}: {problem}"
    return None


def _json_problem(table: Table, row: Mapping[str, Any]) -> str | None:
    """Why a JSON column of this row cannot be serialised (the hot path checks the rest)."""
    for column in table.c:
        value = row.get(column.name)
        if value is not None and isinstance(column.type, JSON):
            try:
                json.dumps(value, allow_nan=False)
            except (TypeError, ValueError) as exc:
                return f"{column.name} is not JSON (NaN and infinity excluded): {exc}"
    return None
