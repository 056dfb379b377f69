"""The DuckDB SQL of the rollups (definitions: :mod:`mlobs.analysis.rollup`).

Rows come from one of two sources, with the same columns:

* all of ``component_runs`` (a full rollup): the attached tables, scanned by DuckDB;
* the invocations that started inside some time ranges (an incremental rollup, or
  ``since``): a query the warehouse runs itself (``sqlite_query`` / ``postgres_query``),
  so that its index on ``started_at`` finds them; DuckDB's scan of an attached SQLite
  table reads every row whatever the filter.

Every column is cast explicitly: SQLite is attached with ``sqlite_all_varchar`` (its
timestamps are text), PostgreSQL columns are already typed and the casts are no-ops.
``timezone('UTC', TIMESTAMPTZ)`` yields a naive UTC ``TIMESTAMP``, which leaves DuckDB's
Python conversion free of pytz.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

#: ``(start, end)`` instants (aware UTC), end excluded.
TimeRange = tuple[datetime, "datetime | None"]

#: events.kind of an external cache lookup (same value as
#: mlobs.hooks.external_cache.EXTERNAL_CACHE_EVENT; a test keeps them equal).
EXTERNAL_CACHE_EVENT = "external_cache"
#: cache_miss_reasons key of a miss recorded without a reason.
UNKNOWN_MISS_REASON = "unknown"
#: The grouping of every rollup row, bucket_start first.
DIMENSIONS = ("bucket_start", "component", "model_signature", "pipeline_version", "profile",
              "device_kind")
#: JSON types of the user-metric values that are rolled up (strings, bools: left out).
_NUMERIC_JSON = "('BIGINT', 'UBIGINT', 'DOUBLE')"

# The columns read from component_runs (c) and runs (r), in both sources.
_COLUMNS = """c.component, c.model_signature, c.run_id, c.status, c.cache_status,
    c.cache_miss_reason, c.duration_ms, c.peak_rss_bytes, c.peak_gpu_allocated_bytes,
    c.peak_gpu_reserved_bytes, c.oom_count, c.retry_count, c.prediction_status, c.items,
    c.device_used, c.started_at, {metrics} AS metrics, r.pipeline_version, r.profile,
    c.peak_rss_increase_bytes, c.peak_gpu_allocated_increase_bytes"""


def bucket_expr(bucket: str) -> str:
    """The SQL of a row's bucket start (NULL for ``all``), over ``started_utc``."""
    # The cast: DuckDB before 1.5 truncates a timestamp to a DATE for day and longer units.
    return "CAST(NULL AS TIMESTAMP)" if bucket == "all" \
        else f"CAST(date_trunc('{bucket}', started_utc) AS TIMESTAMP)"


def _literal(backend: str, instant: datetime) -> str:
    # SQLite holds timestamps as the text SQLAlchemy writes (UTC, microseconds), which
    # sorts like the instants; PostgreSQL compares timestamptz.
    text = instant.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
    return f"'{text}'" if backend == "sqlite" else f"'{text}+00'::timestamptz"


def _range_condition(backend: str, column: str, ranges: Sequence[TimeRange]) -> str:
    parts = []
    for start, end in ranges:
        part = f"{column} >= {_literal(backend, start)}"
        if end is not None:
            part += f" AND {column} < {_literal(backend, end)}"
        parts.append(f"({part})")
    return " OR ".join(parts) or "FALSE"


def _warehouse_query(backend: str, alias: str, schema: str | None, sql: str) -> str:
    """A table function that runs ``sql`` in the attached warehouse itself."""
    inner = sql if schema is None else sql.replace(
        "{s}", '"{}".'.format(schema.replace('"', '""')))
    inner = inner.replace("{s}", "")
    quoted = "'" + inner.replace("'", "''") + "'"
    return f"{backend}_query('{alias}', {quoted})"


def source_sql(backend: str, alias: str, schema: str | None,
               ranges: Sequence[TimeRange] | None) -> str:
    """The rows to roll up, as a FROM item: every invocation (``ranges`` None) or those
    that started inside one of ``ranges``, joined to their run's pipeline_version and
    profile."""
    if ranges is None:
        prefix = alias if schema is None else '{}."{}"'.format(alias,
                                                                schema.replace('"', '""'))
        return (f"(SELECT {_COLUMNS.format(metrics='c.metrics')} "
                f"FROM {prefix}.component_runs AS c "
                f"LEFT JOIN {prefix}.runs AS r ON r.run_id = c.run_id)")
    # Inside the warehouse: PostgreSQL's json column goes out as text.
    metrics = "c.metrics" if backend == "sqlite" else "c.metrics::text"
    inner = (f"SELECT {_COLUMNS.format(metrics=metrics)} FROM {{s}}component_runs AS c "
             f"LEFT JOIN {{s}}runs AS r ON r.run_id = c.run_id "
             f"WHERE {_range_condition(backend, 'c.started_at', ranges)}")
    return _warehouse_query(backend, alias, schema, inner)


def ingested_since_sql(backend: str, alias: str, schema: str | None,
                       bucket: str, since: datetime) -> str:
    """The distinct buckets of the invocations stored at or after ``since`` (by
    ``ingested_at``), found through the warehouse's index on that column."""
    inner = ("SELECT started_at FROM {s}component_runs WHERE "
             f"ingested_at >= {_literal(backend, since)}")
    return f"""
    SELECT DISTINCT {bucket_expr(bucket)} AS bucket_start
    FROM (SELECT timezone('UTC', CAST(started_at AS TIMESTAMPTZ)) AS started_utc
          FROM {_warehouse_query(backend, alias, schema, inner)})
    ORDER BY bucket_start
    """


def rollup_sql(bucket: str, source: str, with_since: bool) -> str:
    """The rollup of ``source`` (from :func:`source_sql`) by :data:`DIMENSIONS`;
    ``with_since`` adds a ``started_utc >= ?`` parameter."""
    where = "WHERE started_utc >= CAST(? AS TIMESTAMP)" if with_since else ""
    keys = ", ".join(DIMENSIONS)
    joined = " AND ".join(f"g.{k} IS NOT DISTINCT FROM mm.{k}" for k in DIMENSIONS)
    # Float sums run over sorted values (fsum(x ORDER BY x): compensated, in one order):
    # a plain or compensated sum still depends on the order DuckDB's threads meet the
    # rows in, and an incremental rollup must equal a full one exactly.
    split = ",\n           ".join(
        f"quantile_cont(duration_ms, 0.{q}) FILTER (WHERE cache_status = '{status}') "
        f"AS p{q}_{status}_duration_ms" for status in ("hit", "miss") for q in ("50", "95"))
    return f"""
    WITH src AS (
        SELECT {bucket_expr(bucket)}                   AS bucket_start,
               CAST(component AS VARCHAR)        AS component,
               CAST(model_signature AS VARCHAR)  AS model_signature,
               CAST(pipeline_version AS VARCHAR) AS pipeline_version,
               CAST(profile AS VARCHAR)          AS profile,
               CASE WHEN coalesce(CAST(device_used AS VARCHAR), '') = '' THEN 'cpu'
                    ELSE split_part(CAST(device_used AS VARCHAR), ':', 1) END
                                                 AS device_kind,
               CAST(run_id AS VARCHAR)           AS run_id,
               CAST(status AS VARCHAR)           AS status,
               CAST(cache_status AS VARCHAR)     AS cache_status,
               CAST(cache_miss_reason AS VARCHAR) AS cache_miss_reason,
               CAST(duration_ms AS DOUBLE)       AS duration_ms,
               CAST(peak_rss_bytes AS DOUBLE)    AS peak_rss_bytes,
               CAST(peak_gpu_allocated_bytes AS DOUBLE) AS peak_gpu_allocated_bytes,
               CAST(peak_gpu_reserved_bytes AS DOUBLE)  AS peak_gpu_reserved_bytes,
               CAST(peak_rss_increase_bytes AS DOUBLE)  AS peak_rss_increase_bytes,
               CAST(peak_gpu_allocated_increase_bytes AS DOUBLE)
                                                 AS peak_gpu_allocated_increase_bytes,
               CAST(oom_count AS BIGINT)         AS oom_count,
               CAST(retry_count AS BIGINT)       AS retry_count,
               CAST(prediction_status AS VARCHAR) AS prediction_status,
               CAST(items AS BIGINT)             AS items,
               CAST(metrics AS VARCHAR)          AS metrics
        FROM (SELECT *, timezone('UTC', CAST(started_at AS TIMESTAMPTZ)) AS started_utc
              FROM {source})
        {where}
    ), g AS (
        SELECT {keys},
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
             FILTER (WHERE cache_status = 'miss')          AS cache_miss_reasons,
           CAST(sum(items) AS BIGINT)                      AS items,
           sum(items) FILTER (WHERE duration_ms > 0)
             / nullif(fsum(duration_ms ORDER BY duration_ms)
                        FILTER (WHERE items IS NOT NULL AND duration_ms > 0), 0) * 1000.0
                                                           AS items_per_s,
           {split},
           quantile_cont(peak_rss_increase_bytes, 0.95)    AS p95_peak_rss_increase_bytes,
           quantile_cont(peak_gpu_allocated_increase_bytes, 0.95)
                                                    AS p95_peak_gpu_allocated_increase_bytes
        FROM src
        GROUP BY ALL
    ), m AS (
        SELECT {keys}, e.key AS name, CAST(e.value AS DOUBLE) AS value
        FROM (SELECT {keys}, unnest(map_entries(
                  TRY_CAST(TRY_CAST(metrics AS JSON) AS MAP(VARCHAR, JSON)))) AS e
              FROM src WHERE metrics IS NOT NULL AND metrics <> '{{}}')
        WHERE json_type(e.value) IN {_NUMERIC_JSON}
    ), mm AS (
        SELECT {keys},
               map_from_entries(list(struct_pack(k := name, v := struct_pack(
                   count := n, mean := mean, p50 := p50, p95 := p95)) ORDER BY name))
                   AS metrics
        FROM (SELECT {keys}, name, count(*) AS n,
                     fsum(value ORDER BY value) / count(*) AS mean,
                     quantile_cont(value, 0.50) AS p50, quantile_cont(value, 0.95) AS p95
              FROM m GROUP BY ALL)
        GROUP BY ALL
    )
    SELECT g.*, mm.metrics
    FROM g LEFT JOIN mm ON {joined}
    ORDER BY g.bucket_start NULLS FIRST, g.component, g.model_signature NULLS FIRST,
             g.pipeline_version NULLS FIRST, g.profile NULLS FIRST, g.device_kind
    """


def external_cache_sql(bucket: str, alias: str, with_since: bool) -> str:
    """External cache lookups per component × cache name × bucket.

    events.attributes is JSON: text on SQLite (sqlite_all_varchar), json on PostgreSQL;
    cast to VARCHAR, both are read with DuckDB's JSON functions. Only the events of this
    kind are parsed. The join gives the component and its started_at (buckets and since
    follow the invocation, like :func:`rollup_sql`).
    """
    since = "AND started_utc >= CAST(? AS TIMESTAMP)" if with_since else ""
    return f"""
    WITH ev AS (
        SELECT CAST(component_run_id AS VARCHAR) AS component_run_id,
               CAST(attributes AS VARCHAR)       AS attributes
        FROM {alias}.events
        WHERE CAST(kind AS VARCHAR) = '{EXTERNAL_CACHE_EVENT}'
    ), src AS (
        SELECT CAST(c.component AS VARCHAR)                   AS component,
               json_extract_string(ev.attributes, '$.cache')  AS cache,
               json_extract_string(ev.attributes, '$.status') AS status,
               timezone('UTC', CAST(c.started_at AS TIMESTAMPTZ)) AS started_utc
        FROM ev
        JOIN {alias}.component_runs AS c
          ON CAST(c.component_run_id AS VARCHAR) = ev.component_run_id
    )
    SELECT {bucket_expr(bucket)}                        AS bucket_start,
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
