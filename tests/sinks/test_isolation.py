"""One bad record is refused alone: never its batch, its run's other records or its run's
manifest (every sink)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

import mlobs
from mlobs.core.manifest import read_manifest
from mlobs.core.records import ComponentRecord, RunRecord
from mlobs.sinks.base import RecordsRefused
from mlobs.sinks.manifest_sink import ManifestSink
from mlobs.warehouse.store import WarehouseStore


def test_a_record_that_cannot_be_built_is_refused_alone_by_every_sink(tmp_path,
                                                                      broken_component):
    mlobs.configure(root=tmp_path)
    with mlobs.run("youtube", "v1") as run:
        for name in ("first", "broken", "last"):
            with run.component(name):
                pass
    assert mlobs.flush(10)
    manifest_run, components = read_manifest(run.manifest_path)
    assert [c.component for c in components] == ["first", "last"]
    assert any("manifest" in w and "1" in w for w in manifest_run.warnings), \
        manifest_run.warnings  # the run says a record is missing
    with WarehouseStore(mlobs.settings().db_url) as store:
        stored = store.get_run(run.run_id)
    assert stored is not None and stored[0].status == "ok"
    assert [c.component for c in stored[1]] == ["first", "last"]
    stats = {s.name: s for s in mlobs.sink_stats()}
    assert {name: s.failed for name, s in stats.items()} == {"manifest": 1, "warehouse": 1}


def test_the_manifest_sink_refuses_only_the_component_json_cannot_hold(tmp_path):
    now = datetime.now(timezone.utc)
    run = RunRecord(run_id="r1", platform_id="youtube", video_id="v1", status="ok",
                    started_at=now)

    def component(name, metrics):
        return ComponentRecord(component_run_id=f"r1-{name}", run_id="r1", component=name,
                               attempt=1, required=True, status="ok", started_at=now,
                               finished_at=now, duration_ms=1.0, metrics=metrics)

    sink = ManifestSink(tmp_path / "runs")
    with pytest.raises(RecordsRefused) as refused:
        sink.export([run, component("good", {"f1": 0.5}),
                     component("bad", {"f1": float("nan")})])
    assert refused.value.refused == ("r1",)
    assert "bad" in str(refused.value)
    manifests = list((tmp_path / "runs").rglob("manifest.json"))
    assert len(manifests) == 1
    stored_run, components = read_manifest(manifests[0])
    assert stored_run.status == "ok"
    assert [c.component for c in components] == ["good"]


def test_a_refused_run_record_takes_only_its_own_components(tmp_path):
    from mlobs.core.errors import InvalidRecordError
    from mlobs.sinks.warehouse_sink import WarehouseSink

    now = datetime.now(timezone.utc)

    def run_and_component(run_id, pipeline_version):
        run = RunRecord(run_id=run_id, platform_id="youtube", video_id=run_id, status="ok",
                        started_at=now, pipeline_version=pipeline_version)
        component = ComponentRecord(component_run_id=f"{run_id}-asr", run_id=run_id,
                                    component="asr", attempt=1, required=True, status="ok",
                                    started_at=now, finished_at=now, duration_ms=1.0)
        return [run, component]

    db_url = f"sqlite:///{tmp_path / 'wh.db'}"
    sink = WarehouseSink(db_url, manage_schema=True)
    with pytest.raises(InvalidRecordError) as refused:
        # a run record the store refuses (pipeline_version over its column), and its
        # component, which needs the run's row: both refused, the good run written
        sink.export(run_and_component("good", "1.0") + run_and_component("bad", "v" * 300))
    sink.shutdown(1)
    assert refused.value.refused == ("bad", "bad")
    with WarehouseStore(db_url) as store:
        assert store.run_statuses(["good", "bad"]) == {"good": "ok"}
        assert store.component_counts(["good", "bad"]) == {"good": 1}
