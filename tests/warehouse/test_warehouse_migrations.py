"""Alembic migrations: up/down/up, schema equal to the models, rows kept across
revisions (0001 → 0002 → … → 0010 and back), and the schema check."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, inspect, select, text
from sqlalchemy.exc import IntegrityError

from mlobs.core.errors import SchemaOutOfDateError, WarehouseError
from mlobs.core.records import ComponentRecord, RunRecord
from mlobs.warehouse import migrate
from mlobs.warehouse.engine import create_warehouse_engine
from mlobs.warehouse.models import TABLE_NAMES, Base, ComponentRollup
from mlobs.warehouse.rows import ARTIFACT_INDEX, COMPONENTS, EVENTS, RUNS, SIGNATURES
from mlobs.warehouse.store import WarehouseStore

HEAD = "0011"
ROLLUPS = ComponentRollup.__table__
#: Columns revision 0002 adds, per table.
NEW_IN_0002 = {
    "component_runs": {"batch_size_requested", "prediction_status"},
    "component_rollups": {"oom_rate", "mean_ooms_per_run", "retries",
                          "p95_peak_gpu_allocated_bytes", "p95_peak_gpu_reserved_bytes",
                          "degraded_rate"},
}
#: Columns revision 0003 adds, per table, and the table it creates.
NEW_IN_0003 = {
    "runs": {"resumed_from_run_id"},
    "component_runs": {"cache_version"},
    "component_rollups": {"cache_miss_reasons"},
}
TABLE_0003 = "artifact_index"
NEW_IN_0005 = {"runs": {"heartbeat_at"}}
TABLE_0006 = "drift_checks"
TABLE_0007 = "rollup_watermarks"
TABLE_0008 = "run_labels"
TABLE_0009 = "gate_results"
#: the tables of the revisions after 0007.
AFTER_0007 = {TABLE_0008, TABLE_0009}
#: the indexes of revision 0010 (the admin views' lists).
VIEW_INDEXES = {"ix_runs_status_started_at", "ix_component_runs_component_started_at"}
#: Columns revision 0011 adds (what a component added to memory; tracebacks).
NEW_IN_0011 = {
    "component_runs": {"error_traceback", "rss_at_start_bytes", "peak_rss_increase_bytes",
                       "gpu_allocated_at_start_bytes", "peak_gpu_allocated_increase_bytes"},
    "component_rollups": {"p95_peak_rss_increase_bytes",
                          "p95_peak_gpu_allocated_increase_bytes"},
}
NEW_IN_0007 = {
    "component_runs": {"ingested_at"},
    "component_rollups": {"pipeline_version", "profile", "device_kind", "items",
                          "items_per_s", "p50_hit_duration_ms", "p95_hit_duration_ms",
                          "p50_miss_duration_ms", "p95_miss_duration_ms", "metrics"},
}


def _inspected(db_url: str, read):
    """``read(inspector)`` on a fresh engine, disposed afterwards."""
    engine = create_warehouse_engine(db_url)
    try:
        with engine.connect() as conn:
            return read(inspect(conn))
    finally:
        engine.dispose()


def _tables(db_url: str) -> set[str]:
    return set(_inspected(db_url, lambda i: i.get_table_names())) - {migrate.VERSION_TABLE}


def _columns(db_url: str, table: str) -> set[str]:
    return {c["name"] for c in _inspected(db_url, lambda i: i.get_columns(table))}


def _check_names(db_url: str, table: str) -> set[str]:
    return {c["name"] for c in _inspected(db_url, lambda i: i.get_check_constraints(table))}


def _index_names(db_url: str, table: str) -> set[str]:
    return {i["name"] for i in _inspected(db_url, lambda i: i.get_indexes(table))}


def _unique_names(db_url: str) -> set[str]:
    return {c["name"] for c in
            _inspected(db_url, lambda i: i.get_unique_constraints("component_runs"))}


def _schema_diff(db_url: str) -> list:
    engine = create_warehouse_engine(db_url)
    try:
        with engine.connect() as conn:
            return compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()


def test_head_is_0011_and_scripts_are_found():
    assert migrate.head_revision() == HEAD
    assert (migrate.migrations_dir() / "env.py").is_file()


def test_migrations_do_not_import_the_live_models():
    directory = migrate.migrations_dir()
    for path in [directory / "env.py", *sorted((directory / "versions").glob("*.py"))]:
        source = path.read_text()
        assert "warehouse.models" not in source, path
        assert "target_metadata=None" in source or path.name != "env.py"


def test_upgrade_downgrade_upgrade(db_url):
    assert migrate.current_revision(db_url) is None
    migrate.upgrade(db_url)
    assert migrate.current_revision(db_url) == migrate.head_revision()
    assert _tables(db_url) == set(TABLE_NAMES)

    migrate.downgrade(db_url, "base")
    assert migrate.current_revision(db_url) is None
    assert _tables(db_url) == set()

    migrate.upgrade(db_url, "head")
    assert migrate.current_revision(db_url) == HEAD
    assert _tables(db_url) == set(TABLE_NAMES)

    # One revision at a time, both ways.
    migrate.downgrade(db_url, "0010")
    for table, added in NEW_IN_0011.items():
        assert not _columns(db_url, table) & added, table
    assert VIEW_INDEXES <= (_index_names(db_url, "runs")
                            | _index_names(db_url, "component_runs"))
    migrate.downgrade(db_url, "0009")
    assert {"ix_runs_status"} <= _index_names(db_url, "runs")
    assert not VIEW_INDEXES & (_index_names(db_url, "runs")
                               | _index_names(db_url, "component_runs"))
    migrate.downgrade(db_url, "0008")
    assert _tables(db_url) == set(TABLE_NAMES) - {TABLE_0009}
    migrate.downgrade(db_url, "0007")
    assert _tables(db_url) == set(TABLE_NAMES) - AFTER_0007
    migrate.downgrade(db_url, "0006")
    assert _tables(db_url) == set(TABLE_NAMES) - {TABLE_0007} - AFTER_0007
    for table, added in NEW_IN_0007.items():
        assert not _columns(db_url, table) & added, table
    migrate.downgrade(db_url, "0005")
    assert _tables(db_url) == set(TABLE_NAMES) - {TABLE_0006, TABLE_0007} - AFTER_0007
    assert NEW_IN_0005["runs"] <= _columns(db_url, "runs")
    migrate.downgrade(db_url, "0004")
    assert not NEW_IN_0005["runs"] & _columns(db_url, "runs")
    assert "uq_component_runs_run_id_component_attempt" not in _unique_names(db_url)
    migrate.downgrade(db_url, "0003")
    assert "uq_component_runs_run_id_component_attempt" in _unique_names(db_url)
    migrate.downgrade(db_url, "0002")
    assert migrate.current_revision(db_url) == "0002"
    assert _tables(db_url) == (set(TABLE_NAMES) - {TABLE_0003, TABLE_0006, TABLE_0007}
                               - AFTER_0007)
    for table, added in NEW_IN_0003.items():
        assert not _columns(db_url, table) & added, table
    migrate.downgrade(db_url, "0001")
    assert migrate.current_revision(db_url) == "0001"
    for table, added in NEW_IN_0002.items():
        assert not _columns(db_url, table) & added, table
    assert "ck_component_runs_prediction_status" not in _check_names(db_url, "component_runs")
    migrate.upgrade(db_url, "0002")
    assert migrate.current_revision(db_url) == "0002"
    for table, added in NEW_IN_0002.items():
        assert added <= _columns(db_url, table), table
    migrate.upgrade(db_url, "0003")
    assert migrate.current_revision(db_url) == "0003"
    assert _tables(db_url) == set(TABLE_NAMES) - {TABLE_0006, TABLE_0007} - AFTER_0007
    for table, added in NEW_IN_0003.items():
        assert added <= _columns(db_url, table), table
    migrate.upgrade(db_url, "0004")
    assert migrate.current_revision(db_url) == "0004"
    migrate.upgrade(db_url, "0005")
    assert migrate.current_revision(db_url) == "0005"
    migrate.upgrade(db_url, "0006")
    assert migrate.current_revision(db_url) == "0006"
    migrate.upgrade(db_url, "0007")
    assert migrate.current_revision(db_url) == "0007"
    assert _tables(db_url) == set(TABLE_NAMES) - AFTER_0007
    for table, added in NEW_IN_0007.items():
        assert added <= _columns(db_url, table), table
    migrate.upgrade(db_url, "0008")
    assert _tables(db_url) == set(TABLE_NAMES) - {TABLE_0009}
    migrate.upgrade(db_url, "0009")
    migrate.upgrade(db_url, "0010")
    migrate.upgrade(db_url, "0011")
    assert migrate.current_revision(db_url) == HEAD
    assert _tables(db_url) == set(TABLE_NAMES)
    for table, added in NEW_IN_0011.items():
        assert added <= _columns(db_url, table), table
    assert VIEW_INDEXES <= (_index_names(db_url, "runs")
                            | _index_names(db_url, "component_runs"))
    assert "ix_runs_status" not in _index_names(db_url, "runs")
    assert _schema_diff(db_url) == []


def test_migrated_schema_matches_the_models(db_url):
    migrate.upgrade(db_url)
    assert _schema_diff(db_url) == []


def test_opening_an_empty_database_says_what_to_run(db_url):
    with pytest.raises(SchemaOutOfDateError) as caught:
        WarehouseStore(db_url)
    message = str(caught.value)
    assert "mlobs db upgrade" in message
    assert "revision None (empty)" in message
    assert f"needs {HEAD}" in message


def test_opening_a_downgraded_database_is_refused(sqlite_url):
    migrate.upgrade(sqlite_url)
    migrate.downgrade(sqlite_url, "base")
    with pytest.raises(SchemaOutOfDateError, match="mlobs db upgrade"):
        WarehouseStore(sqlite_url)


def test_unknown_newer_revision_is_refused_with_its_own_advice(sqlite_url):
    migrate.upgrade(sqlite_url)
    engine = create_warehouse_engine(sqlite_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
        with pytest.raises(SchemaOutOfDateError, match="does not know"):
            migrate.check_schema(engine)
    finally:
        engine.dispose()


def test_manage_schema_creates_the_schema_of_an_empty_database(db_url):
    store = WarehouseStore(db_url, manage_schema=True)
    store.close()
    assert migrate.current_revision(db_url) == HEAD


def test_manage_schema_leaves_a_foreign_database_alone(sqlite_url):
    engine = create_warehouse_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE something_else (id INTEGER)"))
    engine.dispose()
    with pytest.raises(SchemaOutOfDateError, match="tables but no mlobs revision"):
        WarehouseStore(sqlite_url, manage_schema=True)
    assert _tables(sqlite_url) == {"something_else"}


def test_manage_schema_upgrades_an_older_revision_and_keeps_its_rows(sqlite_url):
    migrate.upgrade(sqlite_url, "0001")
    engine = create_warehouse_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO runs (run_id, platform_id, video_id, status, "
                          "started_at, config, warnings, environment, resolved_models) "
                          "VALUES ('r-old', 'youtube', 'abc', 'ok', '2026-01-01 00:00:00', "
                          "'{}', '[]', '{}', '{}')"))
    engine.dispose()
    with pytest.raises(SchemaOutOfDateError, match="mlobs db upgrade"):
        WarehouseStore(sqlite_url)  # not managed: refused with the command to run
    with WarehouseStore(sqlite_url, manage_schema=True) as store:
        assert store.get_run("r-old") is not None
    assert migrate.current_revision(sqlite_url) == HEAD


@pytest.mark.postgres
def test_password_is_hidden_in_schema_errors(pg_url):
    with_password = pg_url.replace("postgres@", "postgres:s3cret@", 1)
    with pytest.raises(SchemaOutOfDateError) as caught:
        WarehouseStore(with_password)
    assert "s3cret" not in str(caught.value)
    assert "***" in str(caught.value)


def test_unknown_revision_is_a_warehouse_error(sqlite_url):
    with pytest.raises(WarehouseError, match="0042"):
        migrate.upgrade(sqlite_url, "0042")


def test_alembic_config_from_url_runs_env_with_its_own_engine(sqlite_url):
    from alembic import command

    command.upgrade(migrate.alembic_config(sqlite_url), "head")
    assert migrate.current_revision(sqlite_url) == HEAD


# -- revision 0002 on a warehouse holding rows ---------------------------------------------

#: Columns at revisions 0002 and 0001.
RUN_COLUMNS_0002 = RUN_COLUMNS_0001 = (set(RUNS.c.keys()) - NEW_IN_0003["runs"]
                                      - NEW_IN_0005["runs"])
COMPONENT_COLUMNS_0002 = (set(COMPONENTS.c.keys()) - NEW_IN_0003["component_runs"]
                          - NEW_IN_0007["component_runs"] - NEW_IN_0011["component_runs"])
COMPONENT_COLUMNS_0001 = COMPONENT_COLUMNS_0002 - NEW_IN_0002["component_runs"]
ROLLUP_COLUMNS_0002 = (set(ROLLUPS.c.keys()) - NEW_IN_0003["component_rollups"]
                       - NEW_IN_0007["component_rollups"] - NEW_IN_0011["component_rollups"]
                       - {"id"})
ROLLUP_COLUMNS_0001 = ROLLUP_COLUMNS_0002 - NEW_IN_0002["component_rollups"]
ROLLUP_0001 = {
    "computed_at": datetime(2026, 5, 10, 3, 0, tzinfo=timezone.utc), "bucket_width": "all",
    "bucket_start": None, "component": "asr", "model_signature": "a" * 64,
    "invocations": 4, "runs": 3, "p50_duration_ms": 10.5, "p95_duration_ms": 20.25,
    "p99_duration_ms": 21.0, "error_rate": 0.25, "empty_rate": 0.0, "cache_hit_rate": None,
    "p95_peak_rss_bytes": 3.5e9,
}


def _write_as_0001(db_url: str, run: RunRecord, components: list[ComponentRecord]) -> None:
    """Write records with the columns revision 0001 has, as an mlobs of that revision did
    (the statements name only the columns given, so they run against the 0001 schema)."""
    _write_old(db_url, [(run, components)], RUN_COLUMNS_0001, COMPONENT_COLUMNS_0001,
               ROLLUP_0001)


def _write_old(db_url: str, written: list[tuple[RunRecord, list[ComponentRecord]]],
               run_columns: set[str], component_columns: set[str],
               rollup: dict | None) -> None:
    engine = create_warehouse_engine(db_url)
    try:
        signatures = {c.model_signature: ([m.to_dict() for m in c.models_used],
                                          written[0][0].started_at)
                      for _, components in written for c in components if c.model_signature}
        with engine.begin() as conn:
            conn.execute(SIGNATURES.insert(), [
                {"model_signature": sig, "models": models, "first_seen_at": seen}
                for sig, (models, seen) in signatures.items()])
            for run, components in written:
                conn.execute(RUNS.insert(),
                             [{k: v for k, v in vars(run).items() if k in run_columns}])
                conn.execute(COMPONENTS.insert(), [
                    {**{k: v for k, v in vars(c).items() if k in component_columns},
                     "models_used_override": None} for c in components])
                events = [{**dict(vars(e)), "seq": seq} for c in components
                          for seq, e in enumerate(c.events)]
                if events:
                    conn.execute(EVENTS.insert(), events)
            if rollup is not None:
                conn.execute(ROLLUPS.insert(), [rollup])
    finally:
        engine.dispose()


def _counts(db_url: str) -> dict[str, int]:
    engine = create_warehouse_engine(db_url)
    try:
        with engine.connect() as conn:
            return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                    for t in (RUNS, COMPONENTS, SIGNATURES, EVENTS)}
    finally:
        engine.dispose()


def _refused(db_url: str, statement, rows) -> bool:
    engine = create_warehouse_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(statement, rows)
    except IntegrityError:
        return True
    finally:
        engine.dispose()
    return False


def _assert_constraints_hold(db_url: str, run: RunRecord,
                             components: list[ComponentRecord]) -> None:
    """The constraints SQLite's batch mode must carry over when it copies component_runs
    (autogenerate does not compare CHECK constraints or ON DELETE rules)."""
    first = {k: v for k, v in vars(components[0]).items() if k in COMPONENT_COLUMNS_0001}
    fresh = {**first, "component_run_id": "ffffffff-0000-0000-0000-000000000000",
             "attempt": 9, "models_used_override": None}
    assert _refused(db_url, COMPONENTS.insert(), [{**fresh, "status": "failed"}])  # check
    # (run_id, component, attempt) is unique before revision 0004 only.
    unique = migrate.current_revision(db_url) < "0004"
    assert _refused(db_url, COMPONENTS.insert(), [{**fresh, "attempt": 1}]) == unique
    assert _refused(db_url, COMPONENTS.insert(), [{**fresh, "run_id": "no-such-run"}])  # fk
    # ON DELETE CASCADE from runs to component_runs and events (the events foreign key
    # points at the copied table).
    engine = create_warehouse_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(RUNS.delete().where(RUNS.c.run_id == run.run_id))
        with engine.connect() as conn:
            left = {t.name: conn.execute(select(func.count()).select_from(t).where(
                t.c.run_id == run.run_id)).scalar_one() for t in (COMPONENTS, EVENTS)}
            if TABLE_0003 in inspect(conn).get_table_names():
                left[TABLE_0003] = conn.execute(
                    select(func.count()).select_from(ARTIFACT_INDEX).where(
                        ARTIFACT_INDEX.c.latest_success_run_id == run.run_id)).scalar_one()
    finally:
        engine.dispose()
    assert set(left.values()) == {0}, left


def test_0002_keeps_the_rows_of_a_0001_warehouse(db_url, make_run):
    migrate.upgrade(db_url, "0001")
    run, components = make_run()
    _write_as_0001(db_url, run, components)
    before = _counts(db_url)
    assert before == {"runs": 1, "component_runs": 5, "model_signatures": 3, "events": 2}

    migrate.upgrade(db_url)
    assert migrate.current_revision(db_url) == HEAD
    assert _counts(db_url) == before
    assert _schema_diff(db_url) == []
    with WarehouseStore(db_url) as store:
        got_run, got_components = store.get_run(run.run_id)
    # The new fields read back as "not recorded", everything else as written.
    assert got_run == run
    assert got_components == components
    assert all(c.batch_size_requested is None and c.prediction_status is None
               and c.cache_version is None for c in got_components)
    engine = create_warehouse_engine(db_url)
    try:
        with engine.connect() as conn:
            rollup = dict(conn.execute(select(ROLLUPS)).one()._mapping)
    finally:
        engine.dispose()
    assert {k: rollup[k] for k in ROLLUP_COLUMNS_0001} == ROLLUP_0001
    assert all(rollup[k] is None for k in NEW_IN_0002["component_rollups"]
               | NEW_IN_0003["component_rollups"])
    _assert_constraints_hold(db_url, run, components)


def test_0002_refuses_an_unknown_prediction_status_and_accepts_null(db_url, make_run):
    migrate.upgrade(db_url)
    run, components = make_run()
    with WarehouseStore(db_url) as store:
        store.write([run], components)
    row = {**{k: v for k, v in vars(components[0]).items() if k in COMPONENTS.c},
           "component_run_id": "ffffffff-0000-0000-0000-000000000000", "attempt": 2,
           "models_used_override": None}
    # Past the store's own validation: the database itself refuses it.
    assert _refused(db_url, COMPONENTS.insert(), [{**row, "prediction_status": "fallback"}])
    assert not _refused(db_url, COMPONENTS.insert(), [{**row, "prediction_status": None}])
    assert "ck_component_runs_prediction_status" in _check_names(db_url, "component_runs")


def test_downgrade_to_0001_keeps_the_rows_and_upgrade_restores_the_columns(db_url,
                                                                            make_run):
    migrate.upgrade(db_url)
    run, components = make_run()
    components[0].batch_size_requested = 32
    components[0].prediction_status = "degraded"
    components[2].prediction_status = "ok"
    with WarehouseStore(db_url) as store:
        store.write([run], components)
    before = _counts(db_url)

    migrate.downgrade(db_url, "0001")
    assert migrate.current_revision(db_url) == "0001"
    assert _counts(db_url) == before
    assert _columns(db_url, "runs") == RUN_COLUMNS_0001
    assert _columns(db_url, "component_runs") == COMPONENT_COLUMNS_0001
    assert _columns(db_url, "component_rollups") == ROLLUP_COLUMNS_0001 | {"id"}
    assert _check_names(db_url, "component_runs") == {"ck_component_runs_status"}

    # Back at head: the rows are there, the values only 0002 could hold are gone.
    migrate.upgrade(db_url)
    assert _counts(db_url) == before
    with WarehouseStore(db_url) as store:
        _, got_components = store.get_run(run.run_id)
    cleared = [dataclasses.replace(c, batch_size_requested=None, prediction_status=None)
               for c in components]
    assert got_components == cleared
    _assert_constraints_hold(db_url, run, components)


# -- revision 0003 on a warehouse holding rows ---------------------------------------------

ROLLUP_0002 = {**ROLLUP_0001, "oom_rate": 0.25, "mean_ooms_per_run": 0.5, "retries": 2,
               "p95_peak_gpu_allocated_bytes": None, "p95_peak_gpu_reserved_bytes": 1.5e9,
               "degraded_rate": None}


def _index_rows(db_url: str) -> dict[tuple, tuple]:
    engine = create_warehouse_engine(db_url)
    try:
        with engine.connect() as conn:
            return {(r.platform_id, r.video_id, r.config_hash, r.sampling_policy_version,
                     r.pipeline_version): (r.latest_success_run_id, r.finished_at)
                    for r in conn.execute(select(ARTIFACT_INDEX))}
    finally:
        engine.dispose()


def test_0003_keeps_the_rows_of_a_0002_warehouse_and_indexes_its_runs(db_url, make_run):
    migrate.upgrade(db_url, "0002")
    t0 = datetime(2026, 5, 1, tzinfo=timezone.utc)
    older = make_run(video_id="v1", started_at=t0)
    newer = make_run(video_id="v1", started_at=t0 + timedelta(hours=1))
    failed = make_run(video_id="v1", status="error", started_at=t0 + timedelta(hours=2))
    running = make_run(video_id="v1", status="running", started_at=t0 + timedelta(hours=3))
    running[0].finished_at = running[0].duration_ms = None
    unset = make_run(video_id="v2", started_at=t0)
    unset[0].pipeline_version = unset[0].sampling_policy_version = None
    written = [older, newer, failed, running, unset]
    for _, components in written:
        components[0].batch_size_requested, components[0].prediction_status = 32, "degraded"
    _write_old(db_url, written, RUN_COLUMNS_0002, COMPONENT_COLUMNS_0002, ROLLUP_0002)
    before = _counts(db_url)
    assert before == {"runs": 5, "component_runs": 25, "model_signatures": 3, "events": 10}

    migrate.upgrade(db_url)
    assert migrate.current_revision(db_url) == HEAD
    assert _counts(db_url) == before
    assert _schema_diff(db_url) == []
    with WarehouseStore(db_url) as store:
        for run, components in written:
            # The new fields read back as "not recorded", everything else as written.
            assert store.get_run(run.run_id) == (run, components)
            assert store.get_run(run.run_id)[0].resumed_from_run_id is None
    engine = create_warehouse_engine(db_url)
    try:
        with engine.connect() as conn:
            rollup = dict(conn.execute(select(ROLLUPS)).one()._mapping)
    finally:
        engine.dispose()
    assert {k: rollup[k] for k in ROLLUP_COLUMNS_0002} == ROLLUP_0002
    assert rollup["cache_miss_reasons"] is None
    # The migration indexed the successful runs already stored: the newest per key,
    # None parts as ''.
    key = ("youtube", "v1", newer[0].config_hash, "sp-2", "1.4.0")
    assert _index_rows(db_url) == {
        key: (newer[0].run_id, newer[0].finished_at),
        ("youtube", "v2", unset[0].config_hash, "", ""): (unset[0].run_id,
                                                           unset[0].finished_at)}
    with WarehouseStore(db_url) as store:
        entry = store.latest_success("youtube", "v1", config_hash=newer[0].config_hash,
                                     sampling_policy_version="sp-2", pipeline_version="1.4.0")
        assert entry.latest_success_run_id == newer[0].run_id
        assert entry.updated_at.tzinfo is timezone.utc
        assert store.latest_success("youtube", "v2", config_hash=unset[0].config_hash,
                                    sampling_policy_version=None,
                                    pipeline_version=None).latest_success_run_id \
            == unset[0].run_id
    _assert_constraints_hold(db_url, *older)


def test_downgrade_to_0002_keeps_the_rows_and_drops_the_index(db_url, make_run):
    migrate.upgrade(db_url)
    run, components = make_run()
    run.resumed_from_run_id = "0b6f8cb9-d342-44c7-8259-15cac4611439"
    components[0].cache_version = 3
    with WarehouseStore(db_url) as store:
        store.write([run], components)
    assert len(_index_rows(db_url)) == 1
    before = _counts(db_url)

    migrate.downgrade(db_url, "0002")
    assert migrate.current_revision(db_url) == "0002"
    assert _counts(db_url) == before
    assert TABLE_0003 not in _tables(db_url)
    assert _columns(db_url, "runs") == RUN_COLUMNS_0002
    assert _columns(db_url, "component_runs") == COMPONENT_COLUMNS_0002
    assert _columns(db_url, "component_rollups") == ROLLUP_COLUMNS_0002 | {"id"}
    assert "ck_component_runs_prediction_status" in _check_names(db_url, "component_runs")

    # Back at head: the rows are there, the values only 0003 could hold are gone, the
    # index is rebuilt from the runs.
    migrate.upgrade(db_url)
    assert _counts(db_url) == before
    assert _schema_diff(db_url) == []
    with WarehouseStore(db_url) as store:
        got_run, got_components = store.get_run(run.run_id)
    assert got_run == dataclasses.replace(run, resumed_from_run_id=None)
    assert got_components == [dataclasses.replace(c, cache_version=None) for c in components]
    assert [v[0] for v in _index_rows(db_url).values()] == [run.run_id]
    _assert_constraints_hold(db_url, run, components)


# -- revision 0004: a fanned-out run's invocations share (component, attempt) -----------------

def test_0004_stores_fanned_out_invocations_and_refuses_to_downgrade_them(db_url, make_run):
    migrate.upgrade(db_url)
    run, components = make_run(status="ok")
    twin = dataclasses.replace(components[0], component_run_id=str(uuid.uuid4()), events=[])
    with WarehouseStore(db_url) as store:
        store.write([run], [*components, twin])
        stored = store.get_run(run.run_id)[1]
    same = [c for c in stored if (c.component, c.attempt) ==
            (twin.component, twin.attempt)]
    assert len(same) == 2
    with pytest.raises(RuntimeError, match="cannot downgrade below 0004"):
        migrate.downgrade(db_url, "0003")
    assert migrate.current_revision(db_url) == HEAD


# -- revision 0005: heartbeats, and the crashed status ---------------------------------------

def test_0005_stores_heartbeats_and_crashed_runs_and_downgrades_them_to_error(db_url, make_run):
    migrate.upgrade(db_url)
    run, components = make_run(status="running")
    run.heartbeat_at = run.started_at + timedelta(seconds=30)
    with WarehouseStore(db_url) as store:
        store.write([run], components)
        assert store.get_run(run.run_id)[0].heartbeat_at == run.heartbeat_at
        assert store.mark_crashed([run.run_id], run.heartbeat_at + timedelta(minutes=5)) == [
            run.run_id]
        crashed = store.get_run(run.run_id)[0]
    assert (crashed.status, crashed.finished_at) == ("crashed", run.heartbeat_at)
    row = {k: v for k, v in vars(run).items() if k in set(RUNS.c.keys())}
    assert _refused(db_url, RUNS.insert(), [{**row, "run_id": str(uuid.uuid4()),
                                             "status": "lost"}])  # the check holds
    migrate.downgrade(db_url, "0004")
    engine = create_warehouse_engine(db_url)
    try:
        with engine.connect() as conn:
            status, code = conn.execute(select(RUNS.c.status, RUNS.c.error_code).where(
                RUNS.c.run_id == run.run_id)).one()
    finally:
        engine.dispose()
    assert (status, code) == ("error", "crashed")
    migrate.upgrade(db_url)
    assert migrate.current_revision(db_url) == HEAD


def test_0011_keeps_the_rows_of_a_0010_warehouse_and_downgrading_keeps_them(db_url, make_run):
    migrate.upgrade(db_url, "0010")
    run, components = make_run(status="ok")
    _write_old(db_url, [(run, components)], _columns(db_url, "runs"),
               _columns(db_url, "component_runs") - {"ingested_at"}, None)
    migrate.upgrade(db_url, "0011")
    with WarehouseStore(db_url) as store:
        _, stored = store.get_run(run.run_id)
    assert [c.component_run_id for c in stored] == [c.component_run_id for c in components]
    # Rows from before the revision say "not recorded", not a made-up 0.
    assert {(c.rss_at_start_bytes, c.peak_rss_increase_bytes, c.error_traceback)
            for c in stored} == {(None, None, None)}
    migrate.downgrade(db_url, "0010")
    assert not NEW_IN_0011["component_runs"] & _columns(db_url, "component_runs")
    assert _counts(db_url)["component_runs"] == len(components)
