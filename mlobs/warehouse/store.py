"""Writing records into the warehouse and reading them back (ARCHITECTURE §4, §6).

:class:`WarehouseStore` is what the warehouse sink, ``mlobs ingest`` and the CLI use.
Writes are idempotent, so a batch can be retried or replayed from manifests:

* ``runs`` are upserted (a run is written as ``running`` and again with its final
  status), except that a ``running`` row never replaces a finished one (a late or
  replayed snapshot must not undo the final state);
* ``model_signatures``, ``component_runs`` and ``events`` are insert-or-ignore by primary
  key: the first write of a record wins (on PostgreSQL, component_runs and events go
  through COPY: :mod:`mlobs.warehouse.copy_writer`);
* ``artifact_index`` (orchestration notes §5) is maintained in the same transaction: a
  run with status ``ok`` and a ``finished_at`` becomes its key's
  ``latest_success_run_id`` when it finished later than the run stored there (equal
  times: the greater run_id), so replaying older runs never moves the index backwards;
  a run indexed there that is written again as ``error`` hands its key back to the
  latest other successful run of that key (or the row goes).

A component's ``models_used`` is stored once per ``model_signature`` in
``model_signatures``; since the signature ignores the device index and the order of the
models, a component whose list differs from the stored one keeps its own list in
``component_runs.models_used_override``. :meth:`WarehouseStore.get_run` therefore gives
back records equal, field by field, to those written.
"""

from __future__ import annotations

import json
import math
from collections import ChainMap
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, NamedTuple

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Connection,
    Engine,
    Float,
    Integer,
    String,
    Table,
    and_,
    func,
    or_,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from mlobs.core.errors import InvalidRecordError, WarehouseError
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
from mlobs.warehouse.copy_writer import copy_insert_or_ignore
from mlobs.warehouse.engine import create_warehouse_engine, display_url
from mlobs.warehouse.migrate import check_schema, needs_managed_upgrade, upgrade
from mlobs.warehouse.models import (
    UNSET,
    ArtifactIndex,
    ComponentRun,
    Event,
    ModelSignature,
    Run,
    index_key,
)

RUNS: Table = Run.__table__  # type: ignore[assignment]
COMPONENTS: Table = ComponentRun.__table__  # type: ignore[assignment]
SIGNATURES: Table = ModelSignature.__table__  # type: ignore[assignment]
EVENTS: Table = Event.__table__  # type: ignore[assignment]
ARTIFACT_INDEX: Table = ArtifactIndex.__table__  # type: ignore[assignment]

#: The artifact_index key columns, in key order.
INDEX_KEY = ("platform_id", "video_id", "config_hash", "sampling_policy_version",
             "pipeline_version")


class IndexEntry(NamedTuple):
    """One ``artifact_index`` row: the latest successful run of a key."""

    latest_success_run_id: str
    finished_at: datetime
    updated_at: datetime

_INT32 = 2**31
_INT64 = 2**63


class _InvalidRecord(Exception):
    """Internal: one record cannot be stored; turned into a WarehouseError by write()."""


class WarehouseStore:
    """Read and write mlobs records in one SQL warehouse (SQLite or PostgreSQL).

    Args:
        db_url: warehouse URL, e.g. ``"sqlite:////data/mlobs/warehouse.db"`` or
            ``"postgresql+psycopg://mlobs@db/mlobs"``.
        manage_schema: mlobs owns this database (the embedded default): create the schema
            when it has no table, upgrade it when it is at an older mlobs revision. Other
            databases are never migrated here (``mlobs db upgrade``).

    Raises:
        SchemaOutOfDateError: the schema is not at the revision this mlobs needs; the
            message says which command to run.
        WarehouseError: unsupported URL or unreachable database.

    Safe to share between threads (each call takes its own connection). Use as a context
    manager or call :meth:`close`.
    """

    def __init__(self, db_url: str | URL, *, manage_schema: bool = False) -> None:
        self._engine = create_warehouse_engine(db_url)
        try:
            if manage_schema and needs_managed_upgrade(self._engine):
                try:
                    upgrade(self._engine)
                except WarehouseError:
                    # Another process may have migrated it at the same moment; the check
                    # below tells whether the schema is usable after all.
                    pass
            check_schema(self._engine)
        except SQLAlchemyError as exc:
            self._engine.dispose()
            raise WarehouseError(f"cannot open the warehouse at {display_url(self._engine)}: "
                                 f"{exc}") from exc
        except BaseException:
            self._engine.dispose()
            raise
        #: model_signatures.models this store has seen committed, by signature (such rows
        #: never change): later batches need not read them back.
        self._stored_models: dict[str, list[dict[str, Any]]] = {}
        self._prepare_statements()

    # -- setup ---------------------------------------------------------------------------

    def _prepare_statements(self) -> None:
        dialect = self._engine.dialect.name
        #: component_runs and events go through COPY (see mlobs.warehouse.copy_writer).
        self._use_copy = dialect == "postgresql" and self._engine.dialect.driver == "psycopg"
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        upsert = insert(RUNS)
        self._upsert_runs = upsert.on_conflict_do_update(
            index_elements=[RUNS.c.run_id],
            set_={c.name: upsert.excluded[c.name] for c in RUNS.c if not c.primary_key},
            # A finished run is final: a "running" snapshot arriving late is ignored.
            where=or_(RUNS.c.status == "running", upsert.excluded.status != "running"),
        )
        # RETURNING: the rows actually inserted (none for signatures already stored).
        self._insert_signatures = insert(SIGNATURES).on_conflict_do_nothing(
            index_elements=[SIGNATURES.c.model_signature]).returning(
            SIGNATURES.c.model_signature, SIGNATURES.c.models)
        self._insert_components = insert(COMPONENTS).on_conflict_do_nothing(
            index_elements=[COMPONENTS.c.component_run_id])
        self._insert_events = insert(EVENTS).on_conflict_do_nothing(
            index_elements=[EVENTS.c.event_id])
        index = insert(ARTIFACT_INDEX)
        newer = index.excluded
        self._upsert_index = index.on_conflict_do_update(
            index_elements=[ARTIFACT_INDEX.c[name] for name in INDEX_KEY],
            set_={name: newer[name] for name in ("latest_success_run_id", "finished_at",
                                                 "updated_at")},
            # Only a later success moves the row (ties: the greater run_id, so the outcome
            # does not depend on the order runs arrive in); the same run again is a no-op.
            where=or_(newer.finished_at > ARTIFACT_INDEX.c.finished_at,
                      and_(newer.finished_at == ARTIFACT_INDEX.c.finished_at,
                           newer.latest_success_run_id
                           > ARTIFACT_INDEX.c.latest_success_run_id)),
        )

    @property
    def engine(self) -> Engine:
        """The underlying engine (for read-only queries by reports and rollups)."""
        return self._engine

    @property
    def url(self) -> str:
        """The warehouse URL with any password hidden."""
        return display_url(self._engine)

    def close(self) -> None:
        """Release the connection pool. The store cannot be used afterwards."""
        self._engine.dispose()

    def __enter__(self) -> WarehouseStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- writing -------------------------------------------------------------------------

    def write(self, runs: Sequence[RunRecord], components: Sequence[ComponentRecord]) -> None:
        """Write runs and components (with their events) in one transaction, idempotently.

        Args:
            runs: run records; a run_id given twice keeps its last finished state.
            components: component records; their runs must be in ``runs`` or already
                stored. ``model_signature`` must be ``mlobs.core.signature.model_signature``
                of ``models_used`` (None when no model was used), and each event must
                carry its component's run_id and component_run_id.

        Raises:
            InvalidRecordError: a record is invalid (the message names its id and the
                problem; nothing of the batch is written).
            WarehouseError: the database failed (locked beyond
                the busy timeout, connection lost, ...).
        """
        if not runs and not components:
            return
        try:
            run_rows = _run_rows(runs)
            batch = _ComponentBatch(components)
        except _InvalidRecord as exc:
            raise InvalidRecordError(str(exc)) from None
        try:
            with self._engine.begin() as conn:
                # Runs first: component and event rows reference them.
                if run_rows:
                    conn.execute(self._upsert_runs, run_rows)
                stored = self._write_signatures(conn, batch)
                if self._use_copy:
                    # PostgreSQL: COPY, still insert-or-ignore by primary key (a stored key
                    # sends the rows through a staging table + ON CONFLICT DO NOTHING).
                    copy_insert_or_ignore(conn, COMPONENTS, batch.component_rows)
                    copy_insert_or_ignore(conn, EVENTS, batch.event_rows)
                else:
                    if batch.component_rows:
                        conn.execute(self._insert_components, batch.component_rows)
                    if batch.event_rows:
                        conn.execute(self._insert_events, batch.event_rows)
                if run_rows:
                    self._update_index(conn, run_rows)
        except (SQLAlchemyError, ValueError, TypeError) as exc:
            # ValueError/TypeError: psycopg serialises JSON parameters itself, outside
            # SQLAlchemy's error wrapping (and the COPY path serialises them itself).
            # A value JSON cannot hold (NaN, an object) is the record's fault, not the
            # database's: writing it again cannot succeed.
            not_json = _not_json(run_rows, batch)
            if not_json is not None:
                raise InvalidRecordError(not_json) from exc
            raise WarehouseError(self._explain_failure(exc, run_rows, batch)) from exc
        # Only once committed: a rolled-back insert left no row behind.
        self._stored_models.update(stored)

    def _write_signatures(self, conn: Connection,
                          batch: _ComponentBatch) -> dict[str, list[dict[str, Any]]]:
        """Insert-or-ignore the batch's signature rows and set its components' overrides.

        Returns the rows this write inserted or read (signature -> models). A signature
        this store has seen committed is not read back; it is still inserted-or-ignored,
        so a warehouse emptied behind the store's back gets the row again (the insert
        returns it, and the returned models are the ones the overrides compare with).
        """
        signature_rows = batch.signature_rows()
        if not signature_rows:
            return {}
        stored = dict(conn.execute(  # type: ignore[arg-type]
            self._insert_signatures, signature_rows).all())
        unknown = [signature for signature in batch.signatures
                   if signature not in stored and signature not in self._stored_models]
        if unknown:
            stored.update(conn.execute(  # type: ignore[arg-type]
                select(SIGNATURES.c.model_signature, SIGNATURES.c.models)
                .where(SIGNATURES.c.model_signature.in_(unknown))).all())
        batch.set_overrides(ChainMap(stored, self._stored_models))
        return stored

    def _update_index(self, conn: Connection, run_rows: list[dict[str, Any]]) -> None:
        """Maintain ``artifact_index`` for the runs of one write (inside its transaction)."""
        now = datetime.now(timezone.utc)
        rows = _index_rows(run_rows, now)
        if rows:
            conn.execute(self._upsert_index, rows)
        # Rare: a run the index names was written again as "error" (a "running" snapshot
        # never replaces a finished run). Its key goes back to the latest other success.
        failed = [row["run_id"] for row in run_rows if row["status"] == "error"]
        if not failed:
            return
        stale = conn.execute(select(*(ARTIFACT_INDEX.c[name] for name in INDEX_KEY)).where(
            ARTIFACT_INDEX.c.latest_success_run_id.in_(failed))).all()
        for key_row in stale:
            key = dict(key_row._mapping)
            where = [ARTIFACT_INDEX.c[name] == key[name] for name in INDEX_KEY]
            conn.execute(ARTIFACT_INDEX.delete().where(*where))
            best = conn.execute(
                select(RUNS.c.run_id, RUNS.c.finished_at)
                .where(RUNS.c.status == "ok", RUNS.c.finished_at.is_not(None),
                       *(func.coalesce(RUNS.c[name], UNSET) == key[name]
                         for name in INDEX_KEY))
                .order_by(RUNS.c.finished_at.desc(), RUNS.c.run_id.desc()).limit(1)).first()
            if best is not None:
                conn.execute(ARTIFACT_INDEX.insert(), [{
                    **key, "latest_success_run_id": best.run_id,
                    "finished_at": best.finished_at, "updated_at": now}])

    def _explain_failure(self, exc: Exception, run_rows: list[dict[str, Any]],
                         batch: _ComponentBatch) -> str:
        """Name the record behind a failed write when one can be found (slow path)."""
        if isinstance(exc, IntegrityError):
            try:
                found = self._find_conflict(run_rows, batch.component_rows)
            except SQLAlchemyError:
                found = None
            if found:
                return found
        first_line = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        return (f"writing {len(run_rows)} run(s) and {len(batch.component_rows)} "
                f"component(s) to {self.url} failed: {first_line}")

    def _find_conflict(self, run_rows: list[dict[str, Any]],
                       component_rows: list[dict[str, Any]]) -> str | None:
        """The component whose run is neither in the batch nor stored (the foreign key a
        failed write broke), or None."""
        batch_runs = {row["run_id"] for row in run_rows}
        outside = {row["run_id"] for row in component_rows} - batch_runs
        if not outside:
            return None
        with self._engine.connect() as conn:
            known = set(conn.scalars(select(RUNS.c.run_id).where(RUNS.c.run_id.in_(outside))))
        for row in component_rows:
            if row["run_id"] not in batch_runs and row["run_id"] not in known:
                return (f"component_runs record {row['component_run_id']}: its run "
                        f"{row['run_id']} is neither in this batch nor in the warehouse")
        return None

    # -- reading -------------------------------------------------------------------------

    def list_runs(self, *, limit: int = 50, platform_id: str | None = None,
                  video_id: str | None = None, status: str | None = None) -> list[RunRecord]:
        """Runs, newest ``started_at`` first, optionally filtered (exact matches).

        Args:
            limit: at most this many runs.

        Raises:
            ValueError: ``limit`` is below 1.
            WarehouseError: the database cannot be read.
        """
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        query = select(RUNS).order_by(RUNS.c.started_at.desc(), RUNS.c.run_id.desc())
        for column, value in (("platform_id", platform_id), ("video_id", video_id),
                              ("status", status)):
            if value is not None:
                query = query.where(RUNS.c[column] == value)
        query = query.limit(limit)
        with self._reading() as conn:
            return [RunRecord(**row._asdict()) for row in conn.execute(query)]

    def component_counts(self, run_ids: Iterable[str]) -> dict[str, int]:
        """Number of component records per run_id (runs without any are left out).

        Raises:
            WarehouseError: the database cannot be read.
        """
        ids = list(run_ids)
        if not ids:
            return {}
        query = (select(COMPONENTS.c.run_id, func.count()).where(COMPONENTS.c.run_id.in_(ids))
                 .group_by(COMPONENTS.c.run_id))
        with self._reading() as conn:
            return {run_id: count for run_id, count in conn.execute(query)}

    def run_statuses(self, run_ids: Iterable[str]) -> dict[str, str]:
        """Status per run_id for the runs the warehouse holds (unknown ids are left out).

        Raises:
            WarehouseError: the database cannot be read.
        """
        ids = list(run_ids)
        if not ids:
            return {}
        query = select(RUNS.c.run_id, RUNS.c.status).where(RUNS.c.run_id.in_(ids))
        with self._reading() as conn:
            return {run_id: status for run_id, status in conn.execute(query)}

    def component_run_ids(self, run_id: str) -> set[str]:
        """The component_run_ids stored for ``run_id`` (empty for an unknown run): a light
        query for polling, where :meth:`get_run` reads every column and event.

        Raises:
            WarehouseError: the database cannot be read.
        """
        query = select(COMPONENTS.c.component_run_id).where(COMPONENTS.c.run_id == run_id)
        with self._reading() as conn:
            return set(conn.scalars(query))

    def get_run(self, run_id: str) -> tuple[RunRecord, list[ComponentRecord]] | None:
        """One run and its components (ordered by ``started_at``), or None if unknown.

        Components come back with ``models_used`` and ``events`` (ordered as written), so
        that the records equal those given to :meth:`write`.

        Raises:
            WarehouseError: the database cannot be read.
        """
        with self._reading() as conn:
            run_row = conn.execute(select(RUNS).where(RUNS.c.run_id == run_id)).first()
            if run_row is None:
                return None
            component_rows = conn.execute(
                select(COMPONENTS).where(COMPONENTS.c.run_id == run_id).order_by(
                    COMPONENTS.c.started_at, COMPONENTS.c.component, COMPONENTS.c.attempt,
                    COMPONENTS.c.component_run_id)).all()
            signatures = {row.model_signature for row in component_rows
                          if row.model_signature and row.models_used_override is None}
            models: dict[str, list[dict[str, Any]]] = {}
            if signatures:
                models = dict(conn.execute(  # type: ignore[arg-type]
                    select(SIGNATURES.c.model_signature, SIGNATURES.c.models)
                    .where(SIGNATURES.c.model_signature.in_(signatures))).all())
            events: dict[str | None, list[EventRecord]] = {}
            for row in conn.execute(select(EVENTS).where(EVENTS.c.run_id == run_id)
                                    .order_by(EVENTS.c.component_run_id, EVENTS.c.seq)):
                data = row._asdict()
                del data["seq"]
                events.setdefault(row.component_run_id, []).append(EventRecord(**data))
        components = []
        for row in component_rows:
            data = row._asdict()
            override = data.pop("models_used_override")
            used = override if override is not None else models.get(row.model_signature, [])
            components.append(ComponentRecord(
                **data, models_used=[ModelRef.from_dict(m) for m in used or []],
                events=events.get(row.component_run_id, [])))
        return RunRecord(**run_row._asdict()), components

    def latest_success(self, platform_id: str, video_id: str, *, config_hash: str | None,
                       sampling_policy_version: str | None,
                       pipeline_version: str | None) -> IndexEntry | None:
        """The ``artifact_index`` row of this key, or None when no run of it succeeded.

        None parts match runs that recorded None (stored as ``''``, see
        :class:`~mlobs.warehouse.models.ArtifactIndex`). Age rules are the caller's
        (:func:`mlobs.warehouse.reuse.reusable_run`).

        Raises:
            WarehouseError: the database cannot be read.
        """
        key = index_key(platform_id, video_id, config_hash, sampling_policy_version,
                        pipeline_version)
        query = select(ARTIFACT_INDEX.c.latest_success_run_id, ARTIFACT_INDEX.c.finished_at,
                       ARTIFACT_INDEX.c.updated_at).where(
            *(ARTIFACT_INDEX.c[name] == key[name] for name in INDEX_KEY))
        with self._reading() as conn:
            row = conn.execute(query).first()
        return None if row is None else IndexEntry(*row)

    def _reading(self) -> _ReadingConnection:
        return _ReadingConnection(self._engine)


class _ReadingConnection:
    """``with engine.connect()`` that turns driver errors into WarehouseError."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._conn: Connection | None = None

    def __enter__(self) -> Connection:
        try:
            self._conn = self._engine.connect()
        except SQLAlchemyError as exc:
            raise WarehouseError(f"cannot read the warehouse at {display_url(self._engine)}: "
                                 f"{exc}") from exc
        return self._conn

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:
        assert self._conn is not None
        self._conn.close()
        if isinstance(exc, SQLAlchemyError):
            raise WarehouseError(f"cannot read the warehouse at {display_url(self._engine)}: "
                                 f"{exc}") from exc


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
            bound = _INT64 if isinstance(c.type, BigInteger) else _INT32
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


def _run_rows(runs: Sequence[RunRecord]) -> list[dict[str, Any]]:
    by_id: dict[str, dict[str, Any]] = {}
    for run in runs:
        row = dict(vars(run))
        what = f"run record {row.get('run_id')!r}"
        problem = _column_problem(row, _RUN_CHECKS)
        if problem:
            raise _InvalidRecord(f"{what}: {problem}")
        if row["status"] not in RUN_STATUSES:
            raise _InvalidRecord(f"{what}: status {row['status']!r} is not one of "
                                 f"{RUN_STATUSES}")
        if not _aware(row["started_at"]) or (row["finished_at"] is not None
                                             and not _aware(row["finished_at"])):
            raise _InvalidRecord(f"{what}: started_at/finished_at must be timezone-aware "
                                 "datetimes")
        previous = by_id.get(run.run_id)
        # One row per run_id (PostgreSQL refuses to upsert a key twice in one statement);
        # like the upsert itself, a later "running" state does not replace a finished one.
        if previous is None or previous["status"] == "running" or run.status != "running":
            by_id[run.run_id] = row
    return list(by_id.values())


def _index_rows(run_rows: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
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


class _ComponentBatch:
    """Component, signature and event rows of one write() call.

    Args:
        components: the records (a component_run_id given twice keeps its first record).

    Raises:
        _InvalidRecord: a record is invalid (the message names it).
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
            raise _InvalidRecord(f"{_component_what(row)}: {problem}")
        key = tuple(models_used)
        known = self._models.get(key)
        if known is None:
            known = self._models[key] = (compute_signature(key), [m.to_dict() for m in key])
        signature, dicts = known
        if row["model_signature"] != signature:
            raise _InvalidRecord(f"{_component_what(row)}: model_signature "
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
        raise _InvalidRecord(f"event record {row.get('event_id')!r} of "
                             f"{_component_what(vars(component))}: {problem}")
    return row


# -- naming the culprit of a failed write (slow path) ------------------------------------

def _not_json(run_rows: list[dict[str, Any]], batch: _ComponentBatch) -> str | None:
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
