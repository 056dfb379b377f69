"""Run labels in the warehouse (table ``run_labels``, revision 0008), on SQLite and
PostgreSQL: written with the run, replaced on rewrite, idempotent on re-ingest, selected
by, deleted with the run, carried by assembled manifests, and the migration."""

from __future__ import annotations

import dataclasses
import json

import pytest
from sqlalchemy import func, select

from mlobs.core.errors import InvalidRecordError
from mlobs.core.manifest import manifest_document, read_manifest, write_manifest
from mlobs.sinks.ingest import ingest_manifests
from mlobs.warehouse import migrate
from mlobs.warehouse.assembly import assemble_manifest
from mlobs.warehouse.deletion import RowCounts, count_run_rows, delete_runs, delete_video_rows
from mlobs.warehouse.engine import create_warehouse_engine
from mlobs.warehouse.rows import LABELS, RUNS
from mlobs.warehouse.store import WarehouseStore

LABELS_A = {"experiment": "asr-int8", "release": "rc-2"}


@pytest.fixture
def store(db_url):
    with WarehouseStore(db_url, manage_schema=True) as opened:
        yield opened


def _label_rows(store: WarehouseStore) -> set[tuple[str, str, str]]:
    with store.engine.connect() as conn:
        return set(conn.execute(select(LABELS.c.run_id, LABELS.c.key, LABELS.c.value)))


def test_labels_are_written_with_the_run_and_read_back(store, make_run):
    run, components = make_run()
    run.labels = dict(LABELS_A)
    plain, plain_components = make_run()
    store.write([run, plain], [*components, *plain_components])
    assert store.get_run(run.run_id) == (run, components)
    assert store.get_run(plain.run_id)[0].labels == {}
    assert {r.run_id: r.labels for r in store.list_runs()} == {
        run.run_id: LABELS_A, plain.run_id: {}}
    assert _label_rows(store) == {(run.run_id, "experiment", "asr-int8"),
                                  (run.run_id, "release", "rc-2")}


def test_labels_at_their_bounds_round_trip(store, make_run):
    """PostgreSQL counts VARCHAR lengths in characters: 256 two-byte ones fit."""
    run, components = make_run()
    run.labels = {"k" * 64: "é" * 256, "empty": "", **{f"k{i}": str(i) for i in range(30)}}
    store.write([run], components)
    assert store.get_run(run.run_id)[0].labels == run.labels


def test_writing_a_run_again_replaces_its_labels(store, make_run):
    run, components = make_run(status="running")
    run.labels = dict(LABELS_A)
    store.write([run], components)
    final = dataclasses.replace(run, status="ok", labels={"release": "rc-3", "ci": "yes"})
    store.write([final], [])
    assert store.get_run(run.run_id)[0].labels == {"ci": "yes", "release": "rc-3"}
    assert len(_label_rows(store)) == 2
    # the same record twice in one batch, the latest state's labels win
    store.write([dataclasses.replace(final, status="running", labels={"x": "1"}), final], [])
    assert store.get_run(run.run_id)[0].labels == {"ci": "yes", "release": "rc-3"}
    store.write([dataclasses.replace(final, labels={})], [])
    assert store.get_run(run.run_id)[0].labels == {}
    assert _label_rows(store) == set()


@pytest.mark.parametrize("labels, problem", [
    ({"bad key": "x"}, "labels key 'bad key' must be a letter"),
    ({"release": "x" * 257}, r"labels\['release'\] must be at most 256 characters"),
    ({"release": 3}, r"labels\['release'\] must be a string"),
    ({f"k{i}": "v" for i in range(33)}, "at most 32 labels"),
])
def test_invalid_labels_are_refused_naming_the_run(store, make_run, labels, problem):
    run, components = make_run()
    run.labels = labels
    with pytest.raises(InvalidRecordError, match=problem) as caught:
        store.write([run], components)
    assert run.run_id in str(caught.value)
    assert store.get_run(run.run_id) is None and _label_rows(store) == set()


def test_reingesting_a_manifest_is_idempotent(store, make_run, tmp_path):
    run, components = make_run()
    run.labels = dict(LABELS_A)
    path = tmp_path / "m" / "manifest.json"
    path.parent.mkdir()
    write_manifest(path, manifest_document(run, components))
    assert json.loads(path.read_text())["labels"] == LABELS_A
    for _ in range(2):
        report = ingest_manifests(store, [path])
        assert report.problems == [] and report.manifests == 1
        assert store.get_run(run.run_id) == (run, components)
        assert len(_label_rows(store)) == 2


def test_a_manifest_older_than_labels_ingests_without_labels(store, make_run, tmp_path):
    run, components = make_run()
    document = json.loads(manifest_document(run, components))
    del document["labels"]
    path = tmp_path / "manifest.json"
    write_manifest(path, json.dumps(document))
    assert ingest_manifests(store, [path]).problems == []
    assert store.get_run(run.run_id) == (run, components)
    assert store.get_run(run.run_id)[0].labels == {}


def test_list_runs_selects_by_every_label_given(store, make_run):
    written = {}
    for name, labels in (("a", {"release": "rc-2", "side": "baseline"}),
                         ("b", {"release": "rc-2", "side": "candidate"}),
                         ("c", {"release": "rc-1", "side": "candidate"}),
                         ("d", {})):
        run, components = make_run(video_id=name)
        run.labels = labels
        store.write([run], components)
        written[run.run_id] = name

    def names(**filters) -> set[str]:
        return {written[r.run_id] for r in store.list_runs(**filters)}

    assert names() == {"a", "b", "c", "d"}
    assert names(labels={}) == {"a", "b", "c", "d"}
    assert names(labels={"release": "rc-2"}) == {"a", "b"}
    assert names(labels={"side": "candidate"}) == {"b", "c"}
    assert names(labels={"release": "rc-2", "side": "candidate"}) == {"b"}
    assert names(labels={"release": "rc-9"}) == set()
    assert names(labels={"release": "rc-2"}, video_id="a") == {"a"}
    # the limit applies after the filter
    assert len(store.list_runs(limit=1, labels={"side": "candidate"})) == 1


def test_deleting_runs_deletes_their_labels(db_url, store, make_run):
    kept, kept_components = make_run(video_id="kept")
    kept.labels = {"release": "rc-2"}
    gone, gone_components = make_run(video_id="gone")
    gone.labels = dict(LABELS_A)
    store.write([kept, gone], [*kept_components, *gone_components])
    counts = count_run_rows(db_url, [gone.run_id])[gone.run_id]
    assert counts == RowCounts(runs=1, component_runs=5, events=2, run_labels=2,
                               artifact_index=1)
    assert count_run_rows(db_url)[kept.run_id].run_labels == 1
    assert delete_runs(db_url, [gone.run_id]) == counts
    assert _label_rows(store) == {(kept.run_id, "release", "rc-2")}
    assert delete_runs(db_url, [gone.run_id]) == RowCounts()
    deleted = delete_video_rows(db_url, "kept", "youtube")
    assert deleted.run_labels == 1 and deleted.runs == 1
    assert _label_rows(store) == set()


def test_deleting_a_run_row_cascades_to_its_labels(store, make_run):
    """ON DELETE CASCADE, like the other tables of a run (SQLite: foreign_keys=ON)."""
    run, components = make_run()
    run.labels = dict(LABELS_A)
    store.write([run], components)
    with store.engine.begin() as conn:
        conn.execute(RUNS.delete().where(RUNS.c.run_id == run.run_id))
    assert _label_rows(store) == set()


def test_an_assembled_manifest_carries_the_labels(store, make_run, tmp_path):
    run, components = make_run(status="ok")
    run.labels = dict(LABELS_A)
    store.write([run], components)
    # a warning to add: the assembly writes the run record back to the warehouse too
    done = assemble_manifest(store, run.run_id, tmp_path / "runs",
                             warnings=["task ocr [t-2] had not finished"])
    assert json.loads(done.path.read_text())["labels"] == LABELS_A
    assert read_manifest(done.path)[0].labels == LABELS_A
    assert store.get_run(run.run_id)[0].labels == LABELS_A


def test_revision_0008_adds_and_drops_the_table_and_keeps_the_runs(db_url, make_run):
    migrate.upgrade(db_url)
    run, components = make_run()
    run.labels = dict(LABELS_A)
    with WarehouseStore(db_url) as store:
        store.write([run], components)
    migrate.downgrade(db_url, "0007")
    engine = create_warehouse_engine(db_url)
    try:
        with engine.connect() as conn:
            assert not engine.dialect.has_table(conn, "run_labels")
            assert conn.execute(select(func.count()).select_from(RUNS)).scalar_one() == 1
    finally:
        engine.dispose()
    migrate.upgrade(db_url)
    with WarehouseStore(db_url) as store:
        assert store.get_run(run.run_id) == (dataclasses.replace(run, labels={}), components)
        store.write([run], [])  # a replay brings them back
        assert store.get_run(run.run_id)[0].labels == LABELS_A
