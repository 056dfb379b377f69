"""artifact_index maintained by WarehouseStore.write (SQLite and PostgreSQL): the latest
successful run per (platform_id, video_id, config_hash, sampling_policy_version,
pipeline_version); newer wins, replays never move it backwards, failures never index."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from mlobs.core.errors import InvalidRecordError
from mlobs.core.manifest import manifest_document, write_manifest
from mlobs.core.records import RunRecord
from mlobs.sinks.ingest import ingest_manifests
from mlobs.warehouse.store import ARTIFACT_INDEX, RUNS, WarehouseStore

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=timezone.utc)


@pytest.fixture
def store(db_url):
    with WarehouseStore(db_url, manage_schema=True) as opened:
        yield opened


def _run(make_run, *, hours: float, video_id: str = "v1", status: str = "ok", **parts):
    """A run of the fixture's key (config, sp-2, 1.4.0) that finishes ``hours`` after T0."""
    run, components = make_run(video_id=video_id, status=status,
                               started_at=T0 + timedelta(hours=hours))
    for name, value in parts.items():
        setattr(run, name, value)
    if status == "running":
        run.finished_at = run.duration_ms = None
    return run, components


def _write(store: WarehouseStore, written: tuple) -> None:
    run, components = written
    store.write([run], components)


def _index(store: WarehouseStore) -> dict[tuple, dict]:
    with store.engine.connect() as conn:
        return {(r.platform_id, r.video_id, r.config_hash, r.sampling_policy_version,
                 r.pipeline_version): dict(r._mapping)
                for r in conn.execute(select(ARTIFACT_INDEX))}


def _key(run: RunRecord) -> tuple:
    return (run.platform_id, run.video_id, run.config_hash or "",
            run.sampling_policy_version or "", run.pipeline_version or "")


def _latest(store: WarehouseStore) -> dict[tuple, str]:
    return {key: row["latest_success_run_id"] for key, row in _index(store).items()}


def test_a_successful_run_indexes_its_key(store, make_run):
    run, components = _run(make_run, hours=0)
    store.write([run], components)
    rows = _index(store)
    assert list(rows) == [_key(run)]
    row = rows[_key(run)]
    assert row["latest_success_run_id"] == run.run_id
    assert row["finished_at"] == run.finished_at
    assert row["finished_at"].tzinfo is timezone.utc
    assert row["updated_at"].tzinfo is timezone.utc
    assert abs(row["updated_at"] - datetime.now(timezone.utc)) < timedelta(minutes=5)
    entry = store.latest_success("youtube", "v1", config_hash=run.config_hash,
                                 sampling_policy_version="sp-2", pipeline_version="1.4.0")
    assert entry == (run.run_id, run.finished_at, row["updated_at"])
    assert store.latest_success("youtube", "v1", config_hash=run.config_hash,
                                sampling_policy_version="sp-3",
                                pipeline_version="1.4.0") is None


def test_a_newer_success_wins_and_an_older_replay_does_not_move_it_back(store, make_run):
    older = _run(make_run, hours=0)
    newer = _run(make_run, hours=5)
    _write(store, older)
    _write(store, newer)
    assert _latest(store) == {_key(newer[0]): newer[0].run_id}
    updated_at = _index(store)[_key(newer[0])]["updated_at"]

    _write(store, older)              # a replayed batch
    store.write([older[0]], [])      # the run alone
    _write(store, newer)              # the indexed run again: no change at all
    row = _index(store)[_key(newer[0])]
    assert row["latest_success_run_id"] == newer[0].run_id
    assert row["finished_at"] == newer[0].finished_at
    assert row["updated_at"] == updated_at


def test_manifests_ingested_in_any_order_give_the_same_index(store, make_run, tmp_path):
    runs = [_run(make_run, hours=h) for h in (3, 0, 7, 1)]
    paths = []
    for i, (run, components) in enumerate(runs):
        path = tmp_path / str(i) / "manifest.json"
        path.parent.mkdir()
        write_manifest(path, manifest_document(run, components))
        paths.append(path)
    report = ingest_manifests(store, paths)
    assert report.problems == [] and report.manifests == 4
    assert _latest(store) == {_key(runs[2][0]): runs[2][0].run_id}
    ingest_manifests(store, list(reversed(paths)))
    assert _latest(store) == {_key(runs[2][0]): runs[2][0].run_id}


def test_several_runs_of_one_key_in_one_batch(store, make_run):
    runs = [_run(make_run, hours=h) for h in (2, 9, 4)]
    store.write([r for r, _ in runs], [c for _, cs in runs for c in cs])
    assert _latest(store) == {_key(runs[1][0]): runs[1][0].run_id}


def test_equal_finish_times_pick_the_greater_run_id_whatever_the_order(db_url, make_run):
    first = _run(make_run, hours=1)
    second = _run(make_run, hours=1)
    second[0].finished_at = first[0].finished_at
    winner = max(first[0].run_id, second[0].run_id)
    with WarehouseStore(db_url, manage_schema=True) as store:
        _write(store, first)
        _write(store, second)
        assert set(_latest(store).values()) == {winner}
        with store.engine.begin() as conn:
            conn.execute(ARTIFACT_INDEX.delete())
        _write(store, second)
        _write(store, first)
        assert set(_latest(store).values()) == {winner}
        with store.engine.begin() as conn:
            conn.execute(ARTIFACT_INDEX.delete())
        store.write([first[0], second[0]], [])
        assert set(_latest(store).values()) == {winner}


def test_failed_and_running_runs_never_index(store, make_run):
    _write(store, _run(make_run, hours=0, status="error"))
    _write(store, _run(make_run, hours=1, status="running"))
    assert _index(store) == {}
    success = _run(make_run, hours=2)
    _write(store, success)
    # A later failure of the same key leaves the earlier success indexed.
    _write(store, _run(make_run, hours=3, status="error"))
    assert _latest(store) == {_key(success[0]): success[0].run_id}


def test_a_running_snapshot_of_the_indexed_run_changes_nothing(store, make_run):
    run, components = _run(make_run, hours=0)
    store.write([run], components)
    before = _index(store)
    store.write([dataclasses.replace(run, status="running", finished_at=None,
                                     duration_ms=None)], [])
    assert _index(store) == before


def test_an_indexed_run_rewritten_as_error_hands_its_key_back(store, make_run):
    older = _run(make_run, hours=0)
    newer = _run(make_run, hours=4)
    _write(store, older)
    _write(store, newer)
    store.write([dataclasses.replace(newer[0], status="error", error_code="internal")], [])
    assert _latest(store) == {_key(older[0]): older[0].run_id}
    assert _index(store)[_key(older[0])]["finished_at"] == older[0].finished_at
    store.write([dataclasses.replace(older[0], status="error", error_code="internal")], [])
    assert _index(store) == {}


def test_none_key_parts_are_one_key_stored_as_empty_strings(store, make_run):
    unset = dict(config_hash=None, sampling_policy_version=None, pipeline_version=None)
    first = _run(make_run, hours=0, **unset)
    second = _run(make_run, hours=1, **unset)
    partial = _run(make_run, hours=2, pipeline_version=None)
    for written in (first, second, partial):
        _write(store, written)
    assert _latest(store) == {("youtube", "v1", "", "", ""): second[0].run_id,
                              ("youtube", "v1", partial[0].config_hash, "sp-2", ""):
                                  partial[0].run_id}
    assert store.latest_success("youtube", "v1", config_hash=None,
                                sampling_policy_version=None,
                                pipeline_version=None).latest_success_run_id \
        == second[0].run_id


def test_every_key_part_separates_rows(store, make_run):
    base = _run(make_run, hours=0)
    variants = [_run(make_run, hours=1, video_id="v2"),
                _run(make_run, hours=1, platform_id="vimeo"),
                _run(make_run, hours=1, config_hash="e" * 64),
                _run(make_run, hours=1, sampling_policy_version="sp-3"),
                _run(make_run, hours=1, pipeline_version="1.5.0")]
    for written in (base, *variants):
        _write(store, written)
    assert _latest(store) == {_key(r): r.run_id for r, _ in (base, *variants)}


def test_deleting_the_indexed_run_removes_its_row(store, make_run):
    run, components = _run(make_run, hours=0)
    store.write([run], components)
    with store.engine.begin() as conn:
        conn.execute(RUNS.delete().where(RUNS.c.run_id == run.run_id))
    assert _index(store) == {}


def test_an_invalid_batch_indexes_nothing(store, make_run):
    good = _run(make_run, hours=0)
    bad = _run(make_run, hours=1)
    bad[1][0].status = "failed"
    with pytest.raises(InvalidRecordError):
        store.write([good[0], bad[0]], good[1] + bad[1])
    assert _index(store) == {}
