"""A process forked while mlobs records (torch DataLoader workers, multiprocessing pools)
must neither hold its parent's spool lock nor write its parent's manifests."""

from __future__ import annotations

import fcntl
import json
import os
import time
from datetime import datetime, timezone

from mlobs.core.records import ComponentRecord, RunRecord
from mlobs.sinks.base import BatchWorker
from mlobs.sinks.manifest_sink import ManifestSink
from mlobs.sinks.spool import flock

NOW = datetime.now(timezone.utc)


def run_record(run_id: str, status: str = "running") -> RunRecord:
    return RunRecord(run_id=run_id, platform_id="youtube", video_id=run_id, status=status,
                     started_at=NOW)


def component_record(run_id: str, name: str) -> ComponentRecord:
    return ComponentRecord(component_run_id=f"{run_id}-{name}", run_id=run_id,
                           component=name, attempt=1, required=True, status="ok",
                           started_at=NOW, finished_at=NOW, duration_ms=1.0)


def test_a_child_forked_under_the_spool_lock_does_not_keep_it(tmp_path):
    lock = tmp_path / ".lock"
    started_read, started_write = os.pipe()
    with flock(lock):
        pid = os.fork()
        if pid == 0:  # the child lives on for a while, doing nothing with the lock
            os.write(started_write, b"x")
            time.sleep(2)
            os._exit(0)
    os.read(started_read, 1)  # the child runs (its fork hooks ran before it wrote)
    try:
        fd = os.open(lock, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError before
        finally:
            os.close(fd)
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)


def test_a_forked_child_never_writes_its_parents_manifest(tmp_path):
    sink = ManifestSink(tmp_path / "runs", rewrite_bytes_per_s=1.0)  # rewrites far apart
    worker = BatchWorker(sink)
    sink.export([run_record("r1"), component_record("r1", "first")])
    sink.export([component_record("r1", "second")])  # not written yet: paced
    done_read, done_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        worker.after_fork_in_child()  # what the recorder's fork hook does
        os.read(done_read, 1)  # wait until the parent finished its run
        sink.force_flush(1.0)
        os._exit(0)
    sink.export([component_record("r1", "third"), run_record("r1", status="ok")])
    os.write(done_write, b"x")
    os.waitpid(pid, 0)
    (path,) = list((tmp_path / "runs").rglob("manifest.json"))
    document = json.loads(path.read_text())
    assert document["status"] == "ok"
    assert [c["component"] for c in document["components"]] == ["first", "second", "third"]
