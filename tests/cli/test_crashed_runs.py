"""A pipeline killed mid-run (SIGKILL) is shown ``crashed`` once its heartbeat is older than
the bound, by ``mlobs runs list`` and ``mlobs doctor``; ``mlobs doctor --fix`` writes
``crashed`` into the warehouse and the manifest. A run whose process lives is not."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

from mlobs.cli.main import main
from mlobs.core.manifest import read_manifest
from mlobs.warehouse.store import WarehouseStore

PIPELINE = textwrap.dedent("""
    import sys, time
    import mlobs
    mlobs.configure(root=sys.argv[1])
    with mlobs.run("youtube", sys.argv[2]) as run:
        with run.component("decode"):
            pass
        mlobs.flush(10)
        print(run.run_id, run.manifest_path, flush=True)
        time.sleep(600)  # "working" until killed
""")


def _start(root, video):
    env = {**os.environ, "MLOBS_HEARTBEAT_INTERVAL_S": "0.2"}
    proc = subprocess.Popen([sys.executable, "-c", PIPELINE, str(root), video],
                            stdout=subprocess.PIPE, text=True, env=env)
    run_id, manifest = proc.stdout.readline().split()
    return proc, run_id, manifest


def _listed(capsys, root, *extra):
    assert main(["runs", "list", "--json", "--db-url",
                 f"sqlite:///{root / 'warehouse.db'}", *extra]) == 0
    return {r["run_id"]: r["status_shown"] for r in json.loads(capsys.readouterr().out)}


def test_a_killed_pipeline_is_shown_crashed_and_doctor_fix_marks_it(tmp_path, capsys):
    root = tmp_path / "root"
    killed, dead_id, dead_manifest = _start(root, "killed")
    alive, live_id, _ = _start(root, "alive")
    try:
        time.sleep(0.6)  # a few heartbeats of both
        killed.send_signal(signal.SIGKILL)
        killed.wait(10)
        time.sleep(1.5)  # longer than --stale-after 1 for the dead one only
        db_url = f"sqlite:///{root / 'warehouse.db'}"
        with WarehouseStore(db_url) as store:
            dead = store.get_run(dead_id)[0]
        assert dead.status == "running"  # nothing wrote its end ...
        assert dead.heartbeat_at > dead.started_at  # ... but its heartbeats reached the row
        assert _listed(capsys, root, "--stale-after", "1") == {dead_id: "crashed",
                                                                 live_id: "running"}
        assert _listed(capsys, root, "--stale-after", "1", "--status", "crashed") == {
            dead_id: "crashed"}

        args = ["doctor", "--root", str(root), "--stale-after", "1"]
        main(args)
        report = capsys.readouterr().out
        assert "[FAIL] runs" in report and "1 run(s) still running" in report
        assert "mlobs doctor --fix" in report

        main([*args, "--fix"])
        assert "marked crashed: 1 in the warehouse, 1 manifest(s)" in capsys.readouterr().out
        with WarehouseStore(db_url) as store:
            marked = store.get_run(dead_id)[0]
            assert store.get_run(live_id)[0].status == "running"
        assert (marked.status, marked.error_code) == ("crashed", "crashed")
        assert marked.finished_at == dead.heartbeat_at
        manifest_run, components = read_manifest(dead_manifest)
        assert manifest_run.status == "crashed" and [c.component for c in components] == [
            "decode"]
        main(args)
        assert "[ok  ] runs" in capsys.readouterr().out
    finally:
        for proc in (killed, alive):
            proc.kill()
            proc.wait(10)


def test_a_crashed_mark_never_replaces_an_end_and_an_end_replaces_a_mark(db_url, make_run):
    """The store's rule: running < crashed < ok/error (a manifest marked crashed and
    ingested later must not undo the end the warehouse already holds)."""
    import dataclasses

    from mlobs.core.liveness import mark_crashed
    from mlobs.warehouse.migrate import upgrade

    upgrade(db_url)
    finished, components = make_run(status="ok")
    running = dataclasses.replace(finished, status="running", finished_at=None)
    with WarehouseStore(db_url) as store:
        store.write([finished], components)
        store.write([mark_crashed(running)], [])
        assert store.run_statuses([finished.run_id]) == {finished.run_id: "ok"}
        other, _ = make_run(status="running")
        store.write([mark_crashed(other)], [])
        store.write([other], [])  # a late heartbeat does not undo the mark
        assert store.run_statuses([other.run_id]) == {other.run_id: "crashed"}
        store.write([dataclasses.replace(other, status="ok")], [])  # its own end does
        assert store.run_statuses([other.run_id]) == {other.run_id: "ok"}


def test_doctor_fix_leaves_a_manifest_whose_run_the_warehouse_holds_finished(
        tmp_path, capsys):
    import dataclasses
    from datetime import timedelta

    import mlobs
    from mlobs.core.manifest import manifest_document, write_manifest

    root = tmp_path / "root"
    mlobs.configure(root=root)
    with mlobs.run("youtube", "v1") as run:
        pass
    assert mlobs.flush(10)
    stored, components = read_manifest(run.manifest_path)
    # the final manifest write was lost: the file still says running, long ago
    stale = dataclasses.replace(stored, status="running", finished_at=None,
                                heartbeat_at=stored.started_at - timedelta(hours=1),
                                started_at=stored.started_at - timedelta(hours=1))
    write_manifest(run.manifest_path, manifest_document(stale, components))
    main(["doctor", "--root", str(root), "--fix"])
    report = capsys.readouterr().out
    assert "[ok  ] runs" in report and "behind their manifest" in report
    assert read_manifest(run.manifest_path)[0].status == "running"  # for `mlobs ingest`
