"""Component rollups computed in DuckDB over the SQL warehouse (ARCHITECTURE §7).

One rollup row summarises the invocations of one component with one model_signature
(``NULL`` when the component used no model), in runs of one pipeline_version and profile
(``NULL`` when the run had none), on one device kind, over one time bucket of
``started_at`` (UTC: minute, hour, day, or ``all``): invocation and run counts,
p50/p95/p99 ``duration_ms`` pooled and for cache hits and misses apart, error and empty
rates, cache hit rate, OOM rate, OOMs per run and retries, p95 peak RSS and GPU memory,
the rate of degraded predictions, items and throughput, and the user metrics. Rows are
written back to the warehouse table ``component_rollups`` (schema: ARCHITECTURE §6,
migrations) and may be exported to Parquet (:mod:`mlobs.analysis.parquet`); incremental
rollups are :mod:`mlobs.analysis.incremental`, the SQL :mod:`mlobs.analysis.rollup_sql`.

DuckDB only reads the warehouse (attached read-only, see :mod:`mlobs.analysis.duckdb_connect`);
writes go through the warehouse engine's connection in one transaction, so the pipeline's
writers never meet a DuckDB writer.

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
* ``p95_peak_rss_increase_bytes`` / ``p95_peak_gpu_allocated_increase_bytes``: the same
  over what each invocation itself added (``peak_rss_increase_bytes``: peak minus the
  RSS at its start), which tells the components of one large process apart.
* ``degraded_rate``: invocations with ``prediction_status = 'degraded'`` / invocations
  that set a ``prediction_status`` (``ok`` or ``degraded``: they used a model fallback
  chain). ``None`` when none did.
* ``device_kind``: ``device_used`` without its index (``cuda:1`` → ``cuda``), ``cpu``
  when none was recorded (:func:`mlobs.core.records.device_kind_of`).
* ``items``: ``sum(items)``; ``items_per_s``: ``sum(items)`` / seconds of ``duration_ms``
  over the invocations that set ``items`` and took time. ``None`` when none did.
* ``p50/p95_hit_duration_ms``, ``p50/p95_miss_duration_ms``: the duration percentiles of
  the group's cache hits and of its misses (pooled percentiles move when the hit rate
  does); ``None`` when the group had none.
* ``metrics``: ``{name: {"count", "mean", "p50", "p95"}}`` over the numeric user metrics
  (``c.metric``) of the group, by name; other JSON values are left out. ``{}`` when none.
  Means and throughput add the values in sorted order (``fsum(x ORDER BY x)``), so the
  figures do not depend on the order the rows are read in (an incremental rollup equals
  a full one exactly). A mean or throughput that overflows to infinity is ``None``.

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
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import duckdb
import sqlalchemy as sa

from mlobs.analysis.duckdb_connect import attach_warehouse, connect_duckdb
from mlobs.analysis.rollup_sql import (
    TimeRange,
    external_cache_sql,
    rollup_sql,
    source_sql,
)
from mlobs.core.errors import ConfigError, WarehouseError
from mlobs.core.records import MISS_REASONS
from mlobs.warehouse.engine import (
    create_warehouse_engine,
    display_url,
    require_sqlite_file,
    warehouse_schema,
)
from mlobs.warehouse.migrate import check_schema
from mlobs.warehouse.models import BUCKET_WIDTHS, ComponentRollup

#: Accepted ``bucket_width`` values: one bucket over everything, or UTC minutes / hours /
#: days (the bucket widths of the table, mlobs.warehouse.models.BUCKET_WIDTHS).
BUCKETS = BUCKET_WIDTHS
#: Length of each bucket width (``all``: none).
BUCKET_LENGTHS = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1),
                  "day": timedelta(days=1)}
ROLLUP_TABLE = ComponentRollup.__tablename__


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
    pipeline_version: str | None
    profile: str | None
    device_kind: str
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
    items: int | None
    items_per_s: float | None
    p50_hit_duration_ms: float | None
    p95_hit_duration_ms: float | None
    p50_miss_duration_ms: float | None
    p95_miss_duration_ms: float | None
    metrics: dict[str, dict[str, float]]
    p95_peak_rss_increase_bytes: float | None = None
    p95_peak_gpu_allocated_increase_bytes: float | None = None

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
    if bucket == "minute":
        return since.replace(second=0, microsecond=0)
    if bucket == "hour":
        return since.replace(minute=0, second=0, microsecond=0)
    if bucket == "day":
        return since.replace(hour=0, minute=0, second=0, microsecond=0)
    return since


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


class WarehouseReader:
    """The warehouse opened for a rollup: a checked SQLAlchemy engine (writes, the
    database clock) and a DuckDB connection with the warehouse attached read-only as
    ``wh`` (reads). A context manager; closing it closes both.

    Raises (on creation):
        WarehouseError, SchemaOutOfDateError: as :func:`compute_rollup`.
    """

    alias = "wh"

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        # The SQLAlchemy side checks the revision (the same rule as the store), so the
        # queries can rely on the columns of the current schema.
        self.engine = _checked_engine(db_url)
        try:
            #: the PostgreSQL schema its search_path finds the tables in; None for SQLite.
            self.schema = warehouse_schema(self.engine)
            self.con = connect_duckdb()
            self.backend = attach_warehouse(self.con, db_url, alias=self.alias)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the DuckDB connection and dispose of the engine."""
        con = getattr(self, "con", None)
        if con is not None:
            con.close()
        self.engine.dispose()

    def __enter__(self) -> WarehouseReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def tables(self) -> str:
        """The qualified name the attached tables are read from (``wh`` or
        ``wh."<schema>"``)."""
        return self.alias if self.schema is None else '{}."{}"'.format(
            self.alias, self.schema.replace('"', '""'))

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Run ``sql`` in DuckDB; rows as dicts keyed by column.

        Raises:
            WarehouseError: the query failed.
        """
        try:
            cursor = self.con.execute(sql, list(params))
            names = [column[0] for column in cursor.description]
            records = cursor.fetchall()
        except duckdb.Error as exc:
            raise WarehouseError(
                f"rollup query failed on {display_url(self.db_url)}: {exc}") from exc
        return [dict(zip(names, record)) for record in records]

    def rollup(self, bucket: str, *, since: datetime | None = None,
               ranges: Sequence[TimeRange] | None = None) -> list[RollupRow]:
        """:func:`compute_rollup` on this warehouse; ``ranges`` limits it to the
        invocations that started inside them (see :func:`compute_rollup`)."""
        _check_bucket(bucket)
        params: list[Any] = []
        if since is not None:
            floor = bucket_floor(since, bucket)
            params.append(floor.replace(tzinfo=None))
            ranges = ranges if ranges is not None else [(floor, None)]
        computed_at = datetime.now(timezone.utc)
        source = source_sql(self.backend, self.alias, self.schema, ranges)
        results = self.fetch(rollup_sql(bucket, source, since is not None), params)
        return [_rollup_row(values, computed_at, bucket) for values in results]


def compute_rollup(db_url: str, *, bucket: str = "all", since: datetime | None = None,
                   ranges: Sequence[TimeRange] | None = None) -> list[RollupRow]:
    """Compute component rollups from ``component_runs`` (and ``runs``) in DuckDB.

    Args:
        db_url: warehouse SQLAlchemy URL (``sqlite:///...`` or ``postgresql[+driver]://...``).
        bucket: ``"all"`` (one bucket, ``bucket_start`` None), ``"minute"``, ``"hour"`` or
            ``"day"`` (UTC buckets of ``started_at``).
        since: only invocations that started at or after this instant (naive = UTC). For
            minute/hour/day it is first floored to its bucket start (:func:`bucket_floor`)
            so that no bucket is partial.
        ranges: only invocations that started inside one of these ``(start, end)``
            instants (aware UTC; end excluded, or None for open): whole buckets, as an
            incremental rollup passes them (:mod:`mlobs.analysis.incremental`). The
            warehouse itself selects the rows (its index on ``started_at``).

    Returns:
        Rows ordered by bucket_start, component, model_signature, pipeline_version,
        profile (None first) and device_kind, all with the same ``computed_at``. Empty
        when nothing matches.

    Raises:
        ConfigError: unknown bucket.
        WarehouseError: unsupported URL; the database is missing, unreachable or cannot be
            attached by DuckDB; the query fails.
        SchemaOutOfDateError: the warehouse is not at the migrations' head revision
            (:func:`mlobs.warehouse.migrate.check_schema`, the store's rule).
    """
    _check_bucket(bucket)
    with WarehouseReader(db_url) as reader:
        return reader.rollup(bucket, since=since, ranges=ranges)


def compute_external_cache_rollup(db_url: str, *, bucket: str = "all",
                                  since: datetime | None = None) -> list[ExternalCacheRow]:
    """Hit rates of external caches per component × cache name, in DuckDB.

    Reads the ``external_cache`` events (:func:`mlobs.hooks.external_cache.record_cache_lookup`)
    of ``events`` joined to their ``component_runs`` row; definitions in the module
    docstring. Nothing is written.

    Args:
        db_url: warehouse SQLAlchemy URL.
        bucket: as in :func:`compute_rollup`: UTC buckets of the invocation's
            ``started_at``.
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
    params = [] if since is None else [bucket_floor(since, bucket).replace(tzinfo=None)]
    with WarehouseReader(db_url) as reader:
        results = reader.fetch(external_cache_sql(bucket, reader.tables, since is not None),
                               params)
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


#: RollupRow fields that are counts (ints), and the other numbers (floats or None).
INT_FIELDS = ("invocations", "runs", "retries")
FLOAT_FIELDS = ("p50_duration_ms", "p95_duration_ms", "p99_duration_ms", "error_rate",
                "empty_rate", "cache_hit_rate", "p95_peak_rss_bytes", "oom_rate",
                "mean_ooms_per_run", "p95_peak_gpu_allocated_bytes",
                "p95_peak_gpu_reserved_bytes", "degraded_rate", "items_per_s",
                "p50_hit_duration_ms", "p95_hit_duration_ms", "p50_miss_duration_ms",
                "p95_miss_duration_ms", "p95_peak_rss_increase_bytes",
                "p95_peak_gpu_allocated_increase_bytes")


def _finite(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


#: RollupRow field names in order (the stored columns but id).
FIELDS = tuple(f.name for f in dataclasses.fields(RollupRow))


def _rollup_row(values: dict[str, Any], computed_at: datetime, bucket: str) -> RollupRow:
    """A :class:`RollupRow` from one result row of :func:`rollup_sql`, keyed by column."""
    start = values["bucket_start"]
    # The conversions pin the Python types whatever DuckDB picked for an expression.
    values["computed_at"] = computed_at
    values["bucket_width"] = bucket
    values["bucket_start"] = None if start is None else start.replace(tzinfo=timezone.utc)
    for name in INT_FIELDS:
        values[name] = int(values[name])
    for name in FLOAT_FIELDS:
        value = values[name]
        if value is not None:
            value = float(value)
            # A sum of huge user values overflows; JSON and the table hold no infinity.
            values[name] = value if math.isfinite(value) else None
    if values["items"] is not None:
        values["items"] = int(values["items"])
    reasons = values["cache_miss_reasons"]
    values["cache_miss_reasons"] = ordered_miss_reasons(reasons) if reasons else {}
    metrics = values["metrics"]
    values["metrics"] = {name: {"count": int(m["count"]), "mean": _finite(m["mean"]),
                                "p50": _finite(m["p50"]), "p95": _finite(m["p95"])}
                         for name, m in metrics.items()} if metrics else {}
    return RollupRow(*[values[name] for name in FIELDS])


_REASON_ORDER = {reason: i for i, reason in enumerate(MISS_REASONS)}


def ordered_miss_reasons(counts: dict[str, Any]) -> dict[str, int]:
    """``counts`` as ``{reason: int}`` in :data:`~mlobs.cache.lookup.MISS_REASONS` order,
    other reasons (``unknown``, reasons of newer versions) after them by name."""
    return {reason: int(counts[reason]) for reason in
            sorted(counts, key=lambda r: (_REASON_ORDER.get(r, len(_REASON_ORDER)), r))}
