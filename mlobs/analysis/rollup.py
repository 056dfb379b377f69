"""Component rollups computed in DuckDB over the SQL warehouse (ARCHITECTURE §7).

One rollup row summarises the invocations of one component with one model_signature
(``NULL`` when the component used no model) over one time bucket of ``started_at`` (UTC):
invocation and run counts, p50/p95/p99 ``duration_ms``, error and empty rates, cache hit
rate, OOM rate, OOMs per run and retries, p95 peak RSS and GPU memory, and the rate of
degraded predictions. Rows are written back to the warehouse table ``component_rollups``
(schema: ARCHITECTURE §6, migrations) and may be exported to Parquet.

DuckDB only reads the warehouse (attached read-only, see :mod:`mlobs.analysis.duckdb_connect`);
writes go through SQLAlchemy in one transaction, so the pipeline's writers never meet a
DuckDB writer.

Definitions (each row's denominators are its own invocations):

* ``invocations``: component_runs rows; ``runs``: distinct ``run_id``.
* ``p50/p95/p99_duration_ms``: ``quantile_cont``, the linear interpolation between order
  statistics that ``numpy.percentile`` uses by default.
* ``error_rate`` / ``empty_rate``: fraction of invocations with status ``error`` / ``empty``.
* ``cache_hit_rate``: hits / (hits + misses); ``bypass`` and no lookup (``NULL``) are not
  lookups. ``None`` when the group made no lookup.
* ``cache_miss_reasons``: ``{reason: count}`` over the group's ``cache_status = 'miss'``
  invocations, from ``cache_miss_reason`` (:data:`mlobs.cache.lookup.MISS_REASONS`; a miss
  recorded without a reason counts as ``unknown``), ordered as ``MISS_REASONS`` lists them,
  other reasons after, by name. The counts add up to the misses; ``{}`` when there were
  none. ``bypass`` invocations (reason ``forced``) are not misses and are not counted.
* ``p95_peak_rss_bytes``: over the invocations that recorded a peak; ``None`` if none did.
* ``oom_rate``: fraction of invocations with ``oom_count > 0``.
* ``mean_ooms_per_run``: ``sum(oom_count) / runs`` (OOM events, not invocations, per
  distinct run).
* ``retries``: ``sum(retry_count)``, transient retries inside the invocations.
* ``p95_peak_gpu_allocated_bytes`` / ``p95_peak_gpu_reserved_bytes``: like
  ``p95_peak_rss_bytes``, over the invocations that recorded that GPU peak; ``None`` if
  none did.
* ``degraded_rate``: invocations with ``prediction_status = 'degraded'`` / invocations
  that set a ``prediction_status`` (``ok`` or ``degraded``: they used a model fallback
  chain). ``None`` when none did.

External caches (:mod:`mlobs.hooks.external_cache`): :func:`compute_external_cache_rollup` reads
the ``external_cache`` events of ``events`` (attributes ``cache`` and ``status``) with the
component invocation that recorded them, and gives one :class:`ExternalCacheRow` per
component × cache name × bucket: ``lookups`` (events with status ``hit``, ``miss`` or
``stale``), ``hits``, ``misses``, ``stale``, ``hit_rate`` = hits / lookups and
``stale_rate`` = stale / lookups (a stale entry served is not a hit). Buckets and
``since`` go by the invocation's ``started_at``, as for the component rows, so both cover
the same invocations. These rows are computed, printed and exported as JSON, not stored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import duckdb
import sqlalchemy as sa

from mlobs.analysis.duckdb_connect import attach_warehouse, connect_duckdb
from mlobs.core.errors import ConfigError, WarehouseError
from mlobs.core.records import MISS_REASONS
from mlobs.warehouse.engine import (
    create_warehouse_engine,
    display_url,
    require_sqlite_file,
    warehouse_schema,
)
from mlobs.warehouse.migrate import check_schema
from mlobs.warehouse.models import ComponentRollup, ComponentRun, Event

#: Accepted ``bucket_width`` values: one bucket over everything, or UTC hours / days.
BUCKETS = ("all", "hour", "day")
ROLLUP_TABLE = ComponentRollup.__tablename__
SOURCE_TABLE = ComponentRun.__tablename__
EVENTS_TABLE = Event.__tablename__
#: events.kind of an external cache lookup (same value as
#: mlobs.hooks.external_cache.EXTERNAL_CACHE_EVENT; a test keeps them equal).
EXTERNAL_CACHE_EVENT = "external_cache"
#: cache_miss_reasons key of a miss recorded without a reason.
UNKNOWN_MISS_REASON = "unknown"


@dataclass(frozen=True)
class RollupRow:
    """One row of ``component_rollups`` (without its autoincrement ``id``).

    Timestamps are timezone-aware UTC; durations in milliseconds; memory peaks in bytes;
    rates are fractions in [0, 1]; ``bucket_start`` is ``None`` for
    ``bucket_width == "all"``. Definitions: the module docstring.
    """

    computed_at: datetime
    bucket_width: str
    bucket_start: datetime | None
    component: str
    model_signature: str | None
    invocations: int
    runs: int
    p50_duration_ms: float | None
    p95_duration_ms: float | None
    p99_duration_ms: float | None
    error_rate: float
    empty_rate: float
    cache_hit_rate: float | None
    p95_peak_rss_bytes: float | None
    oom_rate: float
    mean_ooms_per_run: float
    retries: int
    p95_peak_gpu_allocated_bytes: float | None
    p95_peak_gpu_reserved_bytes: float | None
    degraded_rate: float | None
    cache_miss_reasons: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: timestamps as ISO 8601 UTC strings."""
        return _json_ready(dataclasses.asdict(self))


@dataclass(frozen=True)
class ExternalCacheRow:
    """Lookups of one external cache by one component over one time bucket.

    Counts are ints; ``hit_rate`` and ``stale_rate`` fractions of ``lookups`` (which is
    never 0: a row exists because lookups were recorded). Definitions: the module
    docstring; recording: :func:`mlobs.hooks.external_cache.record_cache_lookup`.
    """

    computed_at: datetime
    bucket_width: str
    bucket_start: datetime | None
    component: str
    cache: str
    lookups: int
    hits: int
    misses: int
    stale: int
    hit_rate: float
    stale_rate: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: timestamps as ISO 8601 UTC strings."""
        return _json_ready(dataclasses.asdict(self))


def _json_ready(data: dict[str, Any]) -> dict[str, Any]:
    for key in ("computed_at", "bucket_start"):
        if data[key] is not None:
            data[key] = data[key].astimezone(timezone.utc).isoformat()
    return data


def _check_bucket(bucket: str) -> None:
    if bucket not in BUCKETS:
        raise ConfigError(f"bucket must be one of {BUCKETS}, got {bucket!r}")


def _as_utc(value: datetime) -> datetime:
    # Naive datetimes are taken as UTC, like mlobs.core.records.parse_utc.
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None \
        else value.astimezone(timezone.utc)


def bucket_floor(since: datetime, bucket: str) -> datetime:
    """Start (UTC, aware) of the ``bucket`` containing ``since``.

    ``hour``/``day`` rollups start at this boundary so that their first bucket is complete;
    for ``all`` the instant itself is returned.

    Raises:
        ConfigError: unknown bucket.
    """
    _check_bucket(bucket)
    since = _as_utc(since)
    if bucket == "hour":
        return since.replace(minute=0, second=0, microsecond=0)
    if bucket == "day":
        return since.replace(hour=0, minute=0, second=0, microsecond=0)
    return since


def _bucket_expr(bucket: str) -> str:
    """The SQL of a row's bucket start (NULL for ``all``), over ``started_utc``."""
    return "CAST(NULL AS TIMESTAMP)" if bucket == "all" \
        else f"date_trunc('{bucket}', started_utc)"


def _rollup_sql(bucket: str, alias: str, with_since: bool) -> str:
    # Every column is cast explicitly: SQLite is attached with sqlite_all_varchar (its
    # timestamps are text, possibly with UTC offsets), PostgreSQL columns are already typed
    # and the casts are no-ops. timezone('UTC', TIMESTAMPTZ) yields a naive UTC TIMESTAMP,
    # which leaves DuckDB's Python conversion free of pytz.
    bucket_expr = _bucket_expr(bucket)
    where = "WHERE started_utc >= CAST(? AS TIMESTAMP)" if with_since else ""
    return f"""
    WITH src AS (
        SELECT CAST(component AS VARCHAR)        AS component,
               CAST(model_signature AS VARCHAR)  AS model_signature,
               CAST(run_id AS VARCHAR)           AS run_id,
               CAST(status AS VARCHAR)           AS status,
               CAST(cache_status AS VARCHAR)     AS cache_status,
               CAST(cache_miss_reason AS VARCHAR) AS cache_miss_reason,
               CAST(duration_ms AS DOUBLE)       AS duration_ms,
               CAST(peak_rss_bytes AS DOUBLE)    AS peak_rss_bytes,
               CAST(peak_gpu_allocated_bytes AS DOUBLE) AS peak_gpu_allocated_bytes,
               CAST(peak_gpu_reserved_bytes AS DOUBLE)  AS peak_gpu_reserved_bytes,
               CAST(oom_count AS BIGINT)         AS oom_count,
               CAST(retry_count AS BIGINT)       AS retry_count,
               CAST(prediction_status AS VARCHAR) AS prediction_status,
               timezone('UTC', CAST(started_at AS TIMESTAMPTZ)) AS started_utc
        FROM {alias}.{SOURCE_TABLE}
    )
    SELECT {bucket_expr}                                   AS bucket_start,
           component,
           model_signature,
           count(*)                                        AS invocations,
           count(DISTINCT run_id)                          AS runs,
           quantile_cont(duration_ms, 0.50)                AS p50_duration_ms,
           quantile_cont(duration_ms, 0.95)                AS p95_duration_ms,
           quantile_cont(duration_ms, 0.99)                AS p99_duration_ms,
           count(*) FILTER (WHERE status = 'error') / count(*)  AS error_rate,
           count(*) FILTER (WHERE status = 'empty') / count(*)  AS empty_rate,
           count(*) FILTER (WHERE cache_status = 'hit')
             / nullif(count(*) FILTER (WHERE cache_status IN ('hit', 'miss')), 0)
                                                           AS cache_hit_rate,
           quantile_cont(peak_rss_bytes, 0.95)             AS p95_peak_rss_bytes,
           count(*) FILTER (WHERE oom_count > 0) / count(*) AS oom_rate,
           CAST(sum(oom_count) AS DOUBLE) / count(DISTINCT run_id) AS mean_ooms_per_run,
           CAST(sum(retry_count) AS BIGINT)                AS retries,
           quantile_cont(peak_gpu_allocated_bytes, 0.95)   AS p95_peak_gpu_allocated_bytes,
           quantile_cont(peak_gpu_reserved_bytes, 0.95)    AS p95_peak_gpu_reserved_bytes,
           count(*) FILTER (WHERE prediction_status = 'degraded')
             / nullif(count(*) FILTER (WHERE prediction_status IS NOT NULL), 0)
                                                           AS degraded_rate,
           histogram(coalesce(cache_miss_reason, '{UNKNOWN_MISS_REASON}'))
             FILTER (WHERE cache_status = 'miss')          AS cache_miss_reasons
    FROM src
    {where}
    GROUP BY ALL
    ORDER BY bucket_start NULLS FIRST, component, model_signature NULLS FIRST
    """


def _external_cache_sql(bucket: str, alias: str, with_since: bool) -> str:
    # events.attributes is JSON: text on SQLite (sqlite_all_varchar), json on PostgreSQL;
    # cast to VARCHAR, both are read with DuckDB's JSON functions. Only the events of
    # this kind are parsed. The join gives the component and its started_at (buckets and
    # since follow the invocation, like _rollup_sql).
    bucket_expr = _bucket_expr(bucket)
    since = "AND started_utc >= CAST(? AS TIMESTAMP)" if with_since else ""
    return f"""
    WITH ev AS (
        SELECT CAST(component_run_id AS VARCHAR) AS component_run_id,
               CAST(attributes AS VARCHAR)       AS attributes
        FROM {alias}.{EVENTS_TABLE}
        WHERE CAST(kind AS VARCHAR) = '{EXTERNAL_CACHE_EVENT}'
    ), src AS (
        SELECT CAST(c.component AS VARCHAR)                   AS component,
               json_extract_string(ev.attributes, '$.cache')  AS cache,
               json_extract_string(ev.attributes, '$.status') AS status,
               timezone('UTC', CAST(c.started_at AS TIMESTAMPTZ)) AS started_utc
        FROM ev
        JOIN {alias}.{SOURCE_TABLE} AS c
          ON CAST(c.component_run_id AS VARCHAR) = ev.component_run_id
    )
    SELECT {bucket_expr}                                AS bucket_start,
           component,
           cache,
           count(*)                                     AS lookups,
           count(*) FILTER (WHERE status = 'hit')       AS hits,
           count(*) FILTER (WHERE status = 'miss')      AS misses,
           count(*) FILTER (WHERE status = 'stale')     AS stale,
           count(*) FILTER (WHERE status = 'hit') / count(*)   AS hit_rate,
           count(*) FILTER (WHERE status = 'stale') / count(*) AS stale_rate
    FROM src
    WHERE cache IS NOT NULL AND status IN ('hit', 'miss', 'stale') {since}
    GROUP BY ALL
    ORDER BY bucket_start NULLS FIRST, component, cache
    """


def _checked_engine(db_url: str) -> sa.Engine:
    """The warehouse engine, once the database is known to exist at the head revision."""
    require_sqlite_file(db_url)
    engine = create_warehouse_engine(db_url)
    try:
        check_schema(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


def compute_rollup(db_url: str, *, bucket: str = "all",
                   since: datetime | None = None) -> list[RollupRow]:
    """Compute component rollups from ``component_runs`` in DuckDB.

    Args:
        db_url: warehouse SQLAlchemy URL (``sqlite:///...`` or ``postgresql[+driver]://...``).
        bucket: ``"all"`` (one bucket, ``bucket_start`` None), ``"hour"`` or ``"day"``
            (UTC buckets of ``started_at``).
        since: only invocations that started at or after this instant (naive = UTC). For
            ``hour``/``day`` it is first floored to its bucket start (:func:`bucket_floor`)
            so that no bucket is partial.

    Returns:
        Rows ordered by bucket_start, component, model_signature (None first), all with
        the same ``computed_at``. Empty when nothing matches.

    Raises:
        ConfigError: unknown bucket.
        WarehouseError: unsupported URL; the database is missing, unreachable or cannot be
            attached by DuckDB; the query fails.
        SchemaOutOfDateError: the warehouse is not at the migrations' head revision
            (:func:`mlobs.warehouse.migrate.check_schema`, the store's rule).
    """
    _check_bucket(bucket)
    computed_at = datetime.now(timezone.utc)
    results = _query(db_url, lambda source: _rollup_sql(bucket, source, since is not None),
                     bucket, since)
    return [_rollup_row(values, computed_at, bucket) for values in results]


def compute_external_cache_rollup(db_url: str, *, bucket: str = "all",
                                  since: datetime | None = None) -> list[ExternalCacheRow]:
    """Hit rates of external caches per component × cache name, in DuckDB.

    Reads the ``external_cache`` events (:func:`mlobs.hooks.external_cache.record_cache_lookup`)
    of ``events`` joined to their ``component_runs`` row; definitions in the module
    docstring. Nothing is written.

    Args:
        db_url: warehouse SQLAlchemy URL.
        bucket: ``"all"``, ``"hour"`` or ``"day"``: UTC buckets of the invocation's
            ``started_at``, as in :func:`compute_rollup`.
        since: only lookups made by invocations that started at or after this instant,
            floored like :func:`compute_rollup`'s.

    Returns:
        Rows ordered by bucket_start, component, cache, all with the same
        ``computed_at``. Empty when no lookup was recorded. Events with another status
        or without a cache name are not counted.

    Raises:
        ConfigError, WarehouseError, SchemaOutOfDateError: as :func:`compute_rollup`.
    """
    _check_bucket(bucket)
    computed_at = datetime.now(timezone.utc)
    results = _query(db_url,
                     lambda source: _external_cache_sql(bucket, source, since is not None),
                     bucket,
                     since)
    rows = []
    for values in results:
        start = values.pop("bucket_start")
        for name in ("lookups", "hits", "misses", "stale"):
            values[name] = int(values[name])
        for name in ("hit_rate", "stale_rate"):
            values[name] = float(values[name])
        rows.append(ExternalCacheRow(
            computed_at=computed_at, bucket_width=bucket,
            bucket_start=None if start is None else start.replace(tzinfo=timezone.utc),
            **values))
    return rows


def _query(db_url: str, build_sql: Callable[[str], str], bucket: str,
           since: datetime | None) -> list[dict[str, Any]]:
    """Run one rollup query on the attached warehouse; rows as dicts keyed by column.
    ``build_sql`` gets the qualified name to read the tables from (``wh``, or
    ``wh."<schema>"`` for PostgreSQL: the schema its ``search_path`` finds them in)."""
    params: list[Any] = []
    if since is not None:
        params.append(bucket_floor(since, bucket).replace(tzinfo=None))
    # The SQLAlchemy side checks the revision (the same rule as the store), so the query
    # can rely on the columns of the current schema.
    engine = _checked_engine(db_url)
    try:
        schema = warehouse_schema(engine)
    finally:
        engine.dispose()
    source = "wh" if schema is None else 'wh."{}"'.format(schema.replace('"', '""'))
    con = connect_duckdb()
    try:
        attach_warehouse(con, db_url, alias="wh")
        try:
            cursor = con.execute(build_sql(source), params)
            names = [column[0] for column in cursor.description]
            records = cursor.fetchall()
        except duckdb.Error as exc:
            raise WarehouseError(
                f"rollup query failed on {display_url(db_url)}: {exc}") from exc
    finally:
        con.close()
    return [dict(zip(names, record)) for record in records]


#: RollupRow fields that are counts (ints), and the other numbers (floats or None).
INT_FIELDS = ("invocations", "runs", "retries")
FLOAT_FIELDS = ("p50_duration_ms", "p95_duration_ms", "p99_duration_ms", "error_rate",
                 "empty_rate", "cache_hit_rate", "p95_peak_rss_bytes", "oom_rate",
                 "mean_ooms_per_run", "p95_peak_gpu_allocated_bytes",
                 "p95_peak_gpu_reserved_bytes", "degraded_rate")


def _rollup_row(values: dict[str, Any], computed_at: datetime, bucket: str) -> RollupRow:
    """A :class:`RollupRow` from one result row of :func:`_rollup_sql`, keyed by column."""
    start = values.pop("bucket_start")
    # The conversions pin the Python types whatever DuckDB picked for an expression.
    for name in INT_FIELDS:
        values[name] = int(values[name])
    for name in FLOAT_FIELDS:
        if values[name] is not None:
            values[name] = float(values[name])
    values["cache_miss_reasons"] = ordered_miss_reasons(values["cache_miss_reasons"] or {})
    return RollupRow(computed_at=computed_at, bucket_width=bucket,
                     bucket_start=None if start is None else start.replace(tzinfo=timezone.utc),
                     **values)


_REASON_ORDER = {reason: i for i, reason in enumerate(MISS_REASONS)}


def ordered_miss_reasons(counts: dict[str, Any]) -> dict[str, int]:
    """``counts`` as ``{reason: int}`` in :data:`~mlobs.cache.lookup.MISS_REASONS` order,
    other reasons (``unknown``, reasons of newer versions) after them by name."""
    return {reason: int(counts[reason]) for reason in
            sorted(counts, key=lambda r: (_REASON_ORDER.get(r, len(_REASON_ORDER)), r))}


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
        since: pass the ``since`` given to :func:`compute_rollup` for an incremental
            ``hour``/``day`` rollup: only rows with ``bucket_start >= bucket_floor(since)``
            are replaced, earlier buckets are kept. For ``all`` (and without ``since``)
            every row of the bucket width is replaced.

    A rollup that computed nothing leaves the stored rows as they were, and ``since``
    with ``all`` is refused: the rows of an "all" rollup over part of the history would
    replace the rollup of all of it.

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
    stray = sorted({r.bucket_width for r in rows} - {bucket})
    if stray:
        raise ConfigError(f"rows of bucket width {stray} passed to write_rollup({bucket!r})")
    if since is not None and bucket == "all":
        raise ConfigError("a rollup of bucket 'all' since a time covers part of the "
                          "history and is not stored (it would replace the rollup of all "
                          "of it): use an hour or day bucket, or do not write it")
    engine = _checked_engine(db_url)
    if not rows:  # nothing computed: what is stored stays
        engine.dispose()
        return 0
    table = ComponentRollup.__table__
    try:
        with engine.begin() as conn:
            delete = table.delete().where(table.c.bucket_width == bucket)
            if since is not None and bucket != "all":
                delete = delete.where(table.c.bucket_start >= bucket_floor(since, bucket))
            conn.execute(delete)
            conn.execute(table.insert(), [dataclasses.asdict(r) for r in rows])
    except sa.exc.SQLAlchemyError as exc:
        raise WarehouseError(
            f"cannot write {ROLLUP_TABLE} to {display_url(db_url)}: {exc}") from exc
    finally:
        engine.dispose()
    return len(rows)
