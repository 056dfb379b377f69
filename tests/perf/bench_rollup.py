"""Rollups at scale: mlobs against DuckDB's own query and PostgreSQL's own GROUP BY, and an
incremental rollup against a full one.

A synthetic ``component_runs`` (``MLOBS_BENCH_ROLLUP_ROWS`` rows, default 10,000,000, over
60 days: 10 components, runs of 20 invocations, 4 pipeline_versions in turn, 3 profiles,
CPU and two GPUs, cache hits and misses, items, a user metric on one component in ten) is
generated inside SQLite by one ``INSERT ... SELECT`` (minutes through the store), then:

* full: ``refresh_rollup(full=True)`` (compute in DuckDB, rows back to Python, stored
  through SQLAlchemy's connection), against DuckDB's own execution of the same statement
  over the same attached file into a DuckDB table (no Python, nothing stored): what
  mlobs adds to the query;
* incremental: 1% new rows (the next hours, plus 0.01% replayed late into an old day),
  then ``refresh_rollup()`` against the full rollup of the same warehouse;
* PostgreSQL (``MLOBS_BENCH_ROLLUP_PG_ROWS``, default 1,000,000: generating and indexing
  10M rows on the server takes minutes on this 2-core machine): the mlobs full rollup
  against PostgreSQL's own ``GROUP BY`` with ``percentile_cont`` of the same grouping and
  percentiles.

Each figure is one timing (the work is seconds long; the spread between repeats was a few
per cent); process start is not included in any.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

from mlobs.analysis.duckdb_connect import attach_warehouse, connect_duckdb
from mlobs.analysis.incremental import refresh_rollup
from mlobs.analysis.rollup_sql import rollup_sql, source_sql
from mlobs.warehouse.migrate import upgrade

ROWS = int(os.environ.get("MLOBS_BENCH_ROLLUP_ROWS", "10000000"))
PG_ROWS = int(os.environ.get("MLOBS_BENCH_ROLLUP_PG_ROWS", "1000000"))
PG_ADMIN = os.environ.get("MLOBS_TEST_PG_ADMIN_URL",
                          "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
DAYS = 60
COMPONENTS = ("transcribe", "clean", "chunk", "embed", "summarize", "ocr", "faces",
              "scenes", "lang", "topics")


def _component_case(i: str) -> str:
    return "CASE {} % 10 {} END".format(
        i, " ".join(f"WHEN {k} THEN '{c}'" for k, c in enumerate(COMPONENTS)))


def _generate_sqlite(path: Path, rows: int, first: int = 0, *, start_s: float = 0.0,
                     span_s: float = DAYS * 86400.0, ingested: str | None = None) -> None:
    """``rows`` invocations numbered from ``first``, 20 per run, spread evenly over
    ``span_s`` seconds from ``start_s`` after 2026-10-01 (UTC)."""
    runs = max(rows // 20, 1)
    stamp = "'2026-10-01 00:00:00.000000'" if ingested is None else ingested
    con = sqlite3.connect(path)
    con.execute("PRAGMA synchronous = OFF")
    first_run = first // 20
    start = f"({start_s} + (i / 20) * {span_s / runs} + (i % 20))"
    when = f"strftime('%Y-%m-%d %H:%M:%f000', '2026-10-01', '+' || {start} || ' seconds')"
    with con:
        con.execute(f"""
        WITH RECURSIVE r(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM r WHERE i < {runs - 1})
        INSERT INTO runs (run_id, platform_id, video_id, profile, pipeline_version, config,
                          status, warnings, started_at, environment, resolved_models)
        SELECT printf('%08x-0000-4000-8000-%012x', i + {first_run}, i + {first_run}), 'yt',
               'v' || (i % 5000), CASE i % 3 WHEN 0 THEN 'fast' WHEN 1 THEN 'accurate'
               ELSE NULL END, '1.' || CAST(({start} / 86400 / 15) AS INTEGER) % 4,
               '{{}}', 'ok', '[]', {when.replace('(i % 20)', '0')}, '{{}}', '{{}}'
        FROM r""".replace("(i / 20)", "i"))
        con.execute(f"""
        WITH RECURSIVE r(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM r WHERE i < {rows - 1})
        INSERT INTO component_runs (component_run_id, run_id, component, attempt, required,
            status, warnings, started_at, finished_at, duration_ms, device_used,
            model_signature, cache_status, peak_rss_bytes, oom_count, retry_count, items,
            metrics, ingested_at)
        SELECT printf('%08x-0000-4000-8000-%012x', i + {first}, i + {first}),
               printf('%08x-0000-4000-8000-%012x', i / 20 + {first_run}, i / 20 + {first_run}),
               {_component_case('i')}, 1, 1,
               CASE WHEN abs(random()) % 100 < 2 THEN 'error'
                    WHEN abs(random()) % 100 < 3 THEN 'empty' ELSE 'ok' END,
               '[]', {when}, {when}, (abs(random()) % 100000) / 100.0 + (i % 10) * 10,
               CASE (i / 20) % 3 WHEN 0 THEN 'cpu' ELSE 'cuda:' || (i / 20) % 2 END,
               CASE WHEN i % 10 < 5 THEN printf('%064x', i % 10) END,
               CASE abs(random()) % 3 WHEN 0 THEN 'hit' WHEN 1 THEN 'miss' END,
               100000000 + abs(random()) % 100000000, 0, 0, abs(random()) % 50,
               CASE WHEN i % 10 = 0 THEN '{{"wer": ' || (abs(random()) % 1000) / 1000.0 || '}}'
                    ELSE '{{}}' END,
               {stamp}
        FROM r""")
    con.close()


def _timed(work):
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


def _duckdb_own(db_url: str, bucket: str) -> float:
    """The statement mlobs runs, executed by DuckDB alone into a DuckDB table."""
    con = connect_duckdb()
    backend = attach_warehouse(con, db_url, alias="wh")
    sql = rollup_sql(bucket, source_sql(backend, "wh", None, None), False)
    seconds, _ = _timed(lambda: con.execute(f"CREATE TEMP TABLE own AS {sql}"))
    con.close()
    return seconds


def bench_sqlite(directory: Path) -> dict[str, float]:
    figures: dict[str, float] = {}
    path = directory / "rollup.db"
    url = f"sqlite:///{path}"
    upgrade(url)
    seconds, _ = _timed(lambda: _generate_sqlite(path, ROWS))
    size_gb = path.stat().st_size / 1e9
    print(f"SQLite warehouse: {ROWS:,} component_runs rows over {DAYS} days "
          f"({size_gb:.1f} GB) generated in {seconds:.0f} s")
    for bucket in ("day", "hour"):
        own = _duckdb_own(url, bucket)
        full_s, full = _timed(lambda: refresh_rollup(url, bucket, full=True))
        print(f"  {bucket:>4}: full mlobs rollup {full_s:6.2f} s ({full.written:,} rows "
              f"stored) vs DuckDB's own query {own:6.2f} s: {full_s / own:.2f}x "
              f"(target <= 1.3x)")
        figures[f"sqlite_full_{bucket}_vs_duckdb"] = full_s / own
    extra = ROWS // 100
    late = max(ROWS // 10_000, 1)
    now = "strftime('%Y-%m-%d %H:%M:%f000', 'now')"
    span = extra / ROWS * DAYS * 86400.0
    _generate_sqlite(path, extra - late, ROWS, start_s=DAYS * 86400.0, span_s=span,
                     ingested=now)
    _generate_sqlite(path, late, ROWS + extra, start_s=10 * 86400.0, span_s=3600.0,
                     ingested=now)
    print(f"  added {extra:,} rows (1%: {extra - late:,} in the next {span / 3600:.0f} h, "
          f"{late:,} replayed late into one hour 50 days back)")
    for bucket in ("day", "hour"):
        inc_s, inc = _timed(lambda: refresh_rollup(url, bucket))
        full_s, _ = _timed(lambda: refresh_rollup(url, bucket, full=True))
        print(f"  {bucket:>4}: incremental {inc_s:6.2f} s ({inc.buckets} buckets "
              f"recomputed) vs full {full_s:6.2f} s: {inc_s / full_s:.3f}x "
              f"(target <= 0.05x)")
        figures[f"sqlite_incremental_{bucket}_vs_full"] = inc_s / full_s
    return figures


_PG_GROUP_BY = """
SELECT date_trunc('day', c.started_at AT TIME ZONE 'UTC') AS bucket_start, c.component,
       c.model_signature, r.pipeline_version, r.profile,
       coalesce(split_part(c.device_used, ':', 1), 'cpu') AS device_kind,
       count(*), count(DISTINCT c.run_id),
       percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY c.duration_ms),
       avg((c.status = 'error')::int), avg((c.status = 'empty')::int),
       percentile_cont(0.95) WITHIN GROUP (ORDER BY c.peak_rss_bytes),
       sum(c.items)
FROM component_runs c LEFT JOIN runs r ON r.run_id = c.run_id
GROUP BY 1, 2, 3, 4, 5, 6
"""


def _generate_postgres(engine: sa.Engine, rows: int, first: int = 0, *,
                       start_s: float = 0.0, span_s: float = DAYS * 86400.0) -> None:
    """Like :func:`_generate_sqlite`, with ``generate_series`` on the server."""
    runs = max(rows // 20, 1)
    step = span_s / runs
    at = f"timestamptz '2026-10-01 00:00+00' + make_interval(secs => {start_s} + "
    with engine.begin() as conn:
        conn.execute(sa.text(f"""
        INSERT INTO runs (run_id, platform_id, video_id, profile, pipeline_version,
                          config, status, warnings, started_at, environment,
                          resolved_models)
        SELECT lpad(to_hex(i), 36, '0'), 'yt', 'v' || i % 5000,
               (ARRAY['fast', 'accurate', NULL])[i % 3 + 1],
               '1.' || (({start_s} + i * {step}) / 86400 / 15)::int % 4, '{{}}', 'ok', '[]',
               {at} (i - {first // 20}) * {step}), '{{}}', '{{}}'
        FROM generate_series({first // 20}, {first // 20 + runs - 1}) AS i"""))
        conn.execute(sa.text(f"""
        INSERT INTO component_runs (component_run_id, run_id, component, attempt,
            required, status, warnings, started_at, finished_at, duration_ms,
            device_used, model_signature, cache_status, peak_rss_bytes, oom_count,
            retry_count, items, metrics)
        SELECT lpad(to_hex(i), 36, '0'), lpad(to_hex(i / 20), 36, '0'),
               (ARRAY{list(COMPONENTS)})[i % 10 + 1], 1, true,
               CASE WHEN random() < 0.02 THEN 'error' WHEN random() < 0.03 THEN 'empty'
                    ELSE 'ok' END, '[]',
               {at} ((i - {first}) / 20) * {step} + i % 20),
               {at} ((i - {first}) / 20) * {step} + i % 20 + 1),
               random() * 1000 + (i % 10) * 10,
               CASE (i / 20) % 3 WHEN 0 THEN 'cpu' ELSE 'cuda:' || (i / 20) % 2 END,
               CASE WHEN i % 10 < 5 THEN lpad(to_hex(i % 10), 64, '0') END,
               (ARRAY['hit', 'miss', NULL])[(random() * 2)::int + 1],
               100000000 + (random() * 1e8)::bigint, 0, 0, (random() * 50)::int,
               CASE WHEN i % 10 = 0 THEN json_build_object('wer', random())
                    ELSE '{{}}'::json END
        FROM generate_series({first}, {first + rows - 1}) AS i"""))
    with engine.connect() as conn:
        conn.execute(sa.text("ANALYZE"))


def bench_postgres() -> dict[str, float]:
    try:
        admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as exc:
        print(f"PostgreSQL rollup: SKIPPED (server unreachable: {exc.__class__.__name__})")
        return {}
    name = f"mlobs_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        engine = sa.create_engine(url)
        start = time.perf_counter()
        _generate_postgres(engine, PG_ROWS)
        print(f"PostgreSQL warehouse: {PG_ROWS:,} component_runs rows generated in "
              f"{time.perf_counter() - start:.0f} s")
        with engine.connect() as conn:
            own_s, _ = _timed(lambda: conn.execute(sa.text(_PG_GROUP_BY)).all())
        full_s, full = _timed(lambda: refresh_rollup(url, "day", full=True))
        print(f"   day: full mlobs rollup {full_s:6.2f} s ({full.written:,} rows stored) vs "
              f"PostgreSQL's GROUP BY with percentile_cont {own_s:6.2f} s: "
              f"{own_s / full_s:.1f}x faster (target >= 15x)")
        _generate_postgres(engine, PG_ROWS // 100, first=PG_ROWS, start_s=DAYS * 86400.0,
                           span_s=0.01 * DAYS * 86400.0)
        # grace 0: the generated rows were stored seconds before the full rollup, and the
        # default grace would count them as new.
        inc_s, inc = _timed(lambda: refresh_rollup(url, "day", grace_s=0))
        print(f"   day: after 1% new rows, incremental mlobs rollup {inc_s:6.2f} s "
              f"({inc.buckets} buckets) vs PostgreSQL's GROUP BY above: "
              f"{own_s / inc_s:.1f}x faster")
        engine.dispose()
        return {"postgres_full_day_speedup": own_s / full_s,
                "postgres_incremental_day_speedup": own_s / inc_s}
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> dict[str, float]:
    print("Rollups (mlobs.analysis): full and incremental, against the databases' own "
          "queries")
    with tempfile.TemporaryDirectory(prefix="mlobs-bench-rollup-") as directory:
        figures = bench_sqlite(Path(directory))
    return {**figures, **bench_postgres()}


if __name__ == "__main__":
    main()
