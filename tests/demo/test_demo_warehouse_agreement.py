"""The demo's three outputs agree: manifests (valid against the published schema), the
warehouse rows (field for field, the artifact index included), and the rollup (against a
direct SQL computation)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from sqlalchemy import create_engine, text

pytest.importorskip("sklearn")

import mlobs  # noqa: E402
from mlobs.analysis.rollup import compute_rollup  # noqa: E402
from mlobs.analysis.rollup_sql import UNKNOWN_MISS_REASON  # noqa: E402
from mlobs.core.manifest import read_manifest  # noqa: E402
from mlobs.demo.runner import run_demo  # noqa: E402
from mlobs.warehouse.reuse import reusable_run  # noqa: E402
from mlobs.warehouse.store import WarehouseStore  # noqa: E402

SCHEMA = json.loads((Path(__file__).parents[2] / "docs" / "manifest.schema.json").read_text())


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    summary = run_demo(root, max_videos=12, progress=lambda line: None)
    yield root, summary
    mlobs.configure(sinks=[])


def test_every_manifest_validates_and_equals_its_warehouse_rows(demo_root):
    root, summary = demo_root
    paths = sorted((root / "runs").rglob("manifest.json"))
    assert len(paths) == summary.runs == 24
    store = WarehouseStore(f"sqlite:///{root / 'warehouse.db'}")
    runs = []
    try:
        for path in paths:
            jsonschema.validate(json.loads(path.read_text()), SCHEMA)
            run, components = read_manifest(path)
            runs.append(run)
            stored_run, stored_components = store.get_run(run.run_id)
            assert stored_run == run
            by_id = {c.component_run_id: c for c in stored_components}
            assert set(by_id) == {c.component_run_id for c in components}
            for component in components:
                stored = by_id[component.component_run_id]
                for field in dataclasses.fields(component):
                    assert getattr(stored, field.name) == getattr(component, field.name), (
                        f"{component.component}.{field.name} differs")
        # The artifact index names, per key, the successful run that finished last.
        latest: dict[tuple, object] = {}
        for run in runs:
            if run.status != "ok":
                continue
            key = (run.platform_id, run.video_id, run.config_hash,
                   run.sampling_policy_version, run.pipeline_version)
            if key not in latest or (run.finished_at, run.run_id) > (
                    latest[key].finished_at, latest[key].run_id):
                latest[key] = run
        assert latest
        for (platform_id, video_id, config_hash, sampling, pipeline), run in latest.items():
            entry = store.latest_success(platform_id, video_id, config_hash=config_hash,
                                         sampling_policy_version=sampling,
                                         pipeline_version=pipeline)
            assert entry is not None and entry.latest_success_run_id == run.run_id
            assert entry.finished_at == run.finished_at
            assert reusable_run(store, platform_id, video_id, config_hash=config_hash,
                                sampling_policy_version=sampling, pipeline_version=pipeline,
                                now=run.finished_at + timedelta(days=1)) == run
            assert reusable_run(store, platform_id, video_id, config_hash=config_hash,
                                sampling_policy_version=sampling, pipeline_version=pipeline,
                                now=run.finished_at + timedelta(days=4)) is None
    finally:
        store.close()


def test_rollup_agrees_with_direct_sql_on_the_same_rows(demo_root):
    root, _ = demo_root
    url = f"sqlite:///{root / 'warehouse.db'}"
    rows = {(r.component, r.model_signature): r for r in compute_rollup(url)}
    engine = create_engine(url)
    with engine.connect() as conn:
        records = conn.execute(text(
            "SELECT component, model_signature, run_id, status, duration_ms, peak_rss_bytes, "
            "oom_count, retry_count, peak_gpu_allocated_bytes, peak_gpu_reserved_bytes, "
            "prediction_status, cache_status, cache_miss_reason FROM component_runs")).all()
    groups: dict = {}
    for record in records:
        groups.setdefault((record.component, record.model_signature), []).append(record)
    assert set(groups) == set(rows)
    for key, group in groups.items():
        durations = np.array([r.duration_ms for r in group])
        rollup = rows[key]
        assert rollup.invocations == len(group)
        assert rollup.runs == len({r.run_id for r in group})
        for q, value in ((50, rollup.p50_duration_ms), (95, rollup.p95_duration_ms),
                         (99, rollup.p99_duration_ms)):
            assert value == pytest.approx(np.percentile(durations, q), rel=1e-9, abs=1e-9)
        assert rollup.error_rate == pytest.approx(
            sum(r.status == "error" for r in group) / len(group))
        assert rollup.empty_rate == pytest.approx(
            sum(r.status == "empty" for r in group) / len(group))
        assert rollup.p95_peak_rss_bytes == pytest.approx(
            np.percentile([r.peak_rss_bytes for r in group], 95))
        runs = len({r.run_id for r in group})
        assert rollup.oom_rate == pytest.approx(
            sum(r.oom_count > 0 for r in group) / len(group))
        assert rollup.mean_ooms_per_run == pytest.approx(
            sum(r.oom_count for r in group) / runs)
        assert rollup.retries == sum(r.retry_count for r in group)
        for column in ("peak_gpu_allocated_bytes", "peak_gpu_reserved_bytes"):
            peaks = [getattr(r, column) for r in group if getattr(r, column) is not None]
            got = getattr(rollup, f"p95_{column}")
            assert got == (pytest.approx(np.percentile(peaks, 95)) if peaks else None), column
        predicted = [r.prediction_status for r in group if r.prediction_status is not None]
        assert rollup.degraded_rate == (
            pytest.approx(predicted.count("degraded") / len(predicted)) if predicted
            else None)
        lookups = [r.cache_status for r in group if r.cache_status in ("hit", "miss")]
        assert rollup.cache_hit_rate == (
            pytest.approx(lookups.count("hit") / len(lookups)) if lookups else None)
        assert rollup.cache_miss_reasons == dict(Counter(
            r.cache_miss_reason or UNKNOWN_MISS_REASON for r in group
            if r.cache_status == "miss"))
    # the demo's optional summary really shows both failure modes in the rollup
    summary = [r for (component, _), r in rows.items() if component == "summary"]
    assert summary and summary[0].empty_rate + summary[0].error_rate > 0


def test_killing_the_demo_midway_leaves_valid_manifests_and_a_clean_warehouse(tmp_path):
    root = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "mlobs.cli.main", "demo", "--root",
                             str(root)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        for line in proc.stdout:  # kill once the pipelines are running
            if "videos" in line:
                break
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    paths = sorted((root / "runs").rglob("manifest.json"))
    assert paths, "the demo was killed before any run started"
    for path in paths:
        jsonschema.validate(json.loads(path.read_text()), SCHEMA)
    assert not list((root / "runs").rglob("*.tmp"))
    engine = create_engine(f"sqlite:///{root / 'warehouse.db'}")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA integrity_check")).scalar() == "ok"
        stored = {r for (r,) in conn.execute(text("SELECT run_id FROM runs"))}
    assert stored <= {read_manifest(p)[0].run_id for p in paths}
    store = WarehouseStore(f"sqlite:///{root / 'warehouse.db'}")  # opens cleanly at head
    assert len(store.list_runs(limit=1000)) == len(stored)
    store.close()
