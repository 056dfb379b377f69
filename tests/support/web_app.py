"""A small warehouse and cache for the admin views' tests: 12 runs (two platforms, ok and
error, an hour apart) of the realistic five-component run, the drift checks of their
first six hours against the last six, and one cached video with three versions of a
component."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from mlobs.analysis.drift import DriftPolicy, Window, check_drift
from mlobs.cache.store import ArtifactStore
from mlobs.core.signature import idempotency_key
from mlobs.warehouse.store import WarehouseStore

START = datetime(2026, 5, 9, 12, 0, tzinfo=timezone.utc)


@dataclass
class WebData:
    root: Path
    db_url: str
    run_ids: list[str]


def fill(root: Path, build_run) -> WebData:
    """Write the runs (``build_run``: tests/conftest.py's) and the cache under ``root``."""
    db_url = f"sqlite:///{root / 'warehouse.db'}"
    runs, components = [], []
    for i in range(12):
        run, parts = build_run(platform_id="youtube" if i % 3 else "vimeo",
                               status="error" if i % 4 == 0 else "ok",
                               started_at=START + timedelta(hours=i))
        runs.append(run)
        components += parts
    with WarehouseStore(db_url, manage_schema=True) as store:
        store.write(runs, components)
    # the first six hours against the last six, stored in drift_checks
    check_drift(db_url, Window(since=START, until=START + timedelta(hours=6)),
                Window(since=START + timedelta(hours=6), until=START + timedelta(hours=12)),
                policy=DriftPolicy(min_samples=3))
    cache = ArtifactStore(root / "cache")
    key = idempotency_key(platform_id="youtube", video_id="abc", component="cleaning",
                          config_hash=None, sampling_policy_version=None,
                          producer_version="1", schema_version="1", model_signature=None)
    for version, text in enumerate(["first", "second", "third"], start=1):
        cache.save("youtube", "abc", "cleaning", {"text": text, "version": version},
                   key=key, input_hash="i", run_id=runs[1].run_id)
    return WebData(root, db_url, [r.run_id for r in runs])
