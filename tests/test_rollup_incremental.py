"""Rollups v2 (dimensions, throughput, user metrics, cache-hit-split latency) and
incremental rollups (mlobs.analysis.incremental), on SQLite and PostgreSQL.

The new measures are checked against numpy over the same records; the incremental
rollups against a full recompute, over random insert orders and late arrivals
(hypothesis).
"""

from __future__ import annotations

import dataclasses
import random
import tempfile
import uuid
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlobs.analysis import incremental
from mlobs.analysis.incremental import merged_ranges, refresh_rollup
from mlobs.analysis.rollup import bucket_floor, compute_rollup
from mlobs.core.errors import ConfigError
from mlobs.core.records import ComponentRecord, ModelRef, RunRecord
from mlobs.core.signature import model_signature
from mlobs.warehouse.deletion import delete_runs
from mlobs.warehouse.engine import create_warehouse_engine
from mlobs.warehouse.migrate import upgrade
from mlobs.warehouse.models import (
    DELETION_MARK,
    ComponentRollup,
    ComponentRun,
    RollupWatermark,
)
from mlobs.warehouse.store import WarehouseStore

T0 = datetime(2026, 11, 30, 22, 0, tzinfo=timezone.utc)
GPU = [ModelRef(name="openai/whisper-small", version="r1", engine="torch", device="cuda:1")]
CPU = [ModelRef(name="openai/whisper-small", version="r1", engine="torch", device="cpu")]
COMPONENTS = ("asr", "embed", "chunk")
#: Stored columns compared between rollups (computed_at and id differ by construction).
COMPARED = [c.name for c in ComponentRollup.__table__.c if c.name not in ("id", "computed_at")]


def _run(run_id: str, started: datetime, version: str, profile: str | None) -> RunRecord:
    return RunRecord(run_id=run_id, platform_id="youtube", video_id=run_id[:8],
                     status="ok", started_at=started, profile=profile,
                     pipeline_version=version, finished_at=started + timedelta(minutes=5),
                     duration_ms=300_000.0)


def _component(run_id: str, component: str, started: datetime, duration_ms: float, *,
               models: list[ModelRef], cache_status: str | None, items: int | None,
               metrics: dict[str, float], status: str = "ok") -> ComponentRecord:
    return ComponentRecord(
        component_run_id=str(uuid.uuid4()), run_id=run_id, component=component, attempt=1,
        required=True, status=status, started_at=started,
        finished_at=started + timedelta(milliseconds=duration_ms), duration_ms=duration_ms,
        error_code="internal" if status == "error" else None,
        models_used=models, model_signature=model_signature(models),
        device_used=models[0].device if models else None,
        cache_status=cache_status, items=items, metrics=metrics)


# ------------------------------------------------------------------ the new measures

def _known_records(seed: int = 5) -> tuple[list[RunRecord], list[ComponentRecord]]:
    rng = random.Random(seed)
    runs, components = [], []
    for i in range(40):
        run_id = str(uuid.uuid4())
        started = T0 + timedelta(hours=i * 2)
        runs.append(_run(run_id, started, "2.0" if i >= 20 else "1.9",
                         None if i % 4 == 0 else ("fast" if i % 2 else "accurate")))
        for k, component in enumerate(COMPONENTS):
            models = GPU if (component == "asr" and i % 3) else CPU
            metrics = {"wer": rng.random()} if component == "asr" else {}
            if component == "embed":
                metrics = {"dim": 768, "norm": rng.uniform(0.5, 2.0)}
            components.append(_component(
                run_id, component, started + timedelta(seconds=k),
                rng.lognormvariate(3, 0.6), models=models,
                cache_status=rng.choice(["hit", "miss", "miss", None]),
                items=None if component == "chunk" else rng.randrange(1, 200),
                metrics=metrics))
    return runs, components


def _reference(runs: list[RunRecord], components: list[ComponentRecord]) -> dict:
    by_run = {r.run_id: r for r in runs}
    groups: dict[tuple, list[ComponentRecord]] = defaultdict(list)
    for c in components:
        run = by_run[c.run_id]
        device = c.models_used[0].device.split(":")[0] if c.models_used else "cpu"
        day = c.started_at.astimezone(timezone.utc).replace(hour=0, minute=0, second=0,
                                                            microsecond=0)
        groups[(day, c.component, c.model_signature, run.pipeline_version, run.profile,
                device)].append(c)
    expected = {}
    for key, members in groups.items():
        def p(values, q):
            return float(np.percentile(values, q)) if values else None
        hits = [c.duration_ms for c in members if c.cache_status == "hit"]
        misses = [c.duration_ms for c in members if c.cache_status == "miss"]
        counted = [c for c in members if c.items is not None and c.duration_ms > 0]
        metrics: dict[str, list[float]] = defaultdict(list)
        for c in members:
            for name, value in c.metrics.items():
                metrics[name].append(value)
        expected[key] = {
            "invocations": len(members),
            "items": sum(c.items for c in counted) if counted else None,
            "items_per_s": (sum(c.items for c in counted)
                            / (sum(c.duration_ms for c in counted) / 1000.0))
            if counted else None,
            "p50_hit_duration_ms": p(hits, 50), "p95_hit_duration_ms": p(hits, 95),
            "p50_miss_duration_ms": p(misses, 50), "p95_miss_duration_ms": p(misses, 95),
            "metrics": {name: {"count": len(v), "mean": float(np.mean(v)),
                               "p50": p(v, 50), "p95": p(v, 95)}
                        for name, v in sorted(metrics.items())},
        }
    return expected


def test_dimensions_throughput_metrics_and_cache_split_match_numpy(db_url: str) -> None:
    runs, components = _known_records()
    upgrade(db_url)
    with WarehouseStore(db_url) as store:
        store.write(runs, components)
    rows = compute_rollup(db_url, bucket="day")
    expected = _reference(runs, components)
    got = {(r.bucket_start, r.component, r.model_signature, r.pipeline_version, r.profile,
            r.device_kind): r for r in rows}
    assert set(got) == set(expected)
    assert {r.device_kind for r in rows} == {"cpu", "cuda"}
    assert {r.pipeline_version for r in rows} == {"1.9", "2.0"}
    assert {r.profile for r in rows} == {None, "fast", "accurate"}
    for key, want in expected.items():
        row = got[key]
        assert row.invocations == want["invocations"]
        assert row.items == want["items"]
        for name in ("items_per_s", "p50_hit_duration_ms", "p95_hit_duration_ms",
                     "p50_miss_duration_ms", "p95_miss_duration_ms"):
            if want[name] is None:
                assert getattr(row, name) is None, (key, name)
            else:
                assert getattr(row, name) == pytest.approx(want[name], rel=1e-9), (key, name)
        assert list(row.metrics) == list(want["metrics"])
        for name, stats in want["metrics"].items():
            assert row.metrics[name]["count"] == stats["count"]
            for stat in ("mean", "p50", "p95"):
                assert row.metrics[name][stat] == pytest.approx(stats[stat], rel=1e-9)


def test_stored_rows_hold_the_new_columns(sqlite_url: str) -> None:
    runs, components = _known_records()
    upgrade(sqlite_url)
    with WarehouseStore(sqlite_url) as store:
        store.write(runs, components)
    result = refresh_rollup(sqlite_url, "day")
    stored = _stored(sqlite_url, "day")
    assert len(stored) == result.written == len(result.rows) > 0
    by_key = {(r.bucket_start, r.component, r.model_signature, r.pipeline_version,
               r.profile, r.device_kind): r for r in result.rows}
    for row in stored:
        computed = by_key[(row["bucket_start"], row["component"], row["model_signature"],
                           row["pipeline_version"], row["profile"], row["device_kind"])]
        assert row["metrics"] == computed.metrics
        assert row["items_per_s"] == computed.items_per_s


# ---------------------------------------------------------------- ingestion and state

def _stored(db_url: str, bucket: str) -> list[dict]:
    table = ComponentRollup.__table__
    engine = create_warehouse_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(table).where(table.c.bucket_width == bucket))
            return [{name: row._mapping[name] for name in COMPARED} for row in rows]
    finally:
        engine.dispose()


def _key(row: dict) -> tuple:
    # every compared field: rows alike in their first fields (two runs' invocations that
    # differ by profile or items) must still sort the same way on both sides
    return tuple("" if row[k] is None else str(row[k]) for k in COMPARED)


def test_every_stored_component_row_gets_the_database_clock(db_url: str) -> None:
    runs, components = _known_records()
    upgrade(db_url)
    before = datetime.now(timezone.utc) - timedelta(seconds=5)
    with WarehouseStore(db_url) as store:
        store.write(runs[:1], [c for c in components if c.run_id == runs[0].run_id])
        # A batch that also carries a row already stored takes the staging path on COPY.
        store.write(runs[:2], [c for c in components if c.run_id in
                               (runs[0].run_id, runs[1].run_id)])
    engine = create_warehouse_engine(db_url)
    try:
        with engine.connect() as conn:
            stamps = conn.execute(sa.select(ComponentRun.ingested_at)).scalars().all()
    finally:
        engine.dispose()
    assert len(stamps) == 2 * len(COMPONENTS)
    assert all(s is not None and before <= s <= datetime.now(timezone.utc) + timedelta(
        seconds=5) for s in stamps)


def test_first_rollup_is_full_then_incremental_then_full_after_a_deletion(
        sqlite_url: str) -> None:
    runs, components = _known_records()
    upgrade(sqlite_url)
    with WarehouseStore(sqlite_url) as store:
        store.write(runs[:30], [c for c in components if c.run_id in
                                {r.run_id for r in runs[:30]}])
        first = refresh_rollup(sqlite_url, "hour", grace_s=0)
        assert (first.mode, first.reason) == ("full", "no component_rollups watermark yet")
        again = refresh_rollup(sqlite_url, "hour", grace_s=0)
        assert (again.mode, again.buckets, again.rows) == ("incremental", 0, [])
        store.write(runs[30:], [c for c in components if c.run_id in
                                {r.run_id for r in runs[30:]}])
    later = refresh_rollup(sqlite_url, "hour", grace_s=0)
    assert later.mode == "incremental" and later.buckets == 10  # one hour per new run
    assert {r.bucket_start for r in later.rows} == {
        bucket_floor(r.started_at, "hour") for r in runs[30:]}
    delete_runs(sqlite_url, [runs[0].run_id])
    engine = create_warehouse_engine(sqlite_url)
    with engine.connect() as conn:  # only the deletion mark is left
        assert [r.bucket_width for r in conn.execute(
            sa.select(RollupWatermark.__table__))] == [DELETION_MARK]
    engine.dispose()
    after = refresh_rollup(sqlite_url, "hour", grace_s=0)
    assert after.mode == "full"
    assert bucket_floor(runs[0].started_at, "hour") not in {
        r["bucket_start"] for r in _stored(sqlite_url, "hour")}


def test_since_replaces_only_its_window_and_keeps_the_watermark(sqlite_url: str) -> None:
    runs, components = _known_records()
    upgrade(sqlite_url)
    with WarehouseStore(sqlite_url) as store:
        store.write(runs, components)
    refresh_rollup(sqlite_url, "day")
    before = _stored(sqlite_url, "day")
    cut = T0 + timedelta(days=2)
    result = refresh_rollup(sqlite_url, "day", since=cut)
    assert result.mode == "since" and result.ingested_through is None
    assert {r.bucket_start for r in result.rows} == {
        r["bucket_start"] for r in before if r["bucket_start"] >= bucket_floor(cut, "day")}
    assert sorted(map(_key, _stored(sqlite_url, "day"))) == sorted(map(_key, before))
    future = refresh_rollup(sqlite_url, "day", since=T0 + timedelta(days=60))
    assert future.written == 0 and len(_stored(sqlite_url, "day")) == len(before)


def test_arguments_are_checked(sqlite_url: str) -> None:
    with pytest.raises(ConfigError, match="grace_s"):
        refresh_rollup(sqlite_url, "hour", grace_s=-1)
    with pytest.raises(ConfigError, match="bucket"):
        refresh_rollup(sqlite_url, "week")
    with pytest.raises(ConfigError, match="bucket 'all' since"):
        refresh_rollup(sqlite_url, "all", since=T0)
    start = T0.replace(minute=0)
    assert merged_ranges([start + timedelta(hours=2), start, start + timedelta(hours=1),
                          start + timedelta(hours=5)], "hour") == [
        (start, start + timedelta(hours=3)),
        (start + timedelta(hours=5), start + timedelta(hours=6))]


# ------------------------------------------------ incremental == full, any insert order

_BATCH = st.lists(st.tuples(
    st.integers(0, 3 * 24 * 60 - 1),                  # minutes after T0: started_at
    st.sampled_from(COMPONENTS),
    st.sampled_from(["1.0", "1.1"]),                  # pipeline_version
    st.sampled_from(["hit", "miss", None]),
    st.floats(0.5, 5000.0),                            # duration_ms
    st.one_of(st.none(), st.integers(0, 100)),         # items
    st.one_of(st.none(), st.floats(-10.0, 10.0)),      # a user metric
    st.booleans(),                                     # join an earlier run (late part)
), min_size=1, max_size=8)


def _write_batch(db_url: str, batch: list, known_runs: list[RunRecord]) -> None:
    runs, components = [], []
    for minute, component, version, cache, duration_ms, items, metric, join in batch:
        started = T0 + timedelta(minutes=minute)
        if join and known_runs:
            run = known_runs[minute % len(known_runs)]
        else:
            run = _run(str(uuid.uuid4()), started, version,
                       "fast" if minute % 2 else None)
            runs.append(run)
            known_runs.append(run)
        components.append(_component(
            run.run_id, component, started, duration_ms,
            models=GPU if minute % 3 == 0 else CPU, cache_status=cache, items=items,
            metrics={} if metric is None else {"score": metric},
            status="error" if duration_ms > 4000 else "ok"))
    with WarehouseStore(db_url) as store:
        store.write(runs, components)


def _check_incremental_equals_full(db_url: str, bucket: str, batches: list[list],
                                   rollup_after: list[bool]) -> None:
    known: list[RunRecord] = []
    for batch, roll in zip(batches, rollup_after):
        _write_batch(db_url, batch, known)
        if roll:
            refresh_rollup(db_url, bucket, grace_s=0)
    last = refresh_rollup(db_url, bucket, grace_s=0)
    assert last.mode in ("incremental", "full")
    incremental = sorted(_stored(db_url, bucket), key=_key)
    full = refresh_rollup(db_url, bucket, full=True)
    assert full.mode == "full"
    assert incremental == sorted(_stored(db_url, bucket), key=_key)


_PROPERTY = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                       HealthCheck.too_slow])
_CASES = dict(bucket=st.sampled_from(["minute", "hour", "day"]),
              batches=st.lists(_BATCH, min_size=1, max_size=5),
              rollup_after=st.lists(st.booleans(), min_size=5, max_size=5))


@settings(max_examples=40, **_PROPERTY)
@given(**_CASES)
def test_incremental_rollups_equal_a_full_recompute_on_sqlite(bucket, batches,
                                                              rollup_after) -> None:
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite:///{Path(directory) / 'warehouse.db'}"
        upgrade(url)
        _check_incremental_equals_full(url, bucket, batches, rollup_after)


@pytest.mark.postgres
@settings(max_examples=20, **_PROPERTY)
@given(**_CASES)
def test_incremental_rollups_equal_a_full_recompute_on_postgresql(pg_url, bucket, batches,
                                                                  rollup_after) -> None:
    upgrade(pg_url)
    engine = create_warehouse_engine(pg_url)
    with engine.begin() as conn:  # each example starts from an empty warehouse
        conn.execute(sa.text("TRUNCATE runs, component_runs, events, run_labels, "
                             "component_rollups, rollup_watermarks, model_signatures, "
                             "artifact_index"))
    engine.dispose()
    _check_incremental_equals_full(pg_url, bucket, batches, rollup_after)


def test_a_late_arrival_in_an_old_bucket_is_rolled_up(db_url: str) -> None:
    """A record replayed from a spool days later: its old bucket is recomputed."""
    upgrade(db_url)
    old = _run(str(uuid.uuid4()), T0, "1.0", None)
    new = _run(str(uuid.uuid4()), T0 + timedelta(days=2), "1.0", None)
    with WarehouseStore(db_url) as store:
        store.write([old, new], [
            _component(old.run_id, "asr", T0, 10.0, models=CPU, cache_status=None,
                       items=1, metrics={}),
            _component(new.run_id, "asr", new.started_at, 10.0, models=CPU,
                       cache_status=None, items=1, metrics={})])
        refresh_rollup(db_url, "day", grace_s=0)
        store.write([], [_component(old.run_id, "asr", T0 + timedelta(minutes=1), 30.0,
                                    models=CPU, cache_status=None, items=1, metrics={})])
    late = refresh_rollup(db_url, "day", grace_s=0)
    assert late.mode == "incremental" and late.buckets == 1
    assert [(r.bucket_start, r.invocations) for r in late.rows] == [
        (bucket_floor(T0, "day"), 2)]
    assert sorted((r["bucket_start"], r["invocations"]) for r in _stored(db_url, "day")) == [
        (bucket_floor(T0, "day"), 2), (bucket_floor(new.started_at, "day"), 1)]
    assert dataclasses.asdict(late.rows[0])["p50_duration_ms"] == 20.0


def test_a_deletion_while_a_rollup_computes_does_not_move_its_watermark(
        sqlite_url: str, monkeypatch) -> None:
    """gc or forget committing between a rollup's read and its write: the rollup's rows
    may hold the deleted runs, so the next rollup must be full."""
    runs, components = _known_records()
    upgrade(sqlite_url)
    with WarehouseStore(sqlite_url) as store:
        store.write(runs, components)
    refresh_rollup(sqlite_url, "day")
    compute = incremental.WarehouseReader.rollup

    def rollup_then_delete(self, *args, **kwargs):
        rows = compute(self, *args, **kwargs)
        delete_runs(sqlite_url, [runs[0].run_id])
        return rows

    monkeypatch.setattr(incremental.WarehouseReader, "rollup", rollup_then_delete)
    racing = refresh_rollup(sqlite_url, "day", full=True)
    assert racing.written and racing.ingested_through is None
    monkeypatch.setattr(incremental.WarehouseReader, "rollup", compute)
    after = refresh_rollup(sqlite_url, "day")
    assert after.mode == "full"
    assert sum(r["invocations"] for r in _stored(sqlite_url, "day")) == (
        len(components) - len(COMPONENTS))


def test_parquet_export_of_an_incremental_rollup_keeps_whole_days(sqlite_url: str,
                                                                   tmp_path) -> None:
    from mlobs.cli.main import main

    runs, components = _known_records()
    upgrade(sqlite_url)
    with WarehouseStore(sqlite_url) as store:
        store.write(runs, components)
    target = tmp_path / "rollups"
    argv = ["rollup", "--db-url", sqlite_url, "--bucket", "hour", "--grace-s", "0",
            "--parquet", str(target)]
    assert main(argv) == 0
    late = _component(runs[1].run_id, "asr", runs[1].started_at, 7.0, models=CPU,
                      cache_status=None, items=None, metrics={})
    with WarehouseStore(sqlite_url) as store:
        store.write([], [late])
    assert main(argv) == 0
    import duckdb

    exported = duckdb.sql(
        f"SELECT count(*), sum(invocations) FROM read_parquet('{target}/**/*.parquet')"
    ).fetchone()
    stored = _stored(sqlite_url, "hour")
    assert exported == (len(stored), sum(r["invocations"] for r in stored))
    assert exported[1] == len(components) + 1
