"""Stored rollup rows: ``component_rollups`` written in one transaction (the rows of a
bucket width, or of some of its buckets), through the warehouse engine's connection.
Definitions of the rows: :mod:`mlobs.analysis.rollup`."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from mlobs.analysis.rollup import (
    FIELDS,
    ROLLUP_TABLE,
    RollupRow,
    _check_bucket,
    _checked_engine,
    bucket_floor,
)
from mlobs.analysis.rollup_sql import TimeRange
from mlobs.core.errors import ConfigError, WarehouseError
from mlobs.warehouse.engine import display_url, json_dumps
from mlobs.warehouse.models import ComponentRollup


def write_rollup(db_url: str, rows: Sequence[RollupRow], bucket: str, *,
                 since: datetime | None = None) -> int:
    """Replace the ``component_rollups`` rows of ``bucket`` with ``rows``, atomically.

    Delete and insert run in one SQLAlchemy transaction on the warehouse engine
    (:func:`mlobs.warehouse.engine.create_warehouse_engine`: WAL and busy timeout on
    SQLite), so re-running a rollup is idempotent and readers never see a half-written set.

    Args:
        db_url: warehouse SQLAlchemy URL.
        rows: from :func:`compute_rollup` with the same ``bucket``.
        bucket: the ``bucket_width`` whose rows are replaced.
        since: pass the ``since`` given to :func:`compute_rollup` for a minute/hour/day
            rollup of part of the history: only rows with ``bucket_start >=
            bucket_floor(since)`` are replaced, earlier buckets are kept. For ``all`` (and
            without ``since``) every row of the bucket width is replaced.

    A rollup that computed nothing leaves the stored rows as they were, and ``since``
    with ``all`` is refused: the rows of an "all" rollup over part of the history would
    replace the rollup of all of it. Incremental rollups (only the buckets new records
    touched) are :func:`mlobs.analysis.incremental.refresh_rollup`.

    Returns:
        The number of rows inserted.

    Raises:
        ConfigError: unknown bucket, a row of another bucket width, or ``since`` with
            ``all``.
        SchemaOutOfDateError: the warehouse is not at the migrations' head revision.
        WarehouseError: unsupported URL; the database is missing or cannot be written
            (nothing of this call is kept).
    """
    _check_bucket(bucket)
    if since is not None and bucket == "all":
        raise ConfigError("a rollup of bucket 'all' since a time covers part of the "
                          "history and is not stored (it would replace the rollup of all "
                          "of it): use a minute, hour or day bucket, or do not write it")
    check_rows(rows, bucket)
    engine = _checked_engine(db_url)
    if not rows:  # nothing computed: what is stored stays
        engine.dispose()
        return 0
    try:
        with engine.begin() as conn:
            replace_rows(conn, rows, bucket,
                         None if since is None else [(bucket_floor(since, bucket), None)])
    except sa.exc.SQLAlchemyError as exc:
        raise WarehouseError(
            f"cannot write {ROLLUP_TABLE} to {display_url(db_url)}: {exc}") from exc
    finally:
        engine.dispose()
    return len(rows)


def check_rows(rows: Sequence[RollupRow], bucket: str) -> None:
    """Raise ConfigError when a row is not of bucket width ``bucket``."""
    stray = sorted({r.bucket_width for r in rows} - {bucket})
    if stray:
        raise ConfigError(f"rows of bucket width {stray} passed to write_rollup({bucket!r})")
    if any(r.computed_at.tzinfo is None or (r.bucket_start is not None
                                            and r.bucket_start.tzinfo is None) for r in rows):
        raise ConfigError("rollup rows with naive datetimes: the warehouse stores "
                          "timezone-aware UTC")


def replace_rows(conn: sa.Connection, rows: Sequence[RollupRow], bucket: str,
                 ranges: Sequence[TimeRange] | None) -> None:
    """In ``conn``'s transaction: delete the stored rows of ``bucket`` (only those whose
    bucket starts inside ``ranges``, when given), then insert ``rows``."""
    table = ComponentRollup.__table__
    delete = table.delete().where(table.c.bucket_width == bucket)
    if ranges is None or bucket == "all":
        conn.execute(delete)
    else:
        for start, end in ranges:
            condition = table.c.bucket_start >= start
            if end is not None:
                condition = condition & (table.c.bucket_start < end)
            conn.execute(delete.where(condition))
    if rows:
        _insert_rows(conn, rows)


def _insert_rows(conn: sa.Connection, rows: Sequence[RollupRow]) -> None:
    # The driver's executemany with values already in the database's form: SQLAlchemy's
    # per-value type processing cost ~60 µs a row (10 s for an hourly rollup of 170k rows).
    sqlite = conn.dialect.name == "sqlite"
    names = ", ".join(FIELDS)
    marks = ", ".join(["?" if sqlite else "%s"] * len(FIELDS))
    json_columns = {"cache_miss_reasons", "metrics"}
    getters = []
    for name in FIELDS:
        if name in json_columns:
            getters.append(lambda r, n=name: json_dumps(getattr(r, n)))
        elif name in ("computed_at", "bucket_start") and sqlite:
            # UtcDateTime's SQLite text form (UTC, microseconds).
            getters.append(lambda r, n=name: None if getattr(r, n) is None
                           else getattr(r, n).astimezone(timezone.utc).strftime(
                               "%Y-%m-%d %H:%M:%S.%f"))
        else:
            getters.append(operator.attrgetter(name))
    values = [tuple(get(r) for get in getters) for r in rows]
    statement = f"INSERT INTO {ROLLUP_TABLE} ({names}) VALUES ({marks})"
    dbapi_error = conn.dialect.loaded_dbapi.Error
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.executemany(statement, values)
    except dbapi_error as exc:  # as SQLAlchemy would wrap it (callers catch that)
        raise sa.exc.DBAPIError.instance(statement, None, exc, dbapi_error,
                                         hide_parameters=True,
                                         dialect=conn.dialect) from exc
    finally:
        cursor.close()


def stored_rows(db_url: str, bucket: str, days: Sequence[datetime]) -> list[RollupRow]:
    """The stored ``component_rollups`` rows of ``bucket`` whose buckets start on one of
    ``days`` (UTC midnights; every row for ``all``), as :class:`RollupRow`, ordered like
    :func:`~mlobs.analysis.rollup.compute_rollup`'s.

    Raises:
        WarehouseError, SchemaOutOfDateError: as :func:`write_rollup`.
    """
    table = ComponentRollup.__table__
    query = sa.select(*(table.c[name] for name in FIELDS)).where(
        table.c.bucket_width == bucket)
    if bucket != "all":
        query = query.where(sa.or_(*(
            (table.c.bucket_start >= day) & (table.c.bucket_start < day + timedelta(days=1))
            for day in sorted(set(days)))) if days else sa.false())
    query = query.order_by(table.c.bucket_start, table.c.component,
                           table.c.model_signature, table.c.pipeline_version,
                           table.c.profile, table.c.device_kind)
    engine = _checked_engine(db_url)
    try:
        with engine.connect() as conn:
            return [RollupRow(**dict(row._mapping)) for row in conn.execute(query)]
    except sa.exc.SQLAlchemyError as exc:
        raise WarehouseError(
            f"cannot read {ROLLUP_TABLE} of {display_url(db_url)}: {exc}") from exc
    finally:
        engine.dispose()
