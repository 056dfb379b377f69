"""A run's manifest assembled from the warehouse (what the Celery integration's
orchestrating process writes at the run's end)."""

from __future__ import annotations

import dataclasses

import pytest

from mlobs.core.errors import WarehouseError
from mlobs.core.manifest import read_manifest
from mlobs.warehouse.assembly import assemble_manifest
from mlobs.warehouse.store import WarehouseStore


def test_the_manifest_holds_the_stored_run_in_finishing_order(db_url, make_run, tmp_path):
    run, components = make_run(status="ok")
    with WarehouseStore(db_url, manage_schema=True) as store:
        store.write([run], components)
        done = assemble_manifest(store, run.run_id, tmp_path / "runs",
                                 expected={c.component_run_id: c.component
                                           for c in components if c.status != "error"})
    assert done.missing == []
    stored_run, stored = read_manifest(done.path)
    assert done.path == tmp_path / "runs" / run.platform_id / run.video_id / run.run_id / \
        "manifest.json"
    assert stored_run == run
    assert stored == sorted(components, key=lambda c: (c.finished_at, c.component_run_id))


def test_records_that_never_arrive_are_named_after_the_timeout(db_url, make_run, tmp_path):
    run, components = make_run(status="ok")
    late = dataclasses.replace(components[0], component_run_id="late-id")
    with WarehouseStore(db_url, manage_schema=True) as store:
        store.write([run], components)
        done = assemble_manifest(store, run.run_id, tmp_path, timeout_s=0.3,
                                 expected={late.component_run_id: "task asr [t-1]"},
                                 warnings=["task ocr [t-2] had not finished"])
        assert done.missing == ["late-id"]
        stored_run, stored = read_manifest(done.path)
        assert stored_run.warnings[-2:] == [
            "task ocr [t-2] had not finished",
            "the record of task asr [t-1] did not reach the warehouse within 0.3 s"]
        assert len(stored) == len(components)
        assert store.get_run(run.run_id)[0] == stored_run  # written back as well


def test_other_processes_records_are_judged_by_the_run_status_rule(db_url, make_run,
                                                                   tmp_path):
    run, components = make_run(status="ok")
    required = dataclasses.replace(components[0], component_run_id="task-1", required=True,
                                   status="error", error_code="timeout",
                                   error_message="upstream timed out", events=[])
    optional = dataclasses.replace(components[1], component_run_id="task-2", required=False,
                                   status="error", error_code="transient",
                                   error_message="refused", events=[])
    local_failure = dataclasses.replace(components[2], component_run_id="local",
                                        required=True, status="error", events=[])
    with WarehouseStore(db_url, manage_schema=True) as store:
        store.write([run], [*components, required, optional, local_failure])
        done = assemble_manifest(store, run.run_id, tmp_path,
                                 expected={"task-1": "task a", "task-2": "task b"})
        assert (done.run.status, done.run.error_code) == ("error", "timeout")
        assert done.run.error_message == "required component " + \
            f"{required.component!r} failed: upstream timed out"
        assert f"optional component {optional.component!r} failed: transient: refused" \
            in done.run.warnings
        assert store.get_run(run.run_id)[0] == done.run
        assert read_manifest(done.path)[0] == done.run
        # A second assembly adds nothing twice.
        again = assemble_manifest(store, run.run_id, tmp_path,
                                  expected={"task-1": "task a", "task-2": "task b"})
        assert again.run == done.run


class FakeClock:
    """``time`` for mlobs.warehouse.assembly: sleeping advances the clock at once."""

    def __init__(self):
        self.now = 0.0

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_unconfirmed_components_count_once_stored_and_are_named_otherwise(
        db_url, make_run, tmp_path, monkeypatch):
    """A Celery task whose stored state still says RETRY may have failed for good: the
    assembly waits its grace period for it, not the whole timeout."""
    import mlobs.warehouse.assembly
    clock = FakeClock()
    monkeypatch.setattr(mlobs.warehouse.assembly, "time", clock)
    run, components = make_run(status="ok")
    failed = dataclasses.replace(components[0], component_run_id="retried-task",
                                 required=True, status="error", error_code="timeout",
                                 error_message="upstream timed out", events=[])
    with WarehouseStore(db_url, manage_schema=True) as store:
        store.write([run], [*components, failed])
        done = assemble_manifest(
            store, run.run_id, tmp_path, timeout_s=30, unconfirmed_wait_s=0.5,
            unconfirmed={"retried-task": "task a had not finished (RETRY)",
                         "still-retrying": "task b had not finished (RETRY)"})
    assert (done.run.status, done.run.error_code) == ("error", "timeout")
    assert "task b had not finished (RETRY)" in done.run.warnings
    assert "task a had not finished (RETRY)" not in done.run.warnings
    assert done.missing == []  # unconfirmed ones are not "expected" until stored
    assert 0.5 <= clock.now < 30


def test_a_required_failure_without_a_message_names_its_error_code(db_url, make_run,
                                                                    tmp_path):
    run, components = make_run(status="ok")
    failed = dataclasses.replace(components[0], component_run_id="task-1", required=True,
                                 status="error", error_code="oom", error_message=None,
                                 events=[])
    with WarehouseStore(db_url, manage_schema=True) as store:
        store.write([run], [*components, failed])
        done = assemble_manifest(store, run.run_id, tmp_path, expected={"task-1": "t"})
    assert done.run.error_message == f"required component {failed.component!r} failed: oom"


def test_an_unknown_run_is_a_warehouse_error(db_url, tmp_path):
    with WarehouseStore(db_url, manage_schema=True) as store:
        with pytest.raises(WarehouseError, match="is not in the warehouse"):
            assemble_manifest(store, "no-such-run", tmp_path)


def test_a_run_still_running_in_the_warehouse_leaves_its_manifest_alone(db_url, make_run,
                                                                        tmp_path):
    """Its final record was spooled or is late: the manifest the run's own process
    wrote is kept, not replaced by the warehouse's older state."""
    from mlobs.core.manifest import manifest_document, write_manifest
    from mlobs.core.paths import manifest_path
    run, components = make_run(status="ok")
    path = manifest_path(tmp_path, run.platform_id, run.video_id, run.run_id)
    write_manifest(path, manifest_document(run, components))
    before = path.read_bytes()
    with WarehouseStore(db_url, manage_schema=True) as store:
        store.write([dataclasses.replace(run, status="running", finished_at=None)],
                    components)
        with pytest.raises(WarehouseError, match="still 'running'.*left as it is"):
            assemble_manifest(store, run.run_id, tmp_path, timeout_s=0.2)
    assert path.read_bytes() == before
