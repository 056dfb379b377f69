"""DuckDB rollups (mlobs.analysis.rollup, mlobs.analysis.duckdb_connect, ``mlobs rollup``).

The rollup numbers are checked against an independent computation: the same
component_runs rows read back with SQLAlchemy and aggregated in Python with
``numpy.percentile`` (linear interpolation, the definition ``quantile_cont`` shares).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import uuid
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone

import duckdb
import numpy as np
import pytest
import sqlalchemy as sa

from mlobs.analysis import incremental
from mlobs.analysis.duckdb_connect import (
    EXTENSION_WHEELS,
    attach_warehouse,
    connect_duckdb,
    extension_path,
    libpq_conninfo,
)
from mlobs.analysis.parquet import export_parquet
from mlobs.analysis.rollup import RollupRow, bucket_floor, compute_rollup
from mlobs.analysis.rollup_store import write_rollup
from mlobs.cli import rollup as rollup_cli
from mlobs.cli.rollup import format_rollup
from mlobs.core.errors import ConfigError, SchemaOutOfDateError, WarehouseError
from mlobs.core.records import ComponentRecord, ModelRef, RunRecord
from mlobs.core.signature import model_signature
from mlobs.warehouse.engine import create_warehouse_engine
from mlobs.warehouse.migrate import upgrade
from mlobs.warehouse.models import ComponentRollup, ComponentRun
from mlobs.warehouse.store import WarehouseStore

WHISPER_FP16 = [ModelRef(name="openai/whisper-small", version="r1", weights_digest="sha256:aa",
                         engine="torch", precision="fp16", device="cuda:0")]
WHISPER_FP32 = [ModelRef(name="openai/whisper-small", version="r1", weights_digest="sha256:aa",
                         engine="torch", precision="fp32", device="cpu")]
BART = [ModelRef(name="facebook/bart-large-cnn", version="r7", engine="torch", device="cpu")]
SIG_FP16 = model_signature(WHISPER_FP16)
SIG_FP32 = model_signature(WHISPER_FP32)
SIG_BART = model_signature(BART)
#: Start of the synthetic history; records spread over three UTC days from here.
T0 = datetime(2024, 5, 1, 20, 0, tzinfo=timezone.utc)
#: A non-UTC offset: buckets must follow UTC, whatever offset a record was written with.
CEST = timezone(timedelta(hours=2))


# --------------------------------------------------------------------------- fixtures

def _populate(db_url: str, runs: list[RunRecord], components: list[ComponentRecord]) -> None:
    upgrade(db_url)
    with WarehouseStore(db_url) as store:
        store.write(runs, components)


def _records(seed: int = 7, n_runs: int = 36) -> tuple[list[RunRecord], list[ComponentRecord]]:
    """Runs over ~3 days; asr has two model signatures, chunking none, summarize one
    that never looks up the cache nor records RSS (its rates must come out NULL).

    OOMs, retries, GPU peaks and prediction statuses: only asr on fp16 (cuda) records GPU
    peaks, each one sometimes missing; chunking never OOMs nor sets a prediction_status
    (its degraded_rate must come out NULL); summarize always answers ``ok``.
    """
    rng = random.Random(seed)
    # A second generator for the fields of revision 0002, so the others keep their values.
    extra = random.Random(seed + 1000)
    # And a third for the miss reasons (revision 0003); None is a miss without a reason.
    reasons = random.Random(seed + 2000)
    runs: list[RunRecord] = []
    components: list[ComponentRecord] = []
    for i in range(n_runs):
        run_id = str(uuid.uuid4())
        started = T0 + timedelta(hours=2 * i, minutes=rng.randrange(60))
        if i % 5 == 0:
            started = started.astimezone(CEST)
        runs.append(RunRecord(run_id=run_id, platform_id="youtube", video_id=f"v{i}",
                              status="ok", started_at=started, profile="baseline",
                              pipeline_version="1.4.0", config_hash="c" * 64,
                              finished_at=started + timedelta(seconds=30),
                              duration_ms=30_000.0))
        plan = [("asr", WHISPER_FP16 if i % 3 else WHISPER_FP32, 1),
                ("chunking", [], 1), ("chunking", [], 2),
                ("summarize", BART, 1)]
        offset = timedelta()
        for component, models, attempt in plan:
            begin = started + offset
            duration_ms = rng.lognormvariate(4.0, 0.8)
            offset += timedelta(milliseconds=duration_ms + 1)
            status = rng.choices(["ok", "empty", "error"], weights=[6, 2, 1])[0]
            summarize = component == "summarize"
            on_gpu = models is WHISPER_FP16
            cache_status = None if summarize else rng.choice(["hit", "miss", "bypass", None])
            miss_reason = {"miss": reasons.choice(["no_entry", "input_changed",
                                                   "model_signature_changed", "expired",
                                                   None]),
                           "bypass": "forced"}.get(cache_status)
            allocated = extra.randrange(500, 8000) * 2**20 \
                if on_gpu and extra.random() < 0.8 else None
            reserved = (allocated or 0) + extra.randrange(0, 1024) * 2**20 \
                if on_gpu and extra.random() < 0.7 else None
            components.append(ComponentRecord(
                component_run_id=str(uuid.uuid4()), run_id=run_id, component=component,
                attempt=attempt, required=component != "chunking", status=status,
                started_at=begin, finished_at=begin + timedelta(milliseconds=duration_ms),
                duration_ms=duration_ms,
                empty_reason="no_speech" if status == "empty" else None,
                error_code="internal" if status == "error" else None,
                models_used=models, model_signature=model_signature(models),
                cache_status=cache_status, cache_miss_reason=miss_reason,
                peak_rss_bytes=None if summarize or rng.random() < 0.2
                else rng.randrange(200, 4000) * 2**20,
                peak_gpu_allocated_bytes=allocated, peak_gpu_reserved_bytes=reserved,
                oom_count=0 if component == "chunking" else extra.choice([0, 0, 0, 1, 2]),
                retry_count=extra.choice([0, 0, 1, 3]),
                batch_size=8 if on_gpu else None,
                batch_size_requested=extra.choice([8, 16]) if on_gpu else None,
                prediction_status=("ok" if summarize else None if component == "chunking"
                                   else extra.choice(["ok", "degraded", None])),
            ))
    return runs, components


@pytest.fixture
def warehouse_url(db_url: str) -> str:
    """A migrated warehouse holding :func:`_records`, on SQLite and on PostgreSQL
    (``db_url`` and ``pg_url`` come from tests/conftest.py)."""
    runs, components = _records()
    _populate(db_url, runs, components)
    return db_url


@pytest.fixture
def sqlite_warehouse(sqlite_url: str) -> str:
    """A smaller SQLite-only warehouse for tests that need no second backend."""
    runs, components = _records(seed=3, n_runs=12)
    _populate(sqlite_url, runs, components)
    return sqlite_url


# --------------------------------------------------------------------- reference model


def _reference(db_url: str, bucket: str, since: datetime | None = None) -> dict:
    """Rollup computed without DuckDB: SQLAlchemy rows + Python + numpy.percentile."""
    engine = create_warehouse_engine(db_url)
    cols = [ComponentRun.component, ComponentRun.model_signature, ComponentRun.run_id,
            ComponentRun.status, ComponentRun.cache_status, ComponentRun.duration_ms,
            ComponentRun.peak_rss_bytes, ComponentRun.started_at,
            ComponentRun.peak_gpu_allocated_bytes, ComponentRun.peak_gpu_reserved_bytes,
            ComponentRun.oom_count, ComponentRun.retry_count, ComponentRun.prediction_status,
            ComponentRun.cache_miss_reason]
    with engine.connect() as conn:
        rows = conn.execute(sa.select(*cols)).all()
    engine.dispose()
    groups: dict[tuple, list] = defaultdict(list)
    for row in rows:
        started = row.started_at.astimezone(timezone.utc)
        if since is not None and started < bucket_floor(since, bucket):
            continue
        start = None if bucket == "all" else bucket_floor(started, bucket)
        groups[(start, row.component, row.model_signature)].append(row)
    out = {}
    for key, members in groups.items():
        durations = [m.duration_ms for m in members]
        hits = sum(m.cache_status == "hit" for m in members)
        lookups = sum(m.cache_status in ("hit", "miss") for m in members)
        rss = [m.peak_rss_bytes for m in members if m.peak_rss_bytes is not None]
        allocated = [m.peak_gpu_allocated_bytes for m in members
                     if m.peak_gpu_allocated_bytes is not None]
        reserved = [m.peak_gpu_reserved_bytes for m in members
                    if m.peak_gpu_reserved_bytes is not None]
        predicted = [m.prediction_status for m in members if m.prediction_status is not None]
        runs = len({m.run_id for m in members})
        out[key] = {
            "invocations": len(members),
            "runs": runs,
            "p50_duration_ms": np.percentile(durations, 50),
            "p95_duration_ms": np.percentile(durations, 95),
            "p99_duration_ms": np.percentile(durations, 99),
            "error_rate": sum(m.status == "error" for m in members) / len(members),
            "empty_rate": sum(m.status == "empty" for m in members) / len(members),
            "cache_hit_rate": hits / lookups if lookups else None,
            "p95_peak_rss_bytes": np.percentile(rss, 95) if rss else None,
            "oom_rate": sum(m.oom_count > 0 for m in members) / len(members),
            "mean_ooms_per_run": sum(m.oom_count for m in members) / runs,
            "retries": sum(m.retry_count for m in members),
            "p95_peak_gpu_allocated_bytes": np.percentile(allocated, 95) if allocated else None,
            "p95_peak_gpu_reserved_bytes": np.percentile(reserved, 95) if reserved else None,
            "degraded_rate": (predicted.count("degraded") / len(predicted)
                              if predicted else None),
            "cache_miss_reasons": dict(Counter(m.cache_miss_reason or "unknown"
                                               for m in members
                                               if m.cache_status == "miss")),
        }
    return out


def _assert_matches(rows: list[RollupRow], expected: dict) -> None:
    got = {(r.bucket_start, r.component, r.model_signature): r for r in rows}
    assert set(got) == set(expected)
    for key, values in expected.items():
        row = got[key]
        for name, value in values.items():
            actual = getattr(row, name)
            if value is None:
                assert actual is None, (key, name)
            elif isinstance(value, dict):
                assert actual == value, (key, name)
                assert all(type(n) is int for n in actual.values()), (key, name)
            else:
                assert actual == pytest.approx(value, rel=1e-9), (key, name)
        for name in ("invocations", "runs", "retries"):
            assert type(getattr(row, name)) is int, (key, name)


def _stored(db_url: str) -> list[dict]:
    engine = create_warehouse_engine(db_url)
    table = ComponentRollup.__table__
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.select(table)).all()]
    engine.dispose()
    return rows


# ------------------------------------------------------------------------ rollup maths


@pytest.mark.parametrize("bucket", ["all", "hour", "day"])
def test_rollup_matches_numpy_reference(warehouse_url: str, bucket: str) -> None:
    rows = compute_rollup(warehouse_url, bucket=bucket)
    _assert_matches(rows, _reference(warehouse_url, bucket))
    assert {r.bucket_width for r in rows} == {bucket}
    assert len({r.computed_at for r in rows}) == 1


def test_rollup_all_shape(warehouse_url: str) -> None:
    rows = compute_rollup(warehouse_url)
    keys = [(r.component, r.model_signature) for r in rows]
    # Ordered by component, then model_signature with NULL first.
    assert keys == [("asr", min(SIG_FP16, SIG_FP32)), ("asr", max(SIG_FP16, SIG_FP32)),
                    ("chunking", None), ("summarize", SIG_BART)]
    by_key = dict(zip(keys, rows))
    # chunking ran twice per run: invocations count attempts, runs count distinct runs.
    assert by_key[("chunking", None)].invocations == 72
    assert by_key[("chunking", None)].runs == 36
    summarize = by_key[("summarize", SIG_BART)]
    assert summarize.cache_hit_rate is None and summarize.p95_peak_rss_bytes is None
    assert all(r.bucket_start is None for r in rows)
    # No fallback chain: no degraded rate; one that always answered: 0, not None.
    chunking = by_key[("chunking", None)]
    assert chunking.degraded_rate is None and summarize.degraded_rate == 0.0
    assert chunking.oom_rate == 0.0 and chunking.mean_ooms_per_run == 0.0
    # GPU peaks only where some invocation recorded one (asr on fp16).
    fp32 = by_key[("asr", SIG_FP32)]
    assert fp32.p95_peak_gpu_allocated_bytes is None
    assert fp32.p95_peak_gpu_reserved_bytes is None
    assert by_key[("asr", SIG_FP16)].p95_peak_gpu_allocated_bytes is not None


def test_oom_retry_gpu_and_degraded_columns_on_known_rows(db_url: str) -> None:
    """Hand-checkable numbers: one component over three runs, four invocations."""
    runs = [RunRecord(run_id=str(uuid.uuid4()), platform_id="p", video_id=f"v{i}",
                      status="ok", started_at=T0 + timedelta(minutes=i))
            for i in range(3)]
    # (run, attempt, oom_count, retry_count, allocated MiB, reserved MiB, prediction_status)
    plan = [(0, 1, 2, 1, 1000, 1200, "degraded"), (0, 2, 0, 0, None, 1500, "ok"),
            (1, 1, 1, 3, 3000, None, None), (2, 1, 0, 0, 2000, 2400, "ok")]
    components = []
    for run_index, attempt, ooms, retries, allocated, reserved, prediction in plan:
        run = runs[run_index]
        began = run.started_at + timedelta(seconds=attempt)
        components.append(ComponentRecord(
            component_run_id=str(uuid.uuid4()), run_id=run.run_id, component="asr",
            attempt=attempt, required=True, status="ok", started_at=began,
            finished_at=began + timedelta(milliseconds=10), duration_ms=10.0,
            models_used=WHISPER_FP16, model_signature=SIG_FP16, oom_count=ooms,
            retry_count=retries, prediction_status=prediction,
            peak_gpu_allocated_bytes=None if allocated is None else allocated * 2**20,
            peak_gpu_reserved_bytes=None if reserved is None else reserved * 2**20))
    _populate(db_url, runs, components)
    [row] = compute_rollup(db_url)
    assert (row.invocations, row.runs) == (4, 3)
    assert row.oom_rate == pytest.approx(2 / 4)          # two invocations had an OOM
    assert row.mean_ooms_per_run == pytest.approx(3 / 3)  # three OOMs over three runs
    assert row.retries == 4
    # numpy.percentile's linear interpolation, by hand: 95 % of the way from the
    # second-largest to the largest value (three values: index 1.9).
    assert row.p95_peak_gpu_allocated_bytes == pytest.approx((2000 + 0.9 * 1000) * 2**20)
    assert row.p95_peak_gpu_reserved_bytes == pytest.approx((1500 + 0.9 * 900) * 2**20)
    assert row.degraded_rate == pytest.approx(1 / 3)     # of the three that set one


def test_what_invocations_added_to_memory_is_rolled_up_beside_the_peaks(db_url: str) -> None:
    """Two components in one large process: the same peaks, different increases."""
    run = RunRecord(run_id=str(uuid.uuid4()), platform_id="p", video_id="v", status="ok",
                    started_at=T0)
    # (component, peak MiB, added MiB, added GPU MiB)
    plan = [("asr", 2000, 900, 300), ("asr", 2100, 1000, None), ("asr", 1900, 800, 100),
            ("cleaning", 2000, 1, None), ("cleaning", 2050, None, None)]
    components = []
    for attempt, (name, peak, added, added_gpu) in enumerate(plan, 1):
        began = run.started_at + timedelta(seconds=attempt)
        components.append(ComponentRecord(
            component_run_id=str(uuid.uuid4()), run_id=run.run_id, component=name,
            attempt=attempt, required=True, status="ok", started_at=began,
            finished_at=began + timedelta(milliseconds=10), duration_ms=10.0,
            peak_rss_bytes=peak * 2**20,
            rss_at_start_bytes=None if added is None else (peak - added) * 2**20,
            peak_rss_increase_bytes=None if added is None else added * 2**20,
            peak_gpu_allocated_increase_bytes=(None if added_gpu is None
                                               else added_gpu * 2**20)))
    _populate(db_url, runs=[run], components=components)
    rows = {row.component: row for row in compute_rollup(db_url)}
    asr, cleaning = rows["asr"], rows["cleaning"]
    # The peaks barely differ; what each component added does.
    assert asr.p95_peak_rss_bytes == pytest.approx((2000 + 0.9 * 100) * 2**20)
    assert cleaning.p95_peak_rss_bytes == pytest.approx((2000 + 0.95 * 50) * 2**20)
    assert asr.p95_peak_rss_increase_bytes == pytest.approx((900 + 0.9 * 100) * 2**20)
    assert cleaning.p95_peak_rss_increase_bytes == pytest.approx(2**20)  # NULL left out
    assert asr.p95_peak_gpu_allocated_increase_bytes == pytest.approx((100 + 0.95 * 200)
                                                                      * 2**20)
    assert cleaning.p95_peak_gpu_allocated_increase_bytes is None
    assert "p95 added RSS MiB" in format_rollup([asr, cleaning]).splitlines()[0]


def test_cache_miss_reasons_on_known_rows(db_url: str) -> None:
    """Counts per reason over misses only, in MISS_REASONS order, ``unknown`` last."""
    run = RunRecord(run_id=str(uuid.uuid4()), platform_id="p", video_id="v", status="ok",
                    started_at=T0)
    # (component, cache_status, cache_miss_reason)
    plan = ([("asr", "miss", "input_changed")] * 5 + [("asr", "miss", "no_entry")] * 2
            + [("asr", "miss", "model_signature_changed")] * 3
            + [("asr", "miss", None), ("asr", "miss", "some_future_reason")]
            + [("asr", "hit", None)] * 4 + [("asr", "bypass", "forced")] * 2
            + [("asr", None, None)]
            + [("chunking", "hit", None), ("chunking", "bypass", "forced")]
            + [("ocr", None, None)])
    components = []
    for attempt, (component, status, reason) in enumerate(plan, start=1):
        began = T0 + timedelta(seconds=attempt)
        components.append(ComponentRecord(
            component_run_id=str(uuid.uuid4()), run_id=run.run_id, component=component,
            attempt=attempt, required=True, status="ok", started_at=began,
            finished_at=began + timedelta(milliseconds=5), duration_ms=5.0,
            cache_status=status, cache_miss_reason=reason))
    _populate(db_url, [run], components)
    rows = {r.component: r for r in compute_rollup(db_url)}
    asr = rows["asr"]
    assert list(asr.cache_miss_reasons.items()) == [
        ("no_entry", 2), ("model_signature_changed", 3), ("input_changed", 5),
        ("some_future_reason", 1), ("unknown", 1)]
    assert sum(asr.cache_miss_reasons.values()) == 12  # the misses; bypass is not one
    assert asr.cache_hit_rate == pytest.approx(4 / 16)
    assert rows["chunking"].cache_miss_reasons == {}  # lookups, but no miss
    assert rows["ocr"].cache_miss_reasons == {}       # no lookup at all
    text = format_rollup(list(rows.values()))
    assert "miss reasons" in text.splitlines()[0]
    assert ("no_entry:2, model_signature_changed:3, input_changed:5, "
            "some_future_reason:1, unknown:1") in text
    write_rollup(db_url, list(rows.values()), "all")
    stored = {r["component"]: r["cache_miss_reasons"] for r in _stored(db_url)}
    assert stored == {"asr": asr.cache_miss_reasons, "chunking": {}, "ocr": {}}


def test_day_buckets_split_by_utc_day(warehouse_url: str) -> None:
    total = {(r.component, r.model_signature): r.invocations
             for r in compute_rollup(warehouse_url)}
    days = compute_rollup(warehouse_url, bucket="day")
    starts = sorted({r.bucket_start for r in days})
    assert starts == [datetime(2024, 5, d, tzinfo=timezone.utc) for d in (1, 2, 3, 4)]
    assert all(s.hour == 0 and s.tzinfo is not None for s in starts)
    summed: dict[tuple, int] = defaultdict(int)
    for r in days:
        summed[(r.component, r.model_signature)] += r.invocations
    assert summed == total


def test_since_floors_to_bucket_and_filters(warehouse_url: str) -> None:
    since = datetime(2024, 5, 2, 13, 30, tzinfo=timezone.utc)
    days = compute_rollup(warehouse_url, bucket="day", since=since)
    assert min(r.bucket_start for r in days) == datetime(2024, 5, 2, tzinfo=timezone.utc)
    _assert_matches(days, _reference(warehouse_url, "day", since))
    everything = compute_rollup(warehouse_url, since=since)
    _assert_matches(everything, _reference(warehouse_url, "all", since))
    # A naive since is UTC.
    naive = compute_rollup(warehouse_url, since=since.replace(tzinfo=None))
    assert [r.invocations for r in naive] == [r.invocations for r in everything]


def test_empty_warehouse_gives_no_rows(db_url: str) -> None:
    _populate(db_url, [], [])
    assert compute_rollup(db_url, bucket="day") == []
    assert "no component runs" in format_rollup([])


# ---------------------------------------------------------------------- writing back


def test_write_rollup_replaces_rows_of_its_bucket(warehouse_url: str) -> None:
    all_rows = compute_rollup(warehouse_url)
    day_rows = compute_rollup(warehouse_url, bucket="day")
    assert write_rollup(warehouse_url, day_rows, "day") == len(day_rows)
    for _ in range(2):  # re-running is idempotent
        assert write_rollup(warehouse_url, all_rows, "all") == len(all_rows)
    stored = _stored(warehouse_url)
    by_width: dict[str, list[dict]] = defaultdict(list)
    for row in stored:
        by_width[row["bucket_width"]].append(row)
    assert len(by_width["all"]) == len(all_rows)
    assert len(by_width["day"]) == len(day_rows)
    # Values survive the round trip (timestamps come back aware UTC).
    written = {(r.component, r.model_signature): r for r in all_rows}
    for row in by_width["all"]:
        expected = written[(row["component"], row["model_signature"])]
        assert row["bucket_start"] is None
        assert row["computed_at"] == expected.computed_at
        assert row["invocations"] == expected.invocations
        assert row["p95_duration_ms"] == pytest.approx(expected.p95_duration_ms)
        assert row["cache_hit_rate"] == (None if expected.cache_hit_rate is None
                                         else pytest.approx(expected.cache_hit_rate))
        for name in ("oom_rate", "mean_ooms_per_run", "retries",
                     "p95_peak_gpu_allocated_bytes", "p95_peak_gpu_reserved_bytes",
                     "degraded_rate"):
            value = getattr(expected, name)
            assert row[name] == (None if value is None else pytest.approx(value)), name
        assert row["cache_miss_reasons"] == expected.cache_miss_reasons  # JSON round trip
    assert any(row["cache_miss_reasons"] for row in by_width["all"])
    day_starts = {row["bucket_start"] for row in by_width["day"]}
    assert day_starts == {r.bucket_start for r in day_rows}


def test_incremental_write_keeps_earlier_buckets(warehouse_url: str) -> None:
    full = compute_rollup(warehouse_url, bucket="day")
    write_rollup(warehouse_url, full, "day")
    since = datetime(2024, 5, 3, 6, 0, tzinfo=timezone.utc)
    partial = compute_rollup(warehouse_url, bucket="day", since=since)
    write_rollup(warehouse_url, partial, "day", since=since)
    stored = sorted((r["bucket_start"], r["component"], r["model_signature"] or "")
                    for r in _stored(warehouse_url))
    expected = sorted((r.bucket_start, r.component, r.model_signature or "") for r in full)
    assert stored == expected


def test_write_rollup_rejects_mixed_buckets(sqlite_warehouse: str) -> None:
    rows = compute_rollup(sqlite_warehouse, bucket="hour")
    with pytest.raises(ConfigError, match="bucket width"):
        write_rollup(sqlite_warehouse, rows, "day")
    with pytest.raises(ConfigError):
        compute_rollup(sqlite_warehouse, bucket="week")


def test_missing_and_unmigrated_databases(tmp_path) -> None:
    missing = f"sqlite:///{tmp_path / 'nope.db'}"
    with pytest.raises(WarehouseError, match="no warehouse at"):
        compute_rollup(missing)
    with pytest.raises(WarehouseError, match="no warehouse at"):
        write_rollup(missing, [], "all")
    assert not (tmp_path / "nope.db").exists()
    bare = tmp_path / "bare.db"
    bare.touch()  # an empty file is a valid SQLite database without tables
    with pytest.raises(SchemaOutOfDateError, match="mlobs db upgrade"):
        compute_rollup(f"sqlite:///{bare}")
    with sa.create_engine(f"sqlite:///{bare}").connect() as conn:
        assert sa.inspect(conn).get_table_names() == []  # the rollup migrated nothing
    with pytest.raises(SchemaOutOfDateError, match="mlobs db upgrade"):
        write_rollup(f"sqlite:///{bare}", [], "all")


# --------------------------------------------------------------- DuckDB, offline only


def test_connection_never_autoinstalls_or_autoloads() -> None:
    con = connect_duckdb()
    settings = dict(con.execute(
        "SELECT name, value FROM duckdb_settings() WHERE name IN "
        "('autoinstall_known_extensions', 'autoload_known_extensions', "
        "'allow_community_extensions', 'TimeZone')").fetchall())
    assert settings == {"autoinstall_known_extensions": "false",
                        "autoload_known_extensions": "false",
                        "allow_community_extensions": "false", "TimeZone": "UTC"}
    # Without an explicit load, DuckDB must refuse instead of fetching the extension.
    with pytest.raises(duckdb.Error):
        con.execute("ATTACH ':memory:' AS x (TYPE sqlite)")
    con.close()


def test_extensions_come_from_the_pinned_wheels(sqlite_warehouse: str) -> None:
    for name, (package, _) in EXTENSION_WHEELS.items():
        path = extension_path(name)
        assert path.is_file()
        assert path.parent.name == f"v{duckdb.__version__}"
        assert path.parent.parent.parent.name == package
    con = connect_duckdb()
    assert attach_warehouse(con, sqlite_warehouse) == "sqlite"
    loaded = dict(con.execute("SELECT extension_name, loaded FROM duckdb_extensions() "
                              "WHERE extension_name = 'sqlite_scanner'").fetchall())
    assert loaded == {"sqlite_scanner": True}
    assert con.execute("SELECT readonly FROM duckdb_databases() "
                       "WHERE database_name = 'wh'").fetchone() == (True,)
    with pytest.raises(duckdb.Error):
        con.execute("DELETE FROM wh.component_runs")
    con.close()


def test_missing_extension_build_names_the_pip_package() -> None:
    with pytest.raises(WarehouseError, match=r"pip install 'duckdb-extension-sqlite-scanner==0\.0\.1'"):
        extension_path("sqlite_scanner", duckdb_version="0.0.1")
    with pytest.raises(ConfigError):
        extension_path("httpfs")


@pytest.mark.parametrize("url", ["mysql://u@h/db", "sqlite://", "sqlite:///:memory:",
                                 "not a url"])
def test_unsupported_urls(url: str) -> None:
    con = connect_duckdb()
    with pytest.raises(WarehouseError):
        attach_warehouse(con, url)
    with pytest.raises(ConfigError):
        attach_warehouse(con, "sqlite:///x.db", alias="wh; DROP")
    con.close()
    with pytest.raises(WarehouseError):
        compute_rollup(url)


def test_libpq_conninfo_quotes_values() -> None:
    url = sa.make_url("postgresql+psycopg://ml obs:p'w\\d@db.local:6543/metrics?sslmode=require")
    assert libpq_conninfo(url) == ("host=db.local port=6543 user='ml obs' "
                                   "password='p\\'w\\\\d' dbname=metrics sslmode=require")
    assert libpq_conninfo(sa.make_url("postgresql://postgres@127.0.0.1:5432/mlobs")) == \
        "host=127.0.0.1 port=5432 user=postgres dbname=mlobs"


def test_postgres_attach_failure_hides_password() -> None:
    con = connect_duckdb()
    with pytest.raises(WarehouseError) as info:
        attach_warehouse(con, "postgresql://someone:s3cret@127.0.0.1:1/none")
    assert "s3cret" not in str(info.value)
    con.close()


# ------------------------------------------------------------------ output and export


def test_format_rollup_columns(sqlite_warehouse: str) -> None:
    rows = compute_rollup(sqlite_warehouse)
    text = format_rollup(rows)
    lines = text.splitlines()
    for header in ("component", "model", "invocations", "runs", "p50 ms", "p95 ms",
                   "p99 ms", "error %", "empty %", "cache hit %", "OOM %", "retries",
                   "p95 RSS MiB", "p95 GPU alloc MiB", "p95 GPU rsvd MiB", "degraded %"):
        assert header in lines[0]
    asr = next(line for line in lines if line.startswith("asr") and SIG_FP16[:12] in line)
    assert SIG_FP16[:13] not in asr
    chunking = next(line for line in lines if line.startswith("chunking"))
    assert " - " in chunking
    row = next(r for r in rows if r.component == "asr" and r.model_signature == SIG_FP16)
    assert f"{row.p95_peak_rss_bytes / 2**20:.1f}" in asr
    assert f"{100 * row.error_rate:.1f}" in asr
    assert f"{row.p95_peak_gpu_allocated_bytes / 2**20:.1f}" in asr
    assert f"{100 * row.oom_rate:.1f}" in asr and f" {row.retries} " in asr
    day_text = format_rollup(compute_rollup(sqlite_warehouse, bucket="day"))
    assert day_text.splitlines()[0].startswith("bucket (UTC)")
    assert "2024-05-01 00:00" in day_text


def test_format_rollup_leaves_out_gpu_and_degraded_columns_nobody_has(
        sqlite_warehouse: str) -> None:
    rows = [dataclasses.replace(r, p95_peak_gpu_allocated_bytes=None,
                                p95_peak_gpu_reserved_bytes=None, degraded_rate=None)
            for r in compute_rollup(sqlite_warehouse)]
    header = format_rollup(rows).splitlines()[0]
    assert "OOM %" in header and "retries" in header
    assert "GPU" not in header and "degraded" not in header
    # One row with a reserved peak only is enough to show both GPU columns.
    rows[0] = dataclasses.replace(rows[0], p95_peak_gpu_reserved_bytes=2.0 * 2**30)
    lines = format_rollup(rows).splitlines()
    assert "p95 GPU alloc MiB" in lines[0] and "p95 GPU rsvd MiB" in lines[0]
    assert lines[2].split()[-2:] == ["-", "2048.0"]
    # Miss reasons: a column only while some row has a miss.
    assert "miss reasons" in lines[0]
    no_misses = [dataclasses.replace(r, cache_miss_reasons={}) for r in rows]
    header = format_rollup(no_misses).splitlines()[0]
    assert "miss reasons" not in header and "cache hit %" in header


def test_export_parquet_is_hive_partitioned_and_read_back_by_duckdb_and_pandas(
        sqlite_warehouse: str, tmp_path) -> None:
    import pandas

    rows = compute_rollup(sqlite_warehouse, bucket="day")
    root = export_parquet(rows, tmp_path / "out")
    days = sorted({r.bucket_start.strftime("%Y-%m-%d") for r in rows})
    assert sorted(p.name for p in (root / "bucket_width=day").iterdir()) == [
        f"bucket_day={d}" for d in days]
    con = connect_duckdb()
    glob = str(root / "**" / "*.parquet")
    back = con.execute(
        "SELECT timezone('UTC', bucket_start), component, model_signature, pipeline_version, "
        "profile, device_kind, invocations, p95_duration_ms, cache_hit_rate, oom_rate, "
        "mean_ooms_per_run, retries, degraded_rate, cache_miss_reasons, items_per_s, "
        "p95_hit_duration_ms, p95_miss_duration_ms, CAST(bucket_day AS VARCHAR) "
        "FROM read_parquet(?, hive_partitioning = true) "
        "ORDER BY 1, 2, 3 NULLS FIRST, 4 NULLS FIRST, 5 NULLS FIRST, 6", [glob]).fetchall()
    con.close()
    assert back == [(r.bucket_start.replace(tzinfo=None), r.component, r.model_signature,
                     r.pipeline_version, r.profile, r.device_kind, r.invocations,
                     r.p95_duration_ms, r.cache_hit_rate, r.oom_rate, r.mean_ooms_per_run,
                     r.retries, r.degraded_rate, r.cache_miss_reasons, r.items_per_s,
                     r.p95_hit_duration_ms, r.p95_miss_duration_ms,
                     r.bucket_start.strftime("%Y-%m-%d")) for r in rows]
    assert any(r.cache_miss_reasons for r in rows)
    frame = pandas.read_parquet(root)
    assert len(frame) == len(rows)
    assert set(frame["bucket_day"].astype(str)) == set(days)
    assert frame["invocations"].sum() == sum(r.invocations for r in rows)


def test_export_parquet_replaces_only_the_days_it_has_rows_for(sqlite_warehouse: str,
                                                                tmp_path) -> None:
    rows = compute_rollup(sqlite_warehouse, bucket="day")
    root = export_parquet(rows, tmp_path / "out")
    first_day = min(r.bucket_start for r in rows)
    later = [r for r in rows if r.bucket_start != first_day]
    kept = root / "bucket_width=day" / f"bucket_day={first_day:%Y-%m-%d}" / "data_0.parquet"
    before = kept.stat().st_mtime_ns
    export_parquet([dataclasses.replace(r, invocations=r.invocations + 1000) for r in later],
                   root)
    assert kept.stat().st_mtime_ns == before
    con = connect_duckdb()
    total = con.execute("SELECT sum(invocations) FROM read_parquet(?)",
                        [str(root / "**" / "*.parquet")]).fetchone()[0]
    con.close()
    assert total == sum(r.invocations for r in rows) + 1000 * len(later)
    assert not [p for p in root.iterdir() if p.name.startswith(".")]


def test_export_parquet_refuses_a_file(sqlite_warehouse: str, tmp_path) -> None:
    target = tmp_path / "rollup.parquet"
    target.write_bytes(b"")
    with pytest.raises(ConfigError, match="takes a directory"):
        export_parquet([], target)


# ------------------------------------------------------------------------------- CLI


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="mlobs")
    rollup_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["rollup", *argv])
    return args.func(args)


def test_cli_prints_table_and_writes(warehouse_url: str, capsys) -> None:
    assert _cli("--db-url", warehouse_url) == 0
    out, err = capsys.readouterr()
    header = out.splitlines()[0].split()
    assert header[:3] == ["component", "model", "version"]
    assert header.index("invocations") < header.index("runs")
    # the model column names the models, with the signature's first 8 characters
    assert "chunking" in out and f"openai/whisper-small@{SIG_FP16[:8]} " in out
    assert SIG_FP16[:9] not in out
    assert "miss reasons" in out.splitlines()[0]
    assert "external caches" not in out  # no lookups recorded: no second table
    assert "full rollup (bucket all has one bucket); stored" in err
    assert {r["bucket_width"] for r in _stored(warehouse_url)} == {"all"}


def test_cli_json_no_write_and_parquet(sqlite_warehouse: str, tmp_path, capsys) -> None:
    parquet = tmp_path / "rollups"
    assert _cli("--db-url", sqlite_warehouse, "--bucket", "day", "--since", "2024-05-01",
                "--json", "--no-write", "--parquet", str(parquet)) == 0
    out, _ = capsys.readouterr()
    document = json.loads(out)
    assert set(document) == {"component_rollups", "external_caches"}
    assert document["external_caches"] == []  # these records looked up no external cache
    data = document["component_rollups"]
    assert data and {d["bucket_width"] for d in data} == {"day"}
    assert data[0]["bucket_start"] == "2024-05-01T00:00:00+00:00"
    assert all(set(d) == {f.name for f in dataclasses.fields(RollupRow)} for d in data)
    assert all(type(d["retries"]) is int and 0 <= d["oom_rate"] <= 1 for d in data)
    assert all(isinstance(d["cache_miss_reasons"], dict) for d in data)
    assert any(d["cache_miss_reasons"] for d in data)
    assert list(parquet.glob("bucket_width=day/bucket_day=2024-05-*/data_0.parquet"))
    assert _stored(sqlite_warehouse) == []


def test_cli_default_db_url_from_environment(sqlite_warehouse: str, monkeypatch,
                                             capsys) -> None:
    monkeypatch.setenv("MLOBS_DB_URL", sqlite_warehouse)
    assert _cli("--no-write") == 0
    assert "asr" in capsys.readouterr().out


def test_cli_missing_database_fails_clearly(tmp_path, capsys) -> None:
    assert _cli("--db-url", f"sqlite:///{tmp_path / 'none.db'}") == 1
    _, err = capsys.readouterr()
    assert "mlobs rollup: error: no warehouse at" in err
    bare = tmp_path / "bare.db"
    bare.touch()
    assert _cli("--db-url", f"sqlite:///{bare}") == 1
    assert "mlobs db upgrade" in capsys.readouterr().err


def test_cli_choices_follow_the_library() -> None:
    import mlobs.analysis.rollup
    assert rollup_cli.BUCKETS == mlobs.analysis.rollup.BUCKETS
    assert rollup_cli.ROLLUP_TABLE == mlobs.analysis.rollup.ROLLUP_TABLE
    assert rollup_cli.DEFAULT_GRACE_S == incremental.DEFAULT_GRACE_S


def test_cli_rejects_bad_since(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        _cli("--since", "yesterday")
    assert info.value.code == 2
    assert "ISO 8601" in capsys.readouterr().err


def test_a_rollup_that_computed_nothing_or_part_of_all_keeps_what_is_stored(
        sqlite_warehouse: str, capsys) -> None:
    """``--since`` in the future computes nothing; ``--since`` with ``all`` covers part of
    the history: neither replaces the stored rows."""
    from mlobs.cli.main import main

    rows = compute_rollup(sqlite_warehouse)
    write_rollup(sqlite_warehouse, rows, "all")
    day = compute_rollup(sqlite_warehouse, bucket="day")
    write_rollup(sqlite_warehouse, day, "day")

    def stored(width):
        with sa.create_engine(sqlite_warehouse).connect() as conn:
            return conn.execute(sa.text("SELECT COUNT(*) FROM component_rollups "
                                        "WHERE bucket_width = :w"), {"w": width}).scalar_one()

    before = (stored("all"), stored("day"))
    assert before[0] == len(rows) > 0 and before[1] == len(day) > 0
    future = datetime.now(timezone.utc) + timedelta(days=30)
    assert main(["rollup", "--db-url", sqlite_warehouse, "--bucket", "day", "--since",
                 future.isoformat()]) == 0
    assert main(["rollup", "--db-url", sqlite_warehouse, "--since",
                 future.isoformat()]) == 1
    assert "--since with --bucket all" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="bucket 'all' since"):
        write_rollup(sqlite_warehouse, [], "all", since=future)
    assert write_rollup(sqlite_warehouse, [], "all") == 0
    assert (stored("all"), stored("day")) == before


@pytest.mark.postgres
def test_postgresql_in_a_schema_other_than_public(pg_url, make_run) -> None:
    """The tables live in the connection's schema (``search_path``), not only ``public``."""
    engine = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text("CREATE SCHEMA obs"))
    engine.dispose()
    url = f"{pg_url}?options=-csearch_path%3Dobs"
    upgrade(url)
    run, components = make_run(status="ok")
    with WarehouseStore(url) as store:
        store.write([run], components)
    rows = compute_rollup(url)
    assert {r.component for r in rows} == {c.component for c in components}
    assert write_rollup(url, rows, "all") == len(rows)
    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM obs.component_rollups")
                            ).scalar_one() == len(rows)
    engine.dispose()


@pytest.mark.postgres
def test_an_empty_user_schema_does_not_hide_the_tables_in_public(pg_url, make_run) -> None:
    """``current_schema()`` is the first existing schema of ``"$user", public``; the tables
    are where the search_path finds them."""
    upgrade(pg_url)
    engine = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        user = conn.execute(sa.text("SELECT current_user")).scalar_one()
        conn.execute(sa.text(f'CREATE SCHEMA "{user}"'))
        assert conn.execute(sa.text("SELECT current_schema()")).scalar_one() == user
    engine.dispose()
    run, components = make_run(status="ok")
    with WarehouseStore(pg_url) as store:
        store.write([run], components)
    assert {r.component for r in compute_rollup(pg_url)} == {c.component for c in components}
