"""Bulk ingest under load: many processes into one warehouse, COPY on PostgreSQL.

Every test runs on SQLite and on the local PostgreSQL (``db_url``); on PostgreSQL
``WarehouseStore.write`` puts component_runs and events through COPY into a staging
table followed by insert-or-ignore (mlobs.warehouse.copy_writer).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select, text

from mlobs.core.errors import InvalidRecordError, WarehouseError
from mlobs.core.records import ComponentRecord, EventRecord, ModelRef, RunRecord
from mlobs.core.signature import model_signature
from mlobs.warehouse.store import COMPONENTS, EVENTS, RUNS, SIGNATURES, WarehouseStore

PROCESSES = 8
RUNS_PER_PROCESS = 100
COMPONENTS_PER_RUN = 100  # 100 × 100 = 10,000 component records per process

WHISPER = ModelRef("openai/whisper-small", "973afd24", "sha256:" + "a1" * 32,
                   engine="torch", device="cuda:0")
E5 = ModelRef("intfloat/e5-base-v2", "1c644c92", "sha256:" + "b2" * 32, engine="onnx",
              device="cuda:1")


def _count(store: WarehouseStore, table) -> int:
    with store.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def _run_batch(worker: int, index: int, components: int = COMPONENTS_PER_RUN,
               ) -> tuple[RunRecord, list[ComponentRecord]]:
    """One finished run with ``components`` component records (some with events)."""
    run_id = str(uuid.uuid4())
    start = datetime(2026, 5, 9, 12, 0, 0, 123456, tzinfo=timezone.utc) + timedelta(
        minutes=index, seconds=worker)
    records = []
    for number in range(components):
        began = start + timedelta(milliseconds=number * 10)
        models = [WHISPER] if number % 3 == 0 else ([E5, WHISPER] if number % 3 == 1 else [])
        component = ComponentRecord(
            component_run_id=str(uuid.uuid4()), run_id=run_id, component=f"c{number}",
            attempt=1, required=number % 2 == 0, status="ok", started_at=began,
            finished_at=began + timedelta(milliseconds=7.25), duration_ms=7.25,
            models_used=models, model_signature=model_signature(models),
            warnings=[f"w{number}"] if number % 10 == 0 else [], batch_size=8, items=number,
            metrics={"n": float(number), "ratio": 0.5}, peak_rss_bytes=3_000_000_000)
        if number % 25 == 0:
            component.events = [EventRecord(
                event_id=str(uuid.uuid4()), run_id=run_id,
                component_run_id=component.component_run_id, kind="retry",
                occurred_at=began + timedelta(milliseconds=1),
                attributes={"attempt": 2, "note": "tab\there, newline\nthere, \\ back"})]
        records.append(component)
    run = RunRecord(run_id=run_id, platform_id="youtube", video_id=f"w{worker}-v{index}",
                    status="ok", started_at=start,
                    finished_at=records[-1].finished_at, duration_ms=1000.0,
                    config={"sample_fps": 0.5}, environment={"host": f"worker-{worker}"})
    return run, records


def _worker(store: WarehouseStore, worker: int) -> None:
    """Child body: 100 writes of one run and its 100 components each."""
    for index in range(RUNS_PER_PROCESS):
        run, components = _run_batch(worker, index)
        store.write([run], components)


def _child(store: WarehouseStore, worker: int) -> None:
    import os
    try:
        _worker(store, worker)
    except BaseException:  # noqa: BLE001 - report and fail the child
        import traceback
        traceback.print_exc()
        os._exit(1)
    os._exit(0)


def test_eight_processes_of_ten_thousand_records_give_exactly_eighty_thousand_rows(db_url):
    """The store (and its engine) is created in the parent and used by 8 forked children."""
    store = WarehouseStore(db_url, manage_schema=True)
    try:
        # The parent holds a pooled connection across the fork: the children must not
        # reuse it, and it must still work afterwards.
        assert _count(store, COMPONENTS) == 0
        context = multiprocessing.get_context("fork")
        children = [context.Process(target=_child, args=(store, worker))
                    for worker in range(PROCESSES)]
        for child in children:
            child.start()
        for child in children:
            child.join(timeout=300)
        assert [child.exitcode for child in children] == [0] * PROCESSES
        assert _count(store, COMPONENTS) == PROCESSES * RUNS_PER_PROCESS * COMPONENTS_PER_RUN
        assert _count(store, RUNS) == PROCESSES * RUNS_PER_PROCESS
        assert _count(store, EVENTS) == PROCESSES * RUNS_PER_PROCESS * (COMPONENTS_PER_RUN // 25)
        assert _count(store, SIGNATURES) == 2
    finally:
        store.close()


def _spawned(db_url: str, worker: int) -> None:
    with WarehouseStore(db_url) as store:
        for index in range(5):
            run, components = _run_batch(worker, index, components=20)
            store.write([run], components)


def test_spawned_processes_open_their_own_store(db_url):
    with WarehouseStore(db_url, manage_schema=True) as store:
        context = multiprocessing.get_context("spawn")
        children = [context.Process(target=_spawned, args=(db_url, worker))
                    for worker in range(3)]
        for child in children:
            child.start()
        for child in children:
            child.join(timeout=120)
        assert [child.exitcode for child in children] == [0] * 3
        assert _count(store, COMPONENTS) == 3 * 5 * 20


def test_a_batch_written_twice_adds_no_rows(db_url):
    with WarehouseStore(db_url, manage_schema=True) as store:
        batches = [_run_batch(0, index, components=50) for index in range(3)]
        runs = [run for run, _ in batches]
        components = [c for _, batch in batches for c in batch]
        store.write(runs, components)
        counts = [_count(store, table) for table in (RUNS, COMPONENTS, EVENTS, SIGNATURES)]
        assert counts == [3, 150, 6, 2]
        store.write(runs, components)  # a retry of the whole batch
        store.write(runs[1:2], batches[1][1][10:30])  # a partial replay
        # A batch mixing stored and new records: only the new ones are added.
        new_run, new_components = _run_batch(1, 9, components=5)
        store.write([new_run], new_components + components[:40])
        assert [_count(store, table) for table in (RUNS, COMPONENTS, EVENTS, SIGNATURES)] \
            == [4, 155, 7, 2]


def test_first_write_wins_through_copy(db_url):
    with WarehouseStore(db_url, manage_schema=True) as store:
        run, components = _run_batch(0, 0, components=3)
        store.write([run], components)
        changed = dataclasses.replace(components[0], metrics={"changed": 1.0})
        store.write([], [changed])
        got = store.get_run(run.run_id)
        assert got is not None
        assert got[1][0].metrics == components[0].metrics


def test_json_and_timestamps_round_trip_through_copy(db_url):
    with WarehouseStore(db_url, manage_schema=True) as store:
        run, components = _run_batch(0, 0, components=30)
        # Awkward JSON and non-UTC offsets: COPY's text format must carry them unchanged.
        plus_two = timezone(timedelta(hours=2))
        components[1].metrics = {"unicode ✓": 1.5, "quote\"s": -0.0, "big": 1e300}
        components[1].warnings = ["line\nbreak", "tab\t", "back\\slash", "null \\N", "",
                                  "émoji 🎞"]
        components[2].started_at = components[2].started_at.astimezone(plus_two)
        components[2].finished_at = components[2].finished_at.astimezone(plus_two)
        components[3].error_message = "multi\nline\r\nmessage with \\N and \t"
        components[3].status = "error"
        components[3].error_code = "oom"
        components[0].events[0].attributes = {"nested": {"list": [1, None, "x"]},
                                              "empty": {}, "none": None}
        components[0].events.append(EventRecord(
            event_id=str(uuid.uuid4()), run_id=run.run_id,
            component_run_id=components[0].component_run_id, kind="oom",
            occurred_at=components[0].events[0].occurred_at.astimezone(plus_two),
            attributes={}))
        # Same signature, another device order: stored as models_used_override.
        components[4].models_used = [WHISPER, E5]
        components[4].model_signature = model_signature(components[4].models_used)
        store.write([run], components)
        got = store.get_run(run.run_id)
        assert got is not None
        got_run, got_components = got
        assert got_run == run
        assert got_components == components
        for component in got_components:
            assert component.started_at.utcoffset() == timedelta(0)
            for event in component.events:
                assert event.occurred_at.utcoffset() == timedelta(0)


def test_invalid_json_is_refused_and_nothing_is_written(db_url):
    with WarehouseStore(db_url, manage_schema=True) as store:
        run, components = _run_batch(0, 0, components=5)
        components[3].metrics = {"bad": float("nan")}
        with pytest.raises(InvalidRecordError, match=components[3].component_run_id):
            store.write([run], components)
        assert _count(store, RUNS) == 0
        assert _count(store, COMPONENTS) == 0


def test_invalid_records_are_refused_before_copy(db_url):
    with WarehouseStore(db_url, manage_schema=True) as store:
        run, components = _run_batch(0, 0, components=5)
        components[2].status = "bogus"
        with pytest.raises(InvalidRecordError, match="bogus"):
            store.write([run], components)
        assert _count(store, COMPONENTS) == 0


def test_component_of_an_unknown_run_through_copy_names_the_record(db_url):
    with WarehouseStore(db_url, manage_schema=True) as store:
        run, components = _run_batch(0, 0, components=3)
        store.write([run], components)
        orphan = dataclasses.replace(components[1], component_run_id=str(uuid.uuid4()),
                                     run_id=str(uuid.uuid4()), events=[])
        with pytest.raises(WarehouseError, match="neither in this batch nor in the warehouse"):
            store.write([], [orphan])
        # The store (and its pooled connection) still works after the failed COPY.
        assert _count(store, COMPONENTS) == 3


@pytest.mark.postgres
def test_postgresql_writes_use_copy_and_leave_no_staging_table(pg_url):
    with WarehouseStore(pg_url, manage_schema=True) as store:
        assert store._use_copy is True
        run, components = _run_batch(0, 0, components=10)
        statements: list[str] = []
        from sqlalchemy import event

        @event.listens_for(store.engine, "before_cursor_execute")
        def _seen(_conn, _cursor, statement, *_args):
            statements.append(statement)

        store.write([run], components)
        # component_runs/events are not bound through SQLAlchemy's executemany.
        assert not any("INSERT INTO component_runs" in s for s in statements)
        with store.engine.connect() as conn:
            left = conn.execute(text(
                "SELECT count(*) FROM pg_class WHERE relname LIKE 'mlobs_stage_%' "
                "AND relpersistence = 't'")).scalar_one()
        assert left == 0
        assert _count(store, COMPONENTS) == 10
