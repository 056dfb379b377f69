"""Writing records into the warehouse and reading them back (ARCHITECTURE §4, §6).

:class:`WarehouseStore` is what the warehouse sink, ``mlobs ingest`` and the CLI use.
Writes are idempotent, so a batch can be retried or replayed from manifests:

* ``runs`` are upserted (a run is written as ``running`` and again with its final
  status), except that a ``running`` row never replaces a finished one (a late or
  replayed snapshot must not undo the final state);
* ``run_labels`` of the runs written are replaced by the records' labels (set when a run
  opens, so each record of a run carries the same: :mod:`mlobs.warehouse.labels`);
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

from collections import ChainMap
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine, and_, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from mlobs.core.errors import InvalidRecordError, WarehouseError
from mlobs.core.liveness import CRASHED, FINISHED, mark_crashed
from mlobs.core.records import ComponentRecord, RunRecord
from mlobs.warehouse.copy_writer import copy_insert_or_ignore
from mlobs.warehouse.engine import (
    ReadingConnection,
    create_warehouse_engine,
    display_url,
    ingestion_clock,
)
from mlobs.warehouse.labels import label_upsert, labels_of, replace_labels
from mlobs.warehouse.migrate import check_schema, needs_managed_upgrade, upgrade
from mlobs.warehouse.models import UNSET, index_key
from mlobs.warehouse.reading import read_run
from mlobs.warehouse.rows import (
    ARTIFACT_INDEX,
    COMPONENTS,
    EVENTS,
    INDEX_KEY,
    RUNS,
    SIGNATURES,
    ComponentBatch,
    InvalidRecord,
    index_rows,
    json_problem,
    run_rows_and_labels,
)
from mlobs.warehouse.run_queries import RunFilter, runs_with_id_prefix


class IndexEntry(NamedTuple):
    """One ``artifact_index`` row: the latest successful run of a key."""

    latest_success_run_id: str
    finished_at: datetime
    updated_at: datetime

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
            # A finished run is final: a "running" snapshot arriving late is ignored, and
            # a "crashed" mark replaces only a run still running (or marked before).
            # (no IN list: executemany cannot expand one)
            where=or_(RUNS.c.status == "running",
                      *(upsert.excluded.status == status for status in FINISHED),
                      and_(upsert.excluded.status == CRASHED, RUNS.c.status == CRASHED)),
        )
        # RETURNING: the rows actually inserted (none for signatures already stored).
        self._insert_signatures = insert(SIGNATURES).on_conflict_do_nothing(
            index_elements=[SIGNATURES.c.model_signature]).returning(
            SIGNATURES.c.model_signature, SIGNATURES.c.models)
        # ingested_at: the database's clock (incremental rollups follow it; COPY takes
        # the column's default, the same clock).
        self._insert_components = insert(COMPONENTS).values(
            ingested_at=ingestion_clock(dialect)).on_conflict_do_nothing(
            index_elements=[COMPONENTS.c.component_run_id])
        self._insert_events = insert(EVENTS).on_conflict_do_nothing(
            index_elements=[EVENTS.c.event_id])
        self._upsert_labels = label_upsert(dialect)
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
            run_rows, label_rows = run_rows_and_labels(runs)
            batch = ComponentBatch(components)
        except InvalidRecord as exc:
            raise InvalidRecordError(str(exc)) from None
        try:
            with self._engine.begin() as conn:
                # Runs first: component and event rows reference them.
                if run_rows:
                    conn.execute(self._upsert_runs, run_rows)
                    replace_labels(conn, self._upsert_labels,
                                   [row["run_id"] for row in run_rows], label_rows)
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
            problem = json_problem(run_rows, batch)
            if problem is not None:
                raise InvalidRecordError(problem) from exc
            raise WarehouseError(self._explain_failure(exc, run_rows, batch)) from exc
        # Only once committed: a rolled-back insert left no row behind.
        self._stored_models.update(stored)

    def _write_signatures(self, conn: Connection,
                          batch: ComponentBatch) -> dict[str, list[dict[str, Any]]]:
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
        rows = index_rows(run_rows, now)
        if rows:
            conn.execute(self._upsert_index, rows)
        # Rare: a run the index names was written again as "error" or "crashed" (a "running" snapshot
        # never replaces a finished run). Its key goes back to the latest other success.
        failed = [row["run_id"] for row in run_rows if row["status"] in ("error", CRASHED)]
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
                         batch: ComponentBatch) -> str:
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

    def list_runs(self, *, limit: int = 50, **filters: Any) -> list[RunRecord]:
        """Runs, newest ``started_at`` first, optionally filtered, each with its labels.

        Args:
            limit: at most this many runs.
            filters: the fields of :class:`~mlobs.warehouse.run_queries.RunFilter`
                (platform_id, video_id, status, silent_since, labels, since, until,
                pipeline_version, profile); every one given must match.

        Raises:
            ValueError: ``limit`` is below 1.
            WarehouseError: the database cannot be read.
        """
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        query = (select(RUNS).where(*RunFilter(**filters).conditions())
                 .order_by(RUNS.c.started_at.desc(), RUNS.c.run_id.desc()).limit(limit))
        with self._reading() as conn:
            runs = [RunRecord(**row._asdict()) for row in conn.execute(query)]
            stored_labels = labels_of(conn, [run.run_id for run in runs])
        for run in runs:
            run.labels = stored_labels.get(run.run_id, {})
        return runs

    def count_runs(self, **filters: Any) -> int:
        """How many runs :meth:`list_runs` with these filters would list without a limit.

        Raises:
            WarehouseError: the database cannot be read.
        """
        query = select(func.count()).select_from(RUNS).where(*RunFilter(**filters).conditions())
        with self._reading() as conn:
            return int(conn.scalar(query) or 0)

    def runs_with_id_prefix(self, prefix: str,
                            limit: int = 10) -> tuple[int, list[dict[str, Any]]]:
        """How many runs' ids start with ``prefix``, and the newest ``limit`` of them
        (:func:`mlobs.warehouse.run_queries.runs_with_id_prefix`).

        Raises:
            WarehouseError: the database cannot be read.
        """
        with self._reading() as conn:
            return runs_with_id_prefix(conn, prefix, limit)

    def mark_crashed(self, run_ids: Iterable[str], silent_since: datetime) -> list[str]:
        """Write ``crashed`` on those of ``run_ids`` still ``running`` and silent since
        before ``silent_since`` (error_code ``crashed``; finished_at: the last sign of
        life). A run that finishes later still replaces this with its final record.

        Returns:
            The run_ids marked.

        Raises:
            WarehouseError: the database cannot be written.
        """
        wanted = list(run_ids)
        alive_at = func.coalesce(RUNS.c.heartbeat_at, RUNS.c.started_at)
        marked: list[str] = []
        try:
            # Read first, then write in a transaction that starts with its UPDATE: on
            # SQLite (WAL) a read transaction turned writer fails at once when another
            # process wrote meanwhile (a live run's heartbeat), whatever the busy timeout.
            with self._reading() as conn:
                # chunks of 500 keep the IN (...) lists below every backend's bind limit
                rows = [row for start in range(0, len(wanted), 500)
                        for row in conn.execute(select(RUNS).where(
                            RUNS.c.run_id.in_(wanted[start:start + 500]),
                            RUNS.c.status == "running", alive_at < silent_since))]
            with self._engine.begin() as conn:
                for row in rows:
                    run = mark_crashed(RunRecord(**row._asdict()))
                    updated = conn.execute(RUNS.update().where(
                        RUNS.c.run_id == run.run_id, RUNS.c.status == "running",
                        alive_at < silent_since).values(  # still silent now
                        status=run.status, error_code=run.error_code,
                        error_message=run.error_message, finished_at=run.finished_at))
                    if updated.rowcount:
                        marked.append(run.run_id)
        except SQLAlchemyError as exc:
            raise WarehouseError(f"cannot mark runs crashed in {display_url(self._engine)}: "
                                 f"{exc}") from exc
        return marked

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
            return read_run(conn, run_id)

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

    def _reading(self) -> ReadingConnection:
        return ReadingConnection(self._engine)
