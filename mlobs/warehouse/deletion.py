"""Deleting warehouse rows: of given runs (``mlobs gc``) or of a whole video (``mlobs forget``).

Every row that belongs to a run goes in one transaction, children first (so the counts are
exact and no backend has to rely on ``ON DELETE CASCADE``):

* ``events`` and ``component_runs`` whose ``run_id`` is one of the runs;
* ``run_labels`` of the runs (when that table exists: revision 0008 adds it);
* ``artifact_index`` rows (when that table exists: it is looked up with
  :func:`sqlalchemy.inspect`, and reflected, so this module works before and after the
  revision that adds it) whose ``run_id`` or ``*_run_id`` column names one of the runs, and,
  for a video, every row with its ``platform_id``/``video_id``;
* the ``runs`` rows themselves.

``model_signatures`` (which models a signature stands for) and ``component_rollups``
(aggregates per component and model) name no run or video and are left alone.

Only the tables are needed, not a particular revision: a privacy deletion must work on a
warehouse that is one migration behind. A missing table counts as zero rows.
Functions taking ``db`` accept a URL (an engine is made and disposed of) or an
:class:`sqlalchemy.Engine` (used as is).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection, Engine, MetaData, Table, delete, func, inspect, or_, select
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError

from mlobs.core.errors import WarehouseError
from mlobs.warehouse.engine import display_url, engine_for, ingestion_clock
from mlobs.warehouse.models import (
    DELETION_MARK,
    ComponentRun,
    Event,
    RollupWatermark,
    Run,
    RunLabel,
)

RUNS: Table = Run.__table__  # type: ignore[assignment]
COMPONENTS: Table = ComponentRun.__table__  # type: ignore[assignment]
EVENTS: Table = Event.__table__  # type: ignore[assignment]
WATERMARKS: Table = RollupWatermark.__table__  # type: ignore[assignment]
LABELS: Table = RunLabel.__table__  # type: ignore[assignment]

ARTIFACT_INDEX = "artifact_index"

#: run_ids per ``IN (...)`` list: below every backend's bind-parameter limit.
CHUNK = 500


@dataclass
class RowCounts:
    """Rows per table (deleted, or that a deletion would delete)."""

    runs: int = 0
    component_runs: int = 0
    events: int = 0
    run_labels: int = 0
    artifact_index: int = 0

    @property
    def total(self) -> int:
        return (self.runs + self.component_runs + self.events + self.run_labels
                + self.artifact_index)

    def __add__(self, other: RowCounts) -> RowCounts:
        return RowCounts(**{f.name: getattr(self, f.name) + getattr(other, f.name)
                            for f in dataclasses.fields(self)})

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        """``"3 runs, 15 component_runs, 4 events, 6 run_labels, 0 artifact_index"``."""
        return ", ".join(f"{value} {name}" for name, value in self.to_dict().items())


def _chunks(values: Sequence[str]) -> Iterator[list[str]]:
    for start in range(0, len(values), CHUNK):
        yield list(values[start:start + CHUNK])


def artifact_index_table(conn: Connection) -> Table | None:
    """The reflected ``artifact_index`` table, or ``None`` when the warehouse has none."""
    if not inspect(conn).has_table(ARTIFACT_INDEX):
        return None
    return Table(ARTIFACT_INDEX, MetaData(), autoload_with=conn)


def run_columns(table: Table) -> list[Any]:
    """The columns of ``table`` that name a run (``run_id``, ``latest_success_run_id``...)."""
    return [c for c in table.c if c.name == "run_id" or c.name.endswith("_run_id")]


def has_mlobs_tables(conn: Connection) -> bool:
    """True when the warehouse has a ``runs`` table (anything to delete from at all)."""
    return inspect(conn).has_table(RUNS.name)


def count_run_rows(db: str | URL | Engine,
                   run_ids: Iterable[str] | None = None) -> dict[str, RowCounts]:
    """The rows :func:`delete_runs` would delete, per run_id (runs not stored: left out).

    Args:
        run_ids: the runs to count; ``None`` counts every run of the warehouse (a few
            ``GROUP BY`` queries, no ``IN`` lists).

    Raises:
        WarehouseError: the database cannot be read.
    """
    counts: dict[str, RowCounts] = {}
    ids = None if run_ids is None else sorted(set(run_ids))
    if ids is not None and not ids:
        return counts
    with engine_for(db) as engine:
        try:
            with engine.connect() as conn:
                if not has_mlobs_tables(conn):
                    return counts
                index = artifact_index_table(conn)
                for chunk in ([None] if ids is None else _chunks(ids)):
                    _count_chunk(conn, chunk, index, counts)
        except SQLAlchemyError as exc:
            raise WarehouseError(f"cannot read the warehouse at {display_url(engine)}: "
                                 f"{exc}") from exc
    return counts


def _child_tables(conn: Connection) -> list[tuple[Table, str]]:
    """The tables of a run's own rows, with their RowCounts field (run_labels only from
    revision 0008 on)."""
    tables = [(COMPONENTS, "component_runs"), (EVENTS, "events")]
    if inspect(conn).has_table(LABELS.name):
        tables.append((LABELS, "run_labels"))
    return tables


def _count_chunk(conn: Connection, chunk: list[str] | None, index: Table | None,
                 counts: dict[str, RowCounts]) -> None:
    def where(query: Any, column: Any) -> Any:
        return query if chunk is None else query.where(column.in_(chunk))

    for run_id in conn.scalars(where(select(RUNS.c.run_id), RUNS.c.run_id)):
        counts[run_id] = RowCounts(runs=1)
    for table, field in _child_tables(conn):
        query = where(select(table.c.run_id, func.count()), table.c.run_id)
        for run_id, n in conn.execute(query.group_by(table.c.run_id)):
            row = counts.setdefault(run_id, RowCounts())
            setattr(row, field, getattr(row, field) + int(n))
    if index is not None:
        for column in run_columns(index):
            query = where(select(column, func.count()).where(column.is_not(None)), column)
            for run_id, n in conn.execute(query.group_by(column)):
                counts.setdefault(run_id, RowCounts()).artifact_index += int(n)


def _delete_runs(conn: Connection, ids: Sequence[str], index: Table | None) -> RowCounts:
    deleted = RowCounts()
    with_labels = inspect(conn).has_table(LABELS.name)
    for chunk in _chunks(ids):
        deleted.events += conn.execute(delete(EVENTS).where(EVENTS.c.run_id.in_(chunk))).rowcount
        deleted.component_runs += conn.execute(
            delete(COMPONENTS).where(COMPONENTS.c.run_id.in_(chunk))).rowcount
        if with_labels:
            deleted.run_labels += conn.execute(
                delete(LABELS).where(LABELS.c.run_id.in_(chunk))).rowcount
        columns = run_columns(index) if index is not None else []
        if columns:
            deleted.artifact_index += conn.execute(delete(index).where(
                or_(*(c.in_(chunk) for c in columns)))).rowcount
        deleted.runs += conn.execute(delete(RUNS).where(RUNS.c.run_id.in_(chunk))).rowcount
    if deleted.component_runs and inspect(conn).has_table(WATERMARKS.name):
        # Incremental rollups see new rows, not deleted ones: the next rollup is full, and
        # the deletion mark tells a rollup running now not to move its watermark.
        conn.execute(delete(WATERMARKS))
        conn.execute(WATERMARKS.insert().values(
            bucket_width=DELETION_MARK, ingested_through=ingestion_clock(conn.dialect.name),
            computed_at=datetime.now(timezone.utc)))
    return deleted


def delete_runs(db: str | URL | Engine, run_ids: Iterable[str]) -> RowCounts:
    """Delete every row of these runs, in one transaction. Unknown run_ids are ignored, so
    this is safe to repeat.

    Returns:
        The rows deleted per table.

    Raises:
        WarehouseError: the database failed (nothing was deleted).
    """
    ids = sorted(set(run_ids))
    if not ids:
        return RowCounts()
    with engine_for(db) as engine:
        try:
            with engine.begin() as conn:
                if not has_mlobs_tables(conn):
                    return RowCounts()
                return _delete_runs(conn, ids, artifact_index_table(conn))
        except SQLAlchemyError as exc:
            raise WarehouseError(f"deleting {len(ids)} run(s) from {display_url(engine)} "
                                 f"failed: {exc}") from exc


def _video_filter(table: Table, video_id: str, platform_id: str | None) -> Any | None:
    if "video_id" not in table.c:
        return None
    condition = table.c.video_id == video_id
    if platform_id is not None:
        if "platform_id" not in table.c:
            return None
        condition = condition & (table.c.platform_id == platform_id)
    return condition


def delete_video_rows(db: str | URL | Engine, video_id: str,
                      platform_id: str | None = None) -> RowCounts:
    """Delete every row of a video (of one platform, or of every platform), in one
    transaction; safe to repeat (a second call deletes nothing).

    Returns:
        The rows deleted per table.

    Raises:
        WarehouseError: the database failed (nothing was deleted).
    """
    with engine_for(db) as engine:
        sqlite = engine.dialect.name == "sqlite"
        try:
            with engine.begin() as conn:
                if not has_mlobs_tables(conn):
                    return RowCounts()
                if sqlite:
                    # Overwrite the deleted content instead of leaving it in free pages.
                    conn.exec_driver_sql("PRAGMA secure_delete=ON")
                index = artifact_index_table(conn)
                ids = list(conn.scalars(select(RUNS.c.run_id).where(
                    _video_filter(RUNS, video_id, platform_id))))
                deleted = _delete_runs(conn, sorted(ids), index)
                condition = _video_filter(index, video_id, platform_id) \
                    if index is not None else None
                if condition is not None:
                    deleted.artifact_index += conn.execute(
                        delete(index).where(condition)).rowcount
        except SQLAlchemyError as exc:
            where = f"{platform_id}/{video_id}" if platform_id is not None else video_id
            raise WarehouseError(f"deleting the rows of video {where!r} from "
                                 f"{display_url(engine)} failed: {exc}") from exc
        if sqlite and deleted.total:
            _checkpoint(engine)
        return deleted


def count_video_rows(db: str | URL | Engine, video_id: str,
                     platform_id: str | None = None) -> RowCounts:
    """The rows :func:`delete_video_rows` would delete, read without writing anything
    (``mlobs forget --dry-run``).

    Raises:
        WarehouseError: the database cannot be read.
    """
    with engine_for(db) as engine:
        try:
            with engine.connect() as conn:
                if not has_mlobs_tables(conn):
                    return RowCounts()
                index = artifact_index_table(conn)
                ids = sorted(conn.scalars(select(RUNS.c.run_id).where(
                    _video_filter(RUNS, video_id, platform_id))))
                per_run: dict[str, RowCounts] = {}
                for chunk in _chunks(ids):
                    _count_chunk(conn, chunk, None, per_run)
                counts = sum(per_run.values(), RowCounts())
                if index is not None:  # a row naming a run, or the video: counted once
                    named = [column.in_(chunk) for chunk in _chunks(ids)
                             for column in run_columns(index)]
                    video = _video_filter(index, video_id, platform_id)
                    conditions = named + ([video] if video is not None else [])
                    if conditions:
                        counts.artifact_index = int(conn.scalar(
                            select(func.count()).select_from(index).where(
                                or_(*conditions))) or 0)
        except SQLAlchemyError as exc:
            raise WarehouseError(f"cannot read the warehouse at {display_url(engine)}: "
                                 f"{exc}") from exc
    return counts


def _checkpoint(engine: Engine) -> None:
    """Move the WAL into the database file and truncate it, so that the old pages of
    deleted rows do not linger in the WAL (best effort: a busy database keeps its WAL
    until its next checkpoint)."""
    try:
        raw = engine.raw_connection()  # driver-level autocommit: no BEGIN around the PRAGMA
    except SQLAlchemyError:
        return
    try:
        cursor = raw.cursor()
        try:
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            cursor.fetchall()
        finally:
            cursor.close()
    except Exception:  # noqa: BLE001 - best effort (sqlite3.OperationalError: busy)
        pass
    finally:
        raw.close()

