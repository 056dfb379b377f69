"""The default warehouse path: records go to the spool and a writer process loads them.
What a user relies on: a killed pipeline (``kill -9``) loses nothing it recorded, a killed
writer is replaced, and nothing reaches the warehouse twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import mlobs
from mlobs.cli.main import main
from mlobs.recording.recorder import get_recorder, set_recorder
from mlobs.sinks.spool import spool_files
from mlobs.sinks.writer_sink import WriterSink
from mlobs.warehouse.migrate import upgrade
from mlobs.warehouse.store import WarehouseStore


@pytest.fixture(autouse=True)
def _process_writer(monkeypatch):
    monkeypatch.delenv("MLOBS_DB_URL", raising=False)
    monkeypatch.delenv("MLOBS_WAREHOUSE_WRITER", raising=False)
    monkeypatch.setattr(WriterSink, "RETRY_INTERVAL_S", 0.05)
    yield
    set_recorder(None)


def configured(tmp_path) -> str:
    """Configure the default sinks on a fresh SQLite warehouse; its URL."""
    db_url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    upgrade(db_url)
    mlobs.configure(root=tmp_path, db_url=db_url)
    return db_url


def warehouse_sink() -> WriterSink:
    return get_recorder().sink("warehouse")


def warehouse_stats():
    return next(s for s in mlobs.sink_stats() if s.name == "warehouse")


def stored(db_url: str, run_id: str) -> tuple[str, list[str]] | None:
    """(status, component names sorted) of a run in the warehouse, or None."""
    with WarehouseStore(db_url) as store:
        found = store.get_run(run_id)
    if found is None:
        return None
    run, components = found
    return run.status, sorted(c.component for c in components)


def wait_for(predicate, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


# Records five components, makes sure the sink exported them (flush), records two more
# that only reach the spool, then hangs in a sixth: the test kills it there.
PIPELINE = textwrap.dedent("""
    import json, sys, time, mlobs
    from mlobs.recording.recorder import get_recorder
    mlobs.configure(root=sys.argv[1], db_url=sys.argv[2])
    with mlobs.run("youtube", "killed") as run:
        for i in range(5):
            with run.component(f"stage{i}"):
                pass
        mlobs.flush()
        for i in range(5, 7):
            with run.component(f"stage{i}"):
                pass
        recorder = get_recorder()
        stats = lambda: next(s for s in recorder.stats() if s.name == "warehouse")
        while stats().exported < 8:  # the run's start, then seven components
            time.sleep(0.01)
        writer = recorder.sink("warehouse")._writer._proc.pid
        print(json.dumps({"run_id": run.run_id, "writer": writer}), flush=True)
        with run.component("stuck"):
            time.sleep(60)
""")


def start_pipeline(root, db_url) -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen([sys.executable, "-c", PIPELINE, str(root), db_url],
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    line = proc.stdout.readline()
    assert line, "the pipeline did not start"
    return proc, json.loads(line)


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie (its parent was killed and init reaps it soon) counts as gone
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_a_pipeline_killed_with_sigkill_loses_nothing_it_exported(tmp_path):
    db_url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    upgrade(db_url)
    proc, facts = start_pipeline(tmp_path, db_url)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # The writer sees the end of its input, loads what is left and exits.
    assert wait_for(lambda: process_gone(facts["writer"]))
    assert stored(db_url, facts["run_id"]) == (
        "running", [f"stage{i}" for i in range(7)])
    assert spool_files(tmp_path / "spool") == []


def test_a_pipeline_and_its_writer_killed_together_leave_the_rest_in_the_spool(tmp_path,
                                                                                capsys):
    # The warehouse is away: the writer cannot load, records wait in the spool.
    blocker = tmp_path / "wh"
    blocker.write_text("a file where the warehouse's directory should be")
    proc, facts = start_pipeline(tmp_path / "root", f"sqlite:///{blocker / 'w.db'}")
    os.killpg(proc.pid, signal.SIGKILL)  # the pipeline and its writer at once
    proc.wait()
    assert wait_for(lambda: process_gone(facts["writer"]))
    assert spool_files(tmp_path / "root" / "spool")
    good = f"sqlite:///{tmp_path / 'good.db'}"
    upgrade(good)
    for _ in range(2):  # a second ingest finds nothing more and writes nothing twice
        assert main(["ingest", "--spool", "--root", str(tmp_path / "root"),
                     "--db-url", good]) == 0
        assert stored(good, facts["run_id"]) == ("running", [f"stage{i}" for i in range(7)])
    assert "nothing spooled" in capsys.readouterr().out


def test_a_killed_writer_is_replaced_and_every_record_arrives_once(tmp_path):
    db_url = configured(tmp_path)
    with mlobs.run("youtube", "writer-killed") as run:
        with run.component("before"):
            pass
        assert mlobs.flush()
        sink = warehouse_sink()
        first = sink._writer._proc
        first.kill()
        first.wait()
        with run.component("after"):
            pass
        assert mlobs.flush()
    assert sink._writer._proc is not first
    assert stored(db_url, run.run_id) == ("ok", ["after", "before"])
    stats = warehouse_stats()
    assert stats.failed == 0 and stats.dropped == 0


def test_a_refused_record_is_set_aside_and_counted_for_its_run(tmp_path):
    db_url = configured(tmp_path)
    with mlobs.run("youtube", "refused") as run:
        with run.component("good"):
            pass
        with run.component("bad") as c:
            c.items = 2**70  # out of range for the warehouse
    stats = warehouse_stats()
    assert stats.failed == 1 and "items" in stats.last_error
    assert stored(db_url, run.run_id) == ("ok", ["good"])
    rejected = (tmp_path / "spool" / "rejected.jsonl").read_text().splitlines()
    assert [json.loads(line)["line"]["record"]["component"] for line in rejected] == ["bad"]
    assert any("'warehouse' failed to export 1 record(s)" in w for w in run.record.warnings)


def test_a_writer_that_cannot_start_is_not_restarted_at_every_batch(tmp_path, monkeypatch,
                                                                    caplog):
    from mlobs.sinks import writer_process
    db_url = configured(tmp_path)
    sink = warehouse_sink()
    sink._writer.command = [sys.executable, "-c", "import sys; sys.exit(3)"]  # broken
    sink._writer.close(10)  # the writer started with the sink: the next one is broken
    starts = []
    real_popen = writer_process.subprocess.Popen
    monkeypatch.setattr(writer_process.subprocess, "Popen",
                        lambda *a, **k: starts.append(1) or real_popen(*a, **k))
    with caplog.at_level("ERROR", logger="mlobs.sinks"):
        for index in range(5):  # five runs, each with a flush at its end
            with mlobs.run("youtube", f"broken-{index}") as run:
                with run.component("asr"):
                    pass
    assert run.status == "ok"  # the pipeline never notices
    assert len(starts) <= 3  # backed off after the writer exited before answering
    stats = warehouse_stats()
    assert stats.failed == 0 and stats.dropped == 0
    assert "warehouse writer" in (stats.last_error or "")
    assert spool_files(tmp_path / "spool")  # every record waits for a working writer
    sink._writer.command = WriterSink(db_url, tmp_path / "spool")._writer.command
    sink._writer._next_start_at = 0.0
    assert mlobs.flush()
    with WarehouseStore(db_url) as store:
        assert len(store.list_runs(limit=10)) == 5
