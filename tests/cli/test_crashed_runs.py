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
