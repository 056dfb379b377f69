"""Sinks as a user relies on them: never break the pipeline, never hide a failure."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import jsonschema
import pytest

import mlobs
from mlobs.core.manifest import read_manifest
from mlobs.recording.recorder import get_recorder, set_recorder
from support.unprintable import Unprintable

SCHEMA = json.loads((__import__("pathlib").Path(__file__).parents[2] / "docs" /
                     "manifest.schema.json").read_text())


class ExplodingSink:
    name = "exploding"
    calls = 0

    def export(self, items):
        ExplodingSink.calls += 1
        raise OSError("disk on fire")

    def force_flush(self, timeout_s):
        raise OSError("flush on fire")

    def shutdown(self, timeout_s):
        raise OSError("shutdown on fire")


def pipeline(run):
    out = []
    with run.component("cleaning") as c:
        out.append("clean")
        c.set_items(3)
    with run.component("faces") as c:
        c.empty("no_faces")
    return out


@pytest.fixture
def root(tmp_path):
    yield tmp_path
    set_recorder(None)


def test_a_sink_that_always_raises_changes_nothing_and_is_counted(root):
    mlobs.configure(root=root, sinks=["manifest"], extra_sinks=[ExplodingSink()])
    with mlobs.run("youtube", "abc") as run:
        result = pipeline(run)
    assert result == ["clean"] and run.status == "ok"
    stats = {s.name: s for s in mlobs.sink_stats()}
    # The run's start, its two components and its final record fail; the final record
    # then goes out once more, carrying the warning.
    assert stats["exploding"].failed == 5 and stats["exploding"].exported == 0
    assert "on fire" in stats["exploding"].last_error
    assert stats["manifest"].failed == 0 and stats["manifest"].exported == 5
    record, components = read_manifest(run.manifest_path)
    assert [c.component for c in components] == ["cleaning", "faces"]
    assert any("'exploding' failed to export 4 record(s)" in w for w in record.warnings)


class ExplodingLocalSink(ExplodingSink):
    name = "exploding-local"
    local = True  # shares the manifest sink's worker thread


def test_local_sinks_share_one_thread_and_one_failing_leaves_the_other_whole(root):
    mlobs.configure(root=root, sinks=["manifest"], extra_sinks=[ExplodingLocalSink()])
    with mlobs.run("youtube", "abc") as run:
        pipeline(run)
    workers = get_recorder().workers
    assert [[s.name for s in w.sinks] for w in workers] == [["manifest", "exploding-local"]]
    stats = {s.name: s for s in mlobs.sink_stats()}
    assert stats["exploding-local"].failed == 5 and stats["exploding-local"].exported == 0
    assert stats["manifest"].failed == 0 and stats["manifest"].exported == 5
    record, components = read_manifest(run.manifest_path)
    assert [c.component for c in components] == ["cleaning", "faces"]
    # Only the failing sink is named in the run's warnings.
    failures = [w for w in record.warnings if "failed to export" in w]
    assert len(failures) == 1
    assert failures[0].startswith("sink 'exploding-local' failed to export 4 record(s)")


class UnprintableSink:
    name = "unprintable"

    def export(self, items):
        raise Unprintable()

    def force_flush(self, timeout_s):
        return True

    def shutdown(self, timeout_s):
        pass


def test_a_sink_error_whose_message_cannot_be_read_is_counted_and_the_sink_goes_on(root):
    mlobs.configure(root=root, sinks=["manifest"], extra_sinks=[UnprintableSink()])
    for video in ("abc", "def"):  # the second run finds the sink's thread still at work
        with mlobs.run("youtube", video, flush_timeout_s=5) as run:
            pipeline(run)
        assert run.status == "ok"
    stats = {s.name: s for s in mlobs.sink_stats()}
    assert stats["unprintable"].failed == 10 and stats["unprintable"].exported == 0
    assert stats["unprintable"].last_error == (
        "Unprintable: <unprintable Unprintable: RuntimeError: no message>")
    record, _ = read_manifest(run.manifest_path)
    assert any("'unprintable' failed to export 4 record(s)" in w for w in record.warnings)


def test_manifest_validates_and_is_rewritten_after_each_component(root):
    mlobs.configure(root=root, sinks=["manifest"])
    with mlobs.run("youtube", "abc", pipeline_version="1.0", config={"k": 1}) as run:
        with run.component("cleaning"):
            pass
        mlobs.flush()
        during = json.loads(run.manifest_path.read_text())
        assert during["status"] == "running" and len(during["components"]) == 1
        jsonschema.validate(during, SCHEMA)
        with run.component("asr", models=[mlobs.ModelRef("whisper", "1", "sha256:00",
                                                         engine="torch", device="cuda:0")]):
            raise mlobs.Empty("no_speech")
    after = json.loads(run.manifest_path.read_text())
    jsonschema.validate(after, SCHEMA)
    assert after["schema"] == "mlobs.manifest/1" and after["status"] == "ok"
    assert [c["status"] for c in after["components"]] == ["ok", "empty"]
    assert after["components"][1]["model_signature"] == mlobs.model_signature(
        [mlobs.ModelRef("whisper", "1", "sha256:00", engine="torch", device="cuda:0")])


def test_identifiers_cannot_escape_the_runs_directory(root):
    mlobs.configure(root=root, sinks=["manifest"])
    with mlobs.run("../../etc", "/abs/../..") as run:
        pass
    assert run.manifest_path.resolve().is_relative_to((root / "runs").resolve())
    assert run.manifest_path.exists()


KILLED_PIPELINE = textwrap.dedent("""
    import sys, time, mlobs
    mlobs.configure(root=sys.argv[1], sinks=["manifest"])
    with mlobs.run("youtube", "killed") as run:
        for i in range(3):
            with run.component(f"stage{i}"):
                pass
        mlobs.flush()
        print(run.manifest_path, flush=True)
        with run.component("stuck"):
            time.sleep(60)
""")


def test_a_run_killed_with_sigkill_leaves_a_valid_running_manifest(root):
    proc = subprocess.Popen([sys.executable, "-c", KILLED_PIPELINE, str(root)],
                            stdout=subprocess.PIPE, text=True)
    try:
        path = proc.stdout.readline().strip()
        time.sleep(0.2)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert path, "the pipeline did not start"
    document = json.loads(open(path).read())
    jsonschema.validate(document, SCHEMA)
    assert document["status"] == "running"
    assert [c["component"] for c in document["components"]] == ["stage0", "stage1", "stage2"]
    assert not [p for p in os.listdir(os.path.dirname(path)) if p.endswith(".tmp")]


def test_records_queued_at_interpreter_exit_are_flushed(root):
    script = textwrap.dedent("""
        import sys, mlobs
        mlobs.configure(root=sys.argv[1], sinks=["manifest"])
        run = mlobs.run("youtube", "atexit")
        with run:
            with run.component("only"):
                pass
        print(run.manifest_path)
    """)
    out = subprocess.run([sys.executable, "-c", script, str(root)], capture_output=True,
                         text=True, check=True).stdout.strip()
    record, components = read_manifest(out)
    assert record.status == "ok" and [c.component for c in components] == ["only"]


def test_a_record_the_warehouse_refuses_keeps_only_its_own_run_out(root):
    from mlobs.warehouse.store import WarehouseStore
    db_url = f"sqlite:///{root / 'wh.db'}"
    mlobs.configure(root=root, db_url=db_url, sinks=["manifest", "warehouse"])
    from mlobs.warehouse.migrate import upgrade
    upgrade(db_url)
    with mlobs.run("youtube", "good") as good:
        with good.component("asr"):
            pass
    with mlobs.run("youtube", "bad") as bad:
        with bad.component("asr") as c:
            c.items = 2**70  # corrupted on purpose: out of range for the warehouse
    warehouse = {s.name: s for s in mlobs.sink_stats()}["warehouse"]
    assert warehouse.failed >= 1 and "items" in warehouse.last_error
    store = WarehouseStore(db_url)
    assert store.get_run(good.run_id) is not None
    stored_bad = store.get_run(bad.run_id)
    assert stored_bad is None or stored_bad[1] == []
    store.close()
    record, components = read_manifest(bad.manifest_path)
    assert components[0].items == 2**70  # the manifest keeps what the warehouse refused
    assert any("'warehouse' failed" in w for w in record.warnings)
    assert not any("failed" in w for w in read_manifest(good.manifest_path)[0].warnings)


def test_a_refused_record_does_not_keep_other_runs_of_its_batch_out(tmp_path):
    from datetime import datetime, timezone

    from mlobs.core.errors import InvalidRecordError
    from mlobs.core.records import ComponentRecord, RunRecord
    from mlobs.sinks.warehouse_sink import WarehouseSink
    from mlobs.warehouse.store import WarehouseStore

    now = datetime.now(timezone.utc)

    def run_and_component(run_id, items):
        run = RunRecord(run_id=run_id, platform_id="youtube", video_id=run_id, status="ok",
                        started_at=now)
        component = ComponentRecord(component_run_id=f"{run_id}-asr", run_id=run_id,
                                    component="asr", attempt=1, required=True, status="ok",
                                    started_at=now, finished_at=now, duration_ms=1.0,
                                    items=items)
        return [run, component]

    db_url = f"sqlite:///{tmp_path / 'wh.db'}"
    sink = WarehouseSink(db_url, manage_schema=True)
    batch = run_and_component("good-1", 3) + run_and_component("bad", 2**70) \
        + run_and_component("good-2", 4)
    with pytest.raises(InvalidRecordError) as refused:
        sink.export(batch)
    assert refused.value.run_ids == {"bad"}
    assert refused.value.refused == ("bad",)  # the one record, not its run's others
    sink.shutdown(1)
    store = WarehouseStore(db_url)
    assert store.run_statuses(["good-1", "bad", "good-2"]) == {
        "good-1": "ok", "bad": "ok", "good-2": "ok"}
    assert store.component_counts(["good-1", "bad", "good-2"]) == {"good-1": 1, "good-2": 1}
    store.close()


class OrderedLocalSink:
    """A local sink that notes its calls in a shared list; a two-phase one answers its
    flush ``answer_after_s`` after it began."""

    local = True

    def __init__(self, name, calls, *, two_phase=False, answer_after_s=0.0):
        self.name, self.calls, self.exported = name, calls, []
        if two_phase:
            self.answer_after_s = answer_after_s
            self.begin_flush = self._begin
            self.finish_flush = self._finish

    def _begin(self, timeout_s):
        self.calls.append(f"{self.name}.begin_flush")
        self.answer_at = time.monotonic() + self.answer_after_s

    def _finish(self, wait_s):
        time.sleep(max(0.0, min(wait_s, self.answer_at - time.monotonic())))
        done = time.monotonic() >= self.answer_at
        if done:
            self.calls.append(f"{self.name}.finish_flush")
        return done

    def export(self, records):
        self.exported += [(time.monotonic(), r) for r in records]

    def force_flush(self, timeout_s):
        self.calls.append(f"{self.name}.force_flush")
        return True

    def shutdown(self, timeout_s):
        pass


def test_a_two_phase_flush_overlaps_the_other_sinks_flushes_on_its_worker(root):
    calls = []
    mlobs.configure(root=root, sinks=[], extra_sinks=[
        OrderedLocalSink("files", calls), OrderedLocalSink("writer", calls, two_phase=True)])
    with mlobs.run("youtube", "abc") as run:
        pipeline(run)
    calls.clear()
    assert mlobs.flush(5)
    # The writer's flush is under way while the other sink flushes, then collected.
    assert calls == ["writer.begin_flush", "files.force_flush", "writer.finish_flush"]


def test_records_reach_the_other_sinks_while_a_slow_two_phase_flush_waits(root):
    calls = []
    files = OrderedLocalSink("files", calls)
    mlobs.configure(root=root, sinks=[], extra_sinks=[
        files, OrderedLocalSink("writer", calls, two_phase=True, answer_after_s=2.0)])
    run = mlobs.run("youtube", "abc", flush_timeout_s=10)
    run.__enter__()
    flushing = threading.Thread(target=mlobs.flush, args=(10,))
    began = time.monotonic()
    flushing.start()
    time.sleep(0.2)  # the worker now waits for the slow sink's answer
    with run.component("during"):
        pass
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline and not any(
            getattr(r, "component", None) == "during" for _, r in files.exported):
        time.sleep(0.01)
    exported_at = next((at for at, r in files.exported
                        if getattr(r, "component", None) == "during"), None)
    assert exported_at is not None and exported_at - began < 1.5, (
        "the record waited for the slow sink's 2 s flush")
    flushing.join()
    run.__exit__(None, None, None)
