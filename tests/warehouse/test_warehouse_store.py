"""WarehouseStore: idempotent writes, exact round trips, clear errors (SQLite and PostgreSQL)."""

from __future__ import annotations

import dataclasses
import json
import math
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import jsonschema
import pytest
from sqlalchemy import func, select

from mlobs.core.errors import InvalidRecordError, WarehouseError
from mlobs.core.manifest import manifest_document, write_manifest
from mlobs.core.records import ComponentRecord, EventRecord, RunRecord
from mlobs.core.signature import model_signature
from mlobs.sinks.ingest import ingest_manifests
from mlobs.warehouse.store import COMPONENTS, EVENTS, RUNS, SIGNATURES, WarehouseStore

MANIFEST_SCHEMA = json.loads(
    (Path(__file__).parents[2] / "docs" / "manifest.schema.json").read_text())


@pytest.fixture
def store(db_url):
    with WarehouseStore(db_url, manage_schema=True) as opened:
        yield opened


def _count(store: WarehouseStore, table) -> int:
    with store.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def _counts(store: WarehouseStore) -> dict[str, int]:
    return {t.name: _count(store, t) for t in (RUNS, COMPONENTS, SIGNATURES, EVENTS)}


def test_tables_have_exactly_the_record_fields():
    run_fields = {f.name for f in dataclasses.fields(RunRecord)}
    # labels are rows of their own (run_labels; tests/warehouse/test_labels_warehouse.py).
    assert set(RUNS.c.keys()) == run_fields - {"labels"}
    component_fields = {f.name for f in dataclasses.fields(ComponentRecord)}
    # ingested_at is the warehouse's own (incremental rollups), not a record field.
    assert set(COMPONENTS.c.keys()) == (component_fields - {"models_used", "events"}
                                        | {"models_used_override", "ingested_at"})
    assert set(EVENTS.c.keys()) == {f.name for f in dataclasses.fields(EventRecord)} | {"seq"}


def test_get_run_round_trips_every_field(store, make_run):
    run, components = make_run()
    store.write([run], components)
    got = store.get_run(run.run_id)
    assert got is not None
    got_run, got_components = got
    assert got_run == run
    assert got_components == components  # ordered by started_at, like the fixture
    for component in got_components:
        for value in (component.started_at, component.finished_at,
                      *(e.occurred_at for e in component.events)):
            assert value.tzinfo is timezone.utc
    summary = got_components[-1]
    assert [e.kind for e in summary.events] == ["oom", "retry"]
    assert got_components[1].models_used == [] and got_components[1].model_signature is None


def test_round_trip_of_manifest_form(store, make_run):
    run, components = make_run()
    store.write([run], components)
    got_run, got_components = store.get_run(run.run_id)
    assert got_run.to_dict() == run.to_dict()
    assert [c.to_dict() for c in got_components] == [c.to_dict() for c in components]


def _with_fallbacks(components: list[ComponentRecord]) -> list[ComponentRecord]:
    """The fixture's components with every value of the fields added by revision 0002:
    asr degraded after halving its batch, embedding answered by its first model."""
    asr, cleaning, embedding, faces, summary = components
    asr.batch_size_requested, asr.prediction_status = 32, "degraded"
    embedding.batch_size_requested, embedding.prediction_status = 64, "ok"
    summary.batch_size_requested = 4  # degraded to 1, then failed: no prediction
    return components


def test_batch_size_requested_and_prediction_status_round_trip(store, make_run):
    run, components = make_run()
    _with_fallbacks(components)
    store.write([run], components)
    assert store.get_run(run.run_id) == (run, components)
    with store.engine.connect() as conn:
        stored = {row.component: (row.batch_size, row.batch_size_requested,
                                  row.prediction_status)
                  for row in conn.execute(select(COMPONENTS))}
    assert stored == {"asr": (16, 32, "degraded"), "cleaning": (None, None, None),
                      "embedding": (64, 64, "ok"), "faces": (8, None, None),
                      "summarization": (1, 4, None)}


def test_ingested_manifests_carry_the_new_fields_and_old_ones_still_load(store, make_run,
                                                                        tmp_path):
    run, components = make_run()
    _with_fallbacks(components)
    new = tmp_path / "new" / "manifest.json"
    new.parent.mkdir()
    write_manifest(new, manifest_document(run, components))
    jsonschema.validate(json.loads(new.read_text()), MANIFEST_SCHEMA)

    # A manifest written before the fields existed: no such keys at all.
    old_run, old_components = make_run()
    document = json.loads(new.read_text())
    document.update(old_run.to_dict())
    document["components"] = [
        {k: v for k, v in c.to_dict().items()
         if k not in ("batch_size_requested", "prediction_status")} for c in old_components]
    old = tmp_path / "old" / "manifest.json"
    old.parent.mkdir()
    write_manifest(old, json.dumps(document))
    jsonschema.validate(document, MANIFEST_SCHEMA)

    report = ingest_manifests(store, [new, old])
    assert report.problems == [] and report.manifests == 2
    assert store.get_run(run.run_id) == (run, components)
    assert store.get_run(old_run.run_id) == (old_run, old_components)


def _with_cache(run: RunRecord, components: list[ComponentRecord]) -> None:
    """Every value of the fields added by revision 0003: a resumed run, cached versions."""
    run.resumed_from_run_id = "0b6f8cb9-d342-44c7-8259-15cac4611439"
    components[0].cache_version = 2        # asr: miss, version 2 written
    components[1].cache_version = 7        # cleaning: hit on version 7
    components[2].cache_status, components[2].cache_version = "bypass", 1


def test_cache_version_and_resumed_from_run_id_round_trip(store, make_run):
    run, components = make_run()
    _with_cache(run, components)
    store.write([run], components)
    assert store.get_run(run.run_id) == (run, components)
    assert store.list_runs() == [run]
    with store.engine.connect() as conn:
        stored = {row.component: (row.cache_status, row.cache_version)
                  for row in conn.execute(select(COMPONENTS))}
        resumed = conn.execute(select(RUNS.c.resumed_from_run_id)).scalar_one()
    assert stored == {"asr": ("miss", 2), "cleaning": ("hit", 7), "embedding": ("bypass", 1),
                      "faces": (None, None), "summarization": (None, None)}
    assert resumed == run.resumed_from_run_id
    # Not recorded: None, not 0 or ''.
    plain, plain_components = make_run()
    store.write([plain], plain_components)
    got_run, got_components = store.get_run(plain.run_id)
    assert got_run.resumed_from_run_id is None
    assert all(c.cache_version is None for c in got_components)


def test_ingested_manifests_carry_the_0003_fields_and_older_ones_still_load(store, make_run,
                                                                           tmp_path):
    run, components = make_run()
    _with_cache(run, components)
    new = tmp_path / "new" / "manifest.json"
    new.parent.mkdir()
    write_manifest(new, manifest_document(run, components))
    document = json.loads(new.read_text())
    jsonschema.validate(document, MANIFEST_SCHEMA)
    assert document["resumed_from_run_id"] == run.resumed_from_run_id
    assert [c["cache_version"] for c in document["components"]] == [2, 7, 1, None, None]

    # A manifest written before the fields existed: no such keys at all.
    old_run, old_components = make_run()
    old_document = {**document, **old_run.to_dict(),
                    "components": [c.to_dict() for c in old_components]}
    del old_document["resumed_from_run_id"]
    for c in old_document["components"]:
        del c["cache_version"]
    jsonschema.validate(old_document, MANIFEST_SCHEMA)
    old = tmp_path / "old" / "manifest.json"
    old.parent.mkdir()
    write_manifest(old, json.dumps(old_document))

    report = ingest_manifests(store, [new, old])
    assert report.problems == [] and report.manifests == 2
    assert store.get_run(run.run_id) == (run, components)
    assert store.get_run(old_run.run_id) == (old_run, old_components)


@pytest.mark.parametrize("where, field, value", [("component", "cache_version", "2"),
                                                 ("component", "cache_version", 1.5),
                                                 ("component", "cache_version", 0),
                                                 ("run", "resumed_from_run_id", 42)])
def test_the_manifest_schema_refuses_bad_0003_fields(make_run, where, field, value):
    run, components = make_run()
    document = {"schema": "mlobs.manifest/1", **run.to_dict(),
                "components": [c.to_dict() for c in components]}
    jsonschema.validate(document, MANIFEST_SCHEMA)
    (document["components"][0] if where == "component" else document)[field] = value
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, MANIFEST_SCHEMA)


@pytest.mark.parametrize("field, value", [("prediction_status", "fallback"),
                                          ("prediction_status", "OK"),
                                          ("batch_size_requested", -1.5),
                                          ("batch_size_requested", "32")])
def test_the_manifest_schema_refuses_bad_new_fields(make_run, field, value):
    run, components = make_run()
    document = {"schema": "mlobs.manifest/1", **run.to_dict(),
                "components": [c.to_dict() for c in components]}
    jsonschema.validate(document, MANIFEST_SCHEMA)
    document["components"][0][field] = value
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, MANIFEST_SCHEMA)


def test_write_is_idempotent_and_updates_the_run_status(store, make_run):
    run, components = make_run()
    running = dataclasses.replace(run, status="running", finished_at=None, duration_ms=None,
                                  warnings=[])
    store.write([running], [])
    assert store.get_run(run.run_id)[0].status == "running"

    store.write([run], components)
    store.write([run], components)
    assert _counts(store) == {"runs": 1, "component_runs": 5, "model_signatures": 3,
                              "events": 2}
    got_run, got_components = store.get_run(run.run_id)
    assert got_run == run
    assert got_components == components


def test_a_late_running_snapshot_does_not_undo_a_finished_run(store, make_run):
    run, components = make_run()
    running = dataclasses.replace(run, status="running", finished_at=None, duration_ms=None)
    store.write([run], components)
    store.write([running], [])
    assert store.get_run(run.run_id)[0] == run
    # Both states in one batch, in either order: the finished one is kept.
    other, other_components = make_run()
    other_running = dataclasses.replace(other, status="running", finished_at=None)
    store.write([other_running, other, other_running], other_components)
    assert store.get_run(other.run_id)[0] == other


def test_error_run_replaces_running(store, make_run):
    run, _ = make_run()
    store.write([dataclasses.replace(run, status="running")], [])
    failed = dataclasses.replace(run, status="error", error_code="model_load_failed",
                                 error_message="weights digest mismatch")
    store.write([failed], [])
    assert store.get_run(run.run_id)[0] == failed


def test_models_used_differing_from_the_signature_row_round_trip(store, make_run):
    first_run, first_components = make_run()
    store.write([first_run], first_components)
    # Same signatures, but another GPU index and another order of the models.
    run, components = make_run()
    asr, _, embedding, _, _ = components
    asr.models_used = [dataclasses.replace(asr.models_used[0], device="cuda:1")]
    embedding.models_used = list(reversed(embedding.models_used))
    assert model_signature(asr.models_used) == asr.model_signature
    assert model_signature(embedding.models_used) == embedding.model_signature
    store.write([run], components)

    assert store.get_run(run.run_id)[1] == components
    assert store.get_run(first_run.run_id)[1] == first_components
    assert _count(store, SIGNATURES) == 3
    with store.engine.connect() as conn:
        overrides = dict(conn.execute(select(COMPONENTS.c.component,
                                             COMPONENTS.c.models_used_override)
                                      .where(COMPONENTS.c.run_id == run.run_id)).all())
    assert overrides["asr"] is not None and overrides["embedding"] is not None
    assert overrides["faces"] is None and overrides["cleaning"] is None


def test_datetimes_in_other_time_zones_come_back_as_the_same_instant_in_utc(store, make_run):
    paris = timezone(timedelta(hours=2))
    run, components = make_run(started_at=datetime(2026, 5, 9, 14, 0, tzinfo=paris))
    store.write([run], components)
    got_run, _ = store.get_run(run.run_id)
    assert got_run.started_at == run.started_at
    assert got_run.started_at.tzinfo is timezone.utc
    assert got_run.started_at.hour == 12


def test_list_runs_newest_first_with_filters(store, make_run):
    base = datetime(2026, 5, 1, tzinfo=timezone.utc)
    written = []
    for day in range(4):
        run, components = make_run(platform_id="youtube" if day % 2 else "vimeo",
                                    video_id=f"v{day}", started_at=base + timedelta(days=day),
                                    status="error" if day == 3 else "ok")
        store.write([run], components)
        written.append(run)
    assert [r.run_id for r in store.list_runs()] == [r.run_id for r in reversed(written)]
    assert [r.video_id for r in store.list_runs(limit=2)] == ["v3", "v2"]
    assert [r.video_id for r in store.list_runs(platform_id="youtube")] == ["v3", "v1"]
    assert [r.video_id for r in store.list_runs(video_id="v2")] == ["v2"]
    assert [r.video_id for r in store.list_runs(status="error")] == ["v3"]
    assert store.list_runs(platform_id="vimeo", status="error") == []
    assert store.list_runs()[0] == written[-1]
    assert store.component_counts([r.run_id for r in written]) == {
        r.run_id: 5 for r in written}


def test_component_run_ids_are_those_of_the_run_only(store, make_run):
    (run, components), (other, _) = make_run(), make_run()
    store.write([run, other], components[:3])
    assert store.component_run_ids(run.run_id) == {c.component_run_id for c in components[:3]}
    assert store.component_run_ids(other.run_id) == set()
    assert store.component_run_ids("00000000-0000-0000-0000-000000000000") == set()


def test_get_run_of_an_unknown_id_is_none(store):
    assert store.get_run("00000000-0000-0000-0000-000000000000") is None


def test_deleting_a_run_cascades_to_components_and_events(store, make_run):
    run, components = make_run()
    store.write([run], components)
    with store.engine.begin() as conn:
        conn.execute(RUNS.delete().where(RUNS.c.run_id == run.run_id))
    counts = _counts(store)
    assert counts["runs"] == counts["component_runs"] == counts["events"] == 0


#: label -> mutate(run, components): each makes one record invalid.
INVALID_CASES = {
    "run status": lambda run, comps: setattr(run, "status", "done"),
    "component status": lambda run, comps: setattr(comps[0], "status", "failed"),
    "naive datetime": lambda run, comps: setattr(comps[0], "started_at",
                                                 datetime(2026, 5, 9, 12, 0)),
    "wrong signature": lambda run, comps: setattr(comps[0], "model_signature", "f" * 64),
    "models without signature": lambda run, comps: setattr(comps[0], "model_signature", None),
    "too long video_id": lambda run, comps: setattr(run, "video_id", "v" * 300),
    "missing component name": lambda run, comps: setattr(comps[0], "component", None),
    "NaN duration": lambda run, comps: setattr(comps[0], "duration_ms", math.nan),
    "NaN metric": lambda run, comps: comps[0].metrics.update(loss=math.nan),
    "non-JSON config": lambda run, comps: run.config.update(when=datetime.now()),
    "NaN in a run's config": lambda run, comps: run.config.update(lr=math.nan),
    "NaN in an event's attributes": lambda run, comps: comps[-1].events[0].attributes.update(
        free_bytes=math.inf),
    "event of another component": lambda run, comps: comps[-1].events[0].__setattr__(
        "component_run_id", comps[0].component_run_id),
    "attempt out of range": lambda run, comps: setattr(comps[0], "attempt", 2**40),
    "required not a bool": lambda run, comps: setattr(comps[0], "required", "yes"),
    "unknown prediction_status": lambda run, comps: setattr(comps[0], "prediction_status",
                                                            "fallback"),
    "batch_size_requested not an int": lambda run, comps: setattr(
        comps[0], "batch_size_requested", 32.0),
    "cache_version not an int": lambda run, comps: setattr(comps[0], "cache_version", "3"),
    "cache_version out of range": lambda run, comps: setattr(comps[0], "cache_version",
                                                             2**31),
    "resumed_from_run_id too long": lambda run, comps: setattr(run, "resumed_from_run_id",
                                                               "r" * 37),
}


@pytest.mark.parametrize("case", sorted(INVALID_CASES))
def test_an_invalid_record_names_itself_and_nothing_is_written(store, case, make_run):
    """Refused as invalid (never taken for a database that is away: the warehouse sink
    would spool it and retry it for ever)."""
    run, components = make_run()
    INVALID_CASES[case](run, components)
    with pytest.raises(InvalidRecordError) as caught:
        store.write([run], components)
    message = str(caught.value)
    assert run.run_id in message or any(c.component_run_id in message for c in components) \
        or any(e.event_id in message for c in components for e in c.events), message
    assert _counts(store) == {"runs": 0, "component_runs": 0, "model_signatures": 0,
                              "events": 0}


def test_a_component_of_an_unknown_run_is_named(store, make_run):
    run, components = make_run()
    with pytest.raises(WarehouseError) as caught:
        store.write([], components[:1])
    assert components[0].component_run_id in str(caught.value)
    assert "neither in this batch nor in the warehouse" in str(caught.value)


def test_a_failed_write_leaves_no_signature_behind_for_later_writes(store, make_run):
    """The store remembers stored signatures to skip writing them again; a rolled-back
    write must not count as stored, or later components would lose their models."""
    run, components = make_run()
    with pytest.raises(WarehouseError):
        store.write([], components)  # their run is unknown: the transaction rolls back
    assert _count(store, SIGNATURES) == 0
    store.write([run], components)
    assert store.get_run(run.run_id) == (run, components)
    assert _count(store, SIGNATURES) == 3


def test_signature_rows_removed_behind_the_stores_back_are_written_again(store, make_run):
    """Rows a store remembers as stored can vanish (a warehouse emptied and re-created
    while a sink keeps its store open): the next write must bring them back."""
    first_run, first_components = make_run()
    store.write([first_run], first_components)
    with store.engine.begin() as conn:
        conn.execute(SIGNATURES.delete())
    run, components = make_run()
    asr = components[0]
    asr.models_used = [dataclasses.replace(asr.models_used[0], device="cuda:1")]
    store.write([run], components)
    assert _count(store, SIGNATURES) == 3
    assert store.get_run(run.run_id)[1] == components


def test_invocations_sharing_component_and_attempt_are_both_stored(store, make_run):
    """A run fanned out over workers: one component, attempt 1, in several tasks."""
    run, components = make_run()
    twin = dataclasses.replace(components[0], component_run_id="twin-" + run.run_id[:30],
                               events=[])
    store.write([run], [*components, twin])
    stored = store.get_run(run.run_id)[1]
    assert {c.component_run_id for c in stored} == \
        {c.component_run_id for c in [*components, twin]}


def test_components_may_follow_their_run_in_a_later_batch(store, make_run):
    run, components = make_run()
    store.write([dataclasses.replace(run, status="running")], [])
    store.write([], components[:2])
    store.write([run], components[2:])
    assert store.get_run(run.run_id) == (run, components)


def test_empty_write_is_a_no_op(store):
    store.write([], [])
    assert _count(store, RUNS) == 0


def test_concurrent_writers_wait_for_each_other(sqlite_url, make_run):
    errors: list[BaseException] = []
    WarehouseStore(sqlite_url, manage_schema=True).close()

    def writer() -> None:
        try:
            with WarehouseStore(sqlite_url) as own:
                for _ in range(15):
                    run, components = make_run()
                    own.write([run], components)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with WarehouseStore(sqlite_url) as check:
        assert _count(check, RUNS) == 60
