"""reusable_run: a fresh successful run is returned as is, an older one means recompute
(orchestration notes §5, cache_ttl_days default 3), on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime, timedelta, timezone

import pytest

from mlobs.core.errors import ConfigError, SchemaOutOfDateError, WarehouseError
from mlobs.core.signature import config_hash
from mlobs.warehouse import migrate
from mlobs.warehouse.reuse import DEFAULT_TTL_DAYS, reusable_run
from mlobs.warehouse.store import WarehouseStore

NOW = datetime(2026, 5, 20, 12, 0, tzinfo=timezone.utc)
#: The fixture run's key parts besides the video.
PARTS = {"sampling_policy_version": "sp-2", "pipeline_version": "1.4.0"}


def _finished_days_ago(make_run, days: float, *, video_id: str = "v1", status: str = "ok"):
    """A run whose finished_at is ``days`` before NOW."""
    run, components = make_run(video_id=video_id, status=status)
    shift = (NOW - timedelta(days=days)) - run.finished_at
    run = dataclasses.replace(run, started_at=run.started_at + shift,
                              finished_at=run.finished_at + shift)
    components = [dataclasses.replace(c, started_at=c.started_at + shift,
                                      finished_at=c.finished_at + shift,
                                      events=[dataclasses.replace(e, occurred_at=e.occurred_at
                                                                  + shift)
                                              for e in c.events])
                  for c in components]
    return run, components


@pytest.fixture
def warehouse(db_url):
    with WarehouseStore(db_url, manage_schema=True) as store:
        yield db_url, store


def test_the_default_ttl_is_three_days():
    assert DEFAULT_TTL_DAYS == 3.0


def test_a_fresh_run_is_returned_as_is(warehouse, make_run):
    db_url, store = warehouse
    run, components = _finished_days_ago(make_run, 1)
    store.write([run], components)
    got = reusable_run(db_url, "youtube", "v1", config=run.config, now=NOW, **PARTS)
    assert got == run
    # The same through the hash, or through an open store.
    assert reusable_run(db_url, "youtube", "v1", config_hash=run.config_hash, now=NOW,
                        **PARTS) == run
    assert reusable_run(store, "youtube", "v1", config=run.config, now=NOW, **PARTS) == run


def test_a_four_day_old_run_means_recompute(warehouse, make_run):
    db_url, store = warehouse
    run, components = _finished_days_ago(make_run, 4)
    store.write([run], components)
    assert reusable_run(db_url, "youtube", "v1", config=run.config, now=NOW, **PARTS) is None
    # With a longer TTL it is fresh again.
    assert reusable_run(db_url, "youtube", "v1", config=run.config, now=NOW, ttl_days=5,
                        **PARTS) == run


def test_the_ttl_boundary_and_the_newest_success(warehouse, make_run):
    db_url, store = warehouse
    old, old_components = _finished_days_ago(make_run, 4)
    edge, edge_components = _finished_days_ago(make_run, 3)
    store.write([old, edge], old_components + edge_components)
    # Exactly ttl_days old is still fresh (like the component cache's TTL); a microsecond
    # later it is not.
    assert reusable_run(db_url, "youtube", "v1", config=edge.config, now=NOW,
                        **PARTS) == edge
    assert reusable_run(db_url, "youtube", "v1", config=edge.config,
                        now=NOW + timedelta(microseconds=1), **PARTS) is None
    assert reusable_run(db_url, "youtube", "v1", config=edge.config, now=NOW, ttl_days=0,
                        **PARTS) is None


def test_another_config_or_version_or_video_finds_nothing(warehouse, make_run):
    db_url, store = warehouse
    run, components = _finished_days_ago(make_run, 0.5)
    store.write([run], components)
    other_config = {**run.config, "sample_fps": 1.0}
    assert reusable_run(db_url, "youtube", "v1", config=other_config, now=NOW,
                        **PARTS) is None
    assert reusable_run(db_url, "youtube", "v1", config=run.config, now=NOW,
                        sampling_policy_version="sp-3", pipeline_version="1.4.0") is None
    assert reusable_run(db_url, "youtube", "v1", config=run.config, now=NOW,
                        sampling_policy_version="sp-2", pipeline_version=None) is None
    assert reusable_run(db_url, "youtube", "v2", config=run.config, now=NOW,
                        **PARTS) is None
    assert reusable_run(db_url, "vimeo", "v1", config=run.config, now=NOW, **PARTS) is None


def test_a_newer_failure_does_not_hide_a_fresh_success(warehouse, make_run):
    db_url, store = warehouse
    success, success_components = _finished_days_ago(make_run, 2)
    failure, failure_components = _finished_days_ago(make_run, 1, status="error")
    store.write([success, failure], success_components + failure_components)
    assert reusable_run(db_url, "youtube", "v1", config=success.config, now=NOW,
                        **PARTS) == success


def test_a_run_without_config_matches_a_lookup_without_config(warehouse, make_run):
    db_url, store = warehouse
    run, components = _finished_days_ago(make_run, 1)
    run.config, run.config_hash = {}, config_hash(None)  # what mlobs.run records
    run.sampling_policy_version = run.pipeline_version = None
    store.write([run], components)
    assert reusable_run(db_url, "youtube", "v1", now=NOW) == run
    assert reusable_run(db_url, "youtube", "v1", config={}, now=NOW) == run


def test_the_default_now_is_the_current_time(warehouse, make_run):
    db_url, store = warehouse
    run, components = make_run(started_at=datetime.now(timezone.utc) - timedelta(hours=1))
    store.write([run], components)
    assert reusable_run(db_url, "youtube", run.video_id, config=run.config, **PARTS) == run


@pytest.mark.parametrize("kwargs", [
    {"config": {"a": 1}, "config_hash": "a" * 64},
    {"ttl_days": -1},
    {"ttl_days": math.nan},
    {"ttl_days": math.inf},
    {"ttl_days": True},
    {"ttl_days": "3"},
    {"now": datetime(2026, 5, 20, 12, 0)},
    {"config": {"when": object()}},
])
def test_bad_arguments_are_config_errors(sqlite_url, kwargs):
    with pytest.raises(ConfigError):
        reusable_run(sqlite_url, "youtube", "v1", **kwargs)


@pytest.mark.parametrize("platform_id, video_id", [("", "v1"), ("youtube", ""),
                                                   ("youtube", None)])
def test_an_empty_video_is_a_config_error(sqlite_url, platform_id, video_id):
    with pytest.raises(ConfigError):
        reusable_run(sqlite_url, platform_id, video_id)


def test_a_huge_ttl_keeps_everything(warehouse, make_run):
    db_url, store = warehouse
    run, components = _finished_days_ago(make_run, 400)
    store.write([run], components)
    assert reusable_run(db_url, "youtube", "v1", config=run.config, now=NOW, ttl_days=1e12,
                        **PARTS) == run


def test_an_unreachable_warehouse_is_a_warehouse_error():
    with pytest.raises(WarehouseError):
        reusable_run("postgresql+psycopg://mlobs@127.0.0.1:1/nowhere?connect_timeout=2",
                     "youtube", "v1", now=NOW)


def test_a_missing_sqlite_file_is_a_warehouse_error_and_is_not_created(sqlite_url, tmp_path):
    with pytest.raises(WarehouseError, match="no warehouse at"):
        reusable_run(sqlite_url, "youtube", "v1", now=NOW)
    assert not (tmp_path / "warehouse").exists()


def test_an_out_of_date_warehouse_says_what_to_run(db_url):
    migrate.upgrade(db_url, "0002")
    with pytest.raises(SchemaOutOfDateError, match="mlobs db upgrade"):
        reusable_run(db_url, "youtube", "v1", now=NOW)
