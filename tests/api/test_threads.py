"""Components called from worker threads land in the run that submitted the work, with any
number of runs open at once; a call whose run cannot be known is counted and reported."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

import mlobs
from mlobs.testing import capture
from mlobs.warehouse.migrate import upgrade
from mlobs.warehouse.store import WarehouseStore

RUNS = 4
CALLS = 3


@mlobs.component("tile")
def tile(video: str, i: int) -> str:
    # The component sees the run it was submitted from.
    run = mlobs.current_run()
    return f"{video}:{i}:{run.record.video_id if run else None}"


def _fan_out(shared: ThreadPoolExecutor | None, barrier: threading.Barrier,
             results: dict[str, object]) -> None:
    video = threading.current_thread().name
    with mlobs.run("youtube", video) as run:
        barrier.wait(timeout=30)  # every run is open before any work is submitted
        if shared is None:
            with ThreadPoolExecutor(max_workers=2) as pool:
                outputs = list(pool.map(tile, [video] * CALLS, range(CALLS)))
        else:
            outputs = [f.result() for f in [shared.submit(tile, video, i)
                                             for i in range(CALLS)]]
        barrier.wait(timeout=30)  # ... and stays open until every run has done its work
    results[video] = (run.run_id, outputs)


@pytest.mark.parametrize("pool", ["own", "shared"])
def test_four_runs_each_fanning_out_record_every_call_in_its_run(db_url, tmp_path, pool):
    upgrade(db_url)
    mlobs.configure(root=tmp_path / "root", db_url=db_url)
    barrier = threading.Barrier(RUNS)
    results: dict[str, object] = {}
    shared = ThreadPoolExecutor(max_workers=3) if pool == "shared" else None
    threads = [threading.Thread(target=_fan_out, args=(shared, barrier, results),
                                name=f"video{n}") for n in range(RUNS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if shared is not None:
        shared.shutdown()
    assert mlobs.flush(10)
    assert len(results) == RUNS
    with WarehouseStore(db_url) as store:
        for video, (run_id, outputs) in results.items():
            assert outputs == [f"{video}:{i}:{video}" for i in range(CALLS)]
            stored = store.get_run(run_id)
            assert stored is not None
            record, components = stored
            assert record.status == "ok"
            assert [c.component for c in components] == ["tile"] * CALLS
            assert not [w for w in record.warnings if "not recorded" in w]


def test_run_wrap_binds_a_hand_made_thread_to_its_run():
    with capture() as captured:
        with mlobs.run("youtube", "a") as a, mlobs.run("youtube", "b"):
            thread = threading.Thread(target=a.wrap(tile), args=("a", 0))
            thread.start()
            thread.join()
            mlobs.flush(5)
    assert [(c.run_id, c.component) for c in captured.components] == [(a.run_id, "tile")]


def test_propagate_carries_the_callers_run_into_a_thread():
    with capture() as captured:
        with mlobs.run("youtube", "a"), mlobs.run("youtube", "b"):
            with mlobs.run("youtube", "c") as c:
                fn = mlobs.propagate(tile)
            thread = threading.Thread(target=fn, args=("c", 1))
            thread.start()
            thread.join()
            mlobs.flush(5)
    assert [record.run_id for record in captured.components] == [c.run_id]


def test_a_call_whose_run_cannot_be_known_is_counted_and_reported(caplog):
    with capture() as captured, caplog.at_level(logging.WARNING, logger="mlobs"):
        with mlobs.run("youtube", "a") as a, mlobs.run("youtube", "b") as b:
            # A hand-made thread carries no context: two runs are open, so it is unknown.
            for _ in range(2):
                thread = threading.Thread(target=tile, args=("?", 0))
                thread.start()
                thread.join()
    assert captured.components == []
    assert mlobs.unattributed_calls() == {"tile": 2}
    for run in (a, b):
        assert any("2 call(s) of tile" in w and "not recorded" in w
                   for w in run.record.warnings), run.record.warnings
    logged = [r for r in caplog.records if "not recorded" in r.getMessage()]
    assert len(logged) == 1  # once, not per call


def test_a_joined_run_carries_its_context_into_a_pool_too():
    """A Celery worker never opens a run of its own: joining one installs the propagation."""
    import subprocess
    import sys
    script = """
import mlobs
from concurrent.futures import ThreadPoolExecutor
from mlobs.core.propagation import RunContext
from mlobs.hooks.joined_run import JoinedRun
from mlobs.recording.recorder import get_recorder
from mlobs.testing import capture

@mlobs.component("ocr")
def ocr():
    return mlobs.current_run().run_id

with capture() as captured:
    with JoinedRun(get_recorder(), RunContext("r1", "youtube", "v1")):
        with JoinedRun(get_recorder(), RunContext("r2", "youtube", "v2")) as joined:
            with ThreadPoolExecutor(2) as pool:
                print(pool.submit(ocr).result(), mlobs.unattributed_calls())
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    assert out == ["r2", "{}"]
