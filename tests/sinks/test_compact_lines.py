"""The default sinks' path: compact spool lines built without records, and the manifests
the warehouse writer keeps for the pipeline's process."""

from __future__ import annotations

import os
import signal

import pytest

import mlobs
from mlobs.core.compact import FIELDS, record_from_compact
from mlobs.core.manifest import read_manifest
from mlobs.hooks.component import ComponentCall
from mlobs.recording.recorder import get_recorder
from mlobs.sinks.spool import decode, line_of
from mlobs.warehouse.store import WarehouseStore


def _finished_calls():
    calls = []
    mlobs.configure(sinks=[])
    with mlobs.run("youtube", "v1") as run:
        with run.component("asr", models=[mlobs.ModelRef("whisper", "small", device="cuda:1")],
                           producer_version="2", batch_size=8) as c:
            c.metric("wer", 0.125)
            c.metric("segments", 12)
            c.set_items(40)
            c.warn("audio clipped")
        calls.append(c)
        with run.component("clean", required=False) as c:
            raise ValueError("bad input")
        calls.append(c)
        with run.component("chunk") as c:
            c.empty("no_text")
        calls.append(c)
    return calls


def test_a_compact_line_decodes_to_the_record_the_invocation_builds():
    for call in _finished_calls():
        line = call.spool_line()
        assert line is not None and line.startswith(b"[1,") and line.endswith(b"\n")
        decoded = decode(line)
        assert decoded == call.record()
        assert decoded.started_at.tzinfo is not None


def test_an_invocation_with_events_or_a_built_record_writes_the_record_line():
    mlobs.configure(sinks=[])
    with mlobs.run("youtube", "v1") as run:
        with run.component("asr") as with_event:
            with_event.event("batch_note", size=3)
        with run.component("clean") as built:
            pass
    built.record()
    for call in (with_event, built):
        assert call.spool_line() is None
        line = line_of(call)
        assert line.startswith(b'{"type":"component"')
        assert decode(line) == call.record()


def test_a_shorter_compact_array_takes_the_record_defaults():
    [call, *_] = _finished_calls()
    row = [1, *call._record_values(call.component_run_id, compact=True)]
    required = FIELDS.index("empty_reason")
    record = record_from_compact(row[:required + 1])
    assert record.component == "asr" and record.metrics == {} and record.models_used == []
    with pytest.raises(ValueError, match="needs"):
        record_from_compact(row[:3])
    with pytest.raises(ValueError, match="version"):
        record_from_compact([2, *row[1:]])


def test_the_default_sinks_build_no_record_in_the_pipelines_process(tmp_path, monkeypatch):
    built = []
    build = ComponentCall._build_record
    monkeypatch.setattr(ComponentCall, "_build_record",
                        lambda self: built.append(self.name) or build(self))
    mlobs.configure(root=tmp_path)
    with mlobs.run("youtube", "v1") as run:
        for index in range(20):
            with run.component(f"step{index % 3}") as c:
                c.metric("score", index)
    assert mlobs.flush(30)
    assert built == []
    _, components = read_manifest(run.manifest_path)
    assert [c.metrics["score"] for c in components] == list(range(20))
    with WarehouseStore(mlobs.settings().db_url) as store:
        assert len(store.get_run(run.run_id)[1]) == 20


def test_a_writer_killed_mid_run_is_replaced_and_the_manifest_carries_on(tmp_path):
    mlobs.configure(root=tmp_path)
    with mlobs.run("youtube", "v1") as run:
        for index in range(3):
            with run.component(f"before{index}"):
                pass
        assert mlobs.flush(30)
        writer = get_recorder().sink("warehouse")._writer._proc
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(10)
        for index in range(2):
            with run.component(f"after{index}"):
                pass
        assert mlobs.flush(30)
        assert get_recorder().sink("warehouse")._writer._proc.pid != writer.pid
    stored_run, components = read_manifest(run.manifest_path)
    assert stored_run.status == "ok"
    assert [c.component for c in components] == [
        "before0", "before1", "before2", "after0", "after1"]
    with WarehouseStore(mlobs.settings().db_url) as store:
        assert len(store.get_run(run.run_id)[1]) == 5


def test_records_the_writers_manifests_cannot_take_are_counted_for_their_run(tmp_path):
    mlobs.configure(root=tmp_path)
    # The run's folder cannot be made: a file is where its video's folder goes.
    (tmp_path / "runs" / "youtube").mkdir(parents=True)
    (tmp_path / "runs" / "youtube" / "blocked").write_text("not a folder")
    with mlobs.run("youtube", "blocked") as run:
        with run.component("asr"):
            pass
    assert mlobs.flush(30)
    stats = {s.name: s for s in mlobs.sink_stats()}
    assert stats["manifest"].failed >= 2 and stats["warehouse"].failed == 0
    with WarehouseStore(mlobs.settings().db_url) as store:
        stored_run, components = store.get_run(run.run_id)
    assert [c.component for c in components] == ["asr"]
    assert any("sink 'manifest' failed" in warning for warning in stored_run.warnings), \
        stored_run.warnings


def test_a_process_that_records_nothing_leaves_no_warehouse(tmp_path):
    mlobs.configure(root=tmp_path)
    writer = get_recorder().sink("warehouse")._writer._proc  # started with the sinks
    assert writer is not None
    mlobs.configure(root=tmp_path / "elsewhere")  # shuts the first writer down
    assert writer.wait(10) == 0
    assert not (tmp_path / "warehouse.db").exists()


def test_a_spool_that_cannot_be_written_fails_the_warehouse_not_the_manifest(tmp_path):
    mlobs.configure(root=tmp_path)
    (tmp_path / "spool").write_text("a file where the spool's folder goes")
    with mlobs.run("youtube", "v1") as run:
        for name in ("asr", "clean"):
            with run.component(name):
                pass
    mlobs.flush(30)
    stats = {s.name: s for s in mlobs.sink_stats()}
    warehouse, manifest = stats["warehouse"], stats["manifest"]
    assert warehouse.failed == warehouse.enqueued >= 4 and warehouse.exported == 0
    assert manifest.failed == 0 and manifest.exported == manifest.enqueued
    stored_run, components = read_manifest(run.manifest_path)
    assert [c.component for c in components] == ["asr", "clean"]
    assert stored_run.status == "ok"
    assert any("sink 'warehouse' failed" in warning for warning in stored_run.warnings)


def test_a_small_spool_is_replayed_in_one_write_and_kept_whole_when_it_fails(tmp_path):
    from mlobs.core.errors import WarehouseError
    from mlobs.sinks.spool import Spool, spool_contents
    from mlobs.sinks.spool_replay import replay

    calls = _finished_calls()
    spool = Spool(tmp_path / "spool")
    spool.append([calls[0].run.record])
    spool.append_lines(b"".join(line_of(c) for c in calls))

    class Counting:
        def __init__(self, store, fail=False):
            self.store, self.fail, self.writes = store, fail, []

        def write(self, runs, components):
            if self.fail:
                raise WarehouseError("connection lost")
            self.writes.append((len(runs), len(components)))
            self.store.write(runs, components)

    with WarehouseStore(f"sqlite:///{tmp_path / 'w.db'}", manage_schema=True) as store:
        failing = Counting(store, fail=True)
        report = replay(tmp_path / "spool", failing)
        assert report.error and report.pending == 4
        assert spool_contents(tmp_path / "spool").waiting == 4
        counting = Counting(store)
        report = replay(tmp_path / "spool", counting)
        assert report.complete and (report.runs, report.components) == (1, 3)
        assert counting.writes == [(1, 3)]  # one transaction
        assert spool_contents(tmp_path / "spool").waiting == 0


def test_an_item_that_cannot_be_built_counts_once_for_each_sink_of_a_mixed_worker(
        tmp_path, broken_component):
    class LocalRecords:  # takes records, shares the worker of the lines' sinks
        name, local = "local-records", True

        def __init__(self):
            self.components = []

        def export(self, records):
            self.components += [r.component for r in records if hasattr(r, "component")]

        def force_flush(self, timeout_s):
            return True

        def shutdown(self, timeout_s):
            pass

    local = LocalRecords()
    mlobs.configure(root=tmp_path, extra_sinks=[local])
    assert [[s.name for s in w.sinks] for w in get_recorder().workers] == [
        ["manifest", "warehouse", "local-records"]]
    with mlobs.run("youtube", "v1") as run:
        for name in ("first", "broken", "last"):
            with run.component(name):
                pass
    assert mlobs.flush(30)
    stats = {s.name: s.failed for s in mlobs.sink_stats()}
    assert stats == {"manifest": 1, "warehouse": 1, "local-records": 1}
    assert local.components == ["first", "last"]
    assert [c.component for c in read_manifest(run.manifest_path)[1]] == ["first", "last"]
