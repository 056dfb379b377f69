"""What keeps recording cheap as a run grows: a running run's manifest is rewritten at a
pace set by its size (not after every batch), a flush or the run's end writes it at once,
a sink slower than the pipeline gets large batches, not a stream of tiny ones, an idle
worker does not wake, and records leave while a CPU-bound pipeline runs."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import mlobs
from mlobs.core.records import ComponentRecord, RunRecord
from mlobs.recording.recorder import set_recorder
from mlobs.sinks import manifest_sink
from mlobs.sinks.base import BatchWorker
from mlobs.sinks.manifest_sink import ManifestSink

NOW = datetime.now(timezone.utc)


def run_record(status: str = "running") -> RunRecord:
    return RunRecord(run_id="r1", platform_id="youtube", video_id="v1", status=status,
                     started_at=NOW)


def component(index: int) -> ComponentRecord:
    return ComponentRecord(component_run_id=f"r1-{index}", run_id="r1", component="asr",
                           attempt=index, required=True, status="ok", started_at=NOW,
                           finished_at=NOW, duration_ms=1.0)


def on_disk(sink: ManifestSink) -> dict:
    (path,) = list(sink.runs_dir.rglob("manifest.json"))
    return json.loads(path.read_text())


def test_a_running_manifest_is_rewritten_at_its_pace_and_a_flush_writes_it(tmp_path,
                                                                           monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(manifest_sink.time, "monotonic", lambda: clock[0])
    writes = []
    real_write = manifest_sink.write_manifest
    monkeypatch.setattr(manifest_sink, "write_manifest",
                        lambda path, data, durable=False: (writes.append(durable),
                                                           real_write(path, data,
                                                                      durable=durable)))
    sink = ManifestSink(tmp_path / "runs", rewrite_bytes_per_s=1000.0)
    sink.export([run_record(), component(1)])  # a new run: written at once
    assert len(writes) == 1 and len(on_disk(sink)["components"]) == 1
    for index in range(2, 50):  # about 400 bytes each: the next rewrite is seconds away
        sink.export([component(index)])
        sink.on_idle()
    assert len(writes) == 1
    clock[0] += 0.1
    sink.on_idle()
    assert len(writes) == 1  # still not due: the pace grows with the size
    clock[0] += 60.0
    sink.on_idle()  # due now: the pending components are written, valid JSON at once
    assert len(writes) == 2 and len(on_disk(sink)["components"]) == 49
    sink.export([component(50)])
    assert sink.force_flush(1.0) and len(on_disk(sink)["components"]) == 50
    sink.export([run_record("ok")])  # the end is written at once, durably
    assert writes[-1] is True and on_disk(sink)["status"] == "ok"


def test_rewrites_of_a_growing_run_stay_few(tmp_path):
    sink = ManifestSink(tmp_path / "runs")  # the default pace
    writes = 0
    real_write = sink._write

    def counting(run_id, doc):
        nonlocal writes
        writes += 1
        real_write(run_id, doc)

    sink._write = counting
    sink.export([run_record()])
    for index in range(1, 3001):  # a component per export, as fast as it can go
        sink.export([component(index)])
    assert writes < 300  # was one full rewrite per export: 3001
    assert sink.force_flush(1.0) and len(on_disk(sink)["components"]) == 3000


class SlowSink:
    name = "slow"

    def __init__(self):
        self.batches: list[int] = []

    def export(self, records):
        self.batches.append(len(records))
        time.sleep(0.02)

    def force_flush(self, timeout_s):
        return True

    def shutdown(self, timeout_s):
        pass


def test_a_slow_sink_gets_large_batches_while_the_pipeline_goes_on():
    sink = SlowSink()
    worker = BatchWorker(sink, flush_interval_s=0.05)
    sent = 0
    deadline = time.monotonic() + 0.6
    while time.monotonic() < deadline:  # one record every 0.5 ms
        worker.enqueue(component(sent))
        sent += 1
        time.sleep(0.0005)
    assert worker.force_flush(5.0)
    worker.shutdown(1.0)
    assert sum(sink.batches) == sent
    # One export per wake (50 ms) at most, not one per record that arrived meanwhile.
    assert len(sink.batches) <= 0.6 / 0.05 + 5, sink.batches


class IdleCountingSink:
    """Counts the worker's wakes (``on_idle`` follows each) and says whether it has
    deferred work."""

    name = "idle-counting"

    def __init__(self, pending: bool) -> None:
        self.pending = pending
        self.wakes = 0
        self.exported: list = []

    def export(self, records):
        self.exported.extend(records)

    def on_idle(self):
        self.wakes += 1

    def has_pending(self):
        return self.pending

    def force_flush(self, timeout_s):
        return True

    def shutdown(self, timeout_s):
        pass


def wait_until(predicate, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.005)
    return predicate()


def test_an_idle_worker_sleeps_until_an_item_arrives_and_then_exports_it_unasked():
    # A worker that woke on its timer with nothing to do took the GIL from the pipeline
    # twenty times a second, for as long as the process lived.
    sink = IdleCountingSink(pending=False)
    worker = BatchWorker(sink, flush_interval_s=0.02)
    worker.enqueue(component(0))
    assert wait_until(lambda: len(sink.exported) == 1)
    time.sleep(0.05)  # the wake that found the queue empty
    idle_wakes = sink.wakes
    time.sleep(0.4)  # 20 intervals
    assert sink.wakes == idle_wakes, "an idle worker kept waking"
    worker.enqueue(component(1))  # no flush asked: the item alone wakes it
    assert wait_until(lambda: len(sink.exported) == 2)
    worker.shutdown(1.0)


def test_a_worker_whose_sink_has_deferred_work_keeps_its_pace():
    sink = IdleCountingSink(pending=True)
    worker = BatchWorker(sink, flush_interval_s=0.02)
    worker.enqueue(component(0))
    assert wait_until(lambda: len(sink.exported) == 1)
    wakes = sink.wakes
    assert wait_until(lambda: sink.wakes >= wakes + 5, timeout_s=2.0)
    sink.pending = False  # done: the worker stops waking
    time.sleep(0.1)
    settled = sink.wakes
    time.sleep(0.2)
    assert sink.wakes == settled
    worker.shutdown(1.0)


def test_records_leave_the_pipeline_while_a_cpu_bound_pipeline_runs(tmp_path):
    # The pipeline's thread let go of the GIL around each component's memory probe and
    # took it straight back; CPython's waiting sink thread then never asked for it, and
    # the whole run's records were exported at its end, which waited for them.
    mlobs.configure(root=tmp_path)  # the default sinks

    @mlobs.component("busy")
    def busy() -> None:  # holds the GIL for 0.5 ms
        end = time.perf_counter() + 0.0005
        while time.perf_counter() < end:
            pass

    components = 1000
    try:
        with mlobs.run("youtube", "v1"):
            for _ in range(components):
                busy()
            exported = {s.name: s.exported for s in mlobs.sink_stats()}
        assert mlobs.flush(10)
    finally:
        set_recorder(None)
    # Exported by then: all but the last few wakes' worth (50 ms each: 100 components).
    assert exported["warehouse"] >= components // 2, exported
