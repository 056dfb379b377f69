"""External caches: mlobs.hooks.external_cache.record_cache_lookup and their rollup.

The rollup's numbers are checked against plain Python counting over the same records,
written through the WarehouseStore on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import argparse
import json
import random
import uuid
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone

import pytest

import mlobs
import mlobs.analysis.rollup_sql
from mlobs.analysis.rollup import ExternalCacheRow, bucket_floor, compute_external_cache_rollup
from mlobs.cli import rollup as rollup_cli
from mlobs.cli.rollup import format_external_cache_rollup, rollup_json
from mlobs.core.errors import ConfigError
from mlobs.core.records import ComponentRecord, EventRecord, RunRecord
from mlobs.hooks.external_cache import (
    EXTERNAL_CACHE_EVENT,
    LOOKUP_STATUSES,
    record_cache_lookup,
)
from mlobs.testing import capture
from mlobs.warehouse.migrate import upgrade
from mlobs.warehouse.store import WarehouseStore

T0 = datetime(2024, 5, 1, 20, 0, tzinfo=timezone.utc)
CEST = timezone(timedelta(hours=2))


def _external_events(component: ComponentRecord) -> list[EventRecord]:
    return [e for e in component.events if e.kind == EXTERNAL_CACHE_EVENT]


# ------------------------------------------------------------------ recording lookups


def test_lookups_inside_a_component_become_events() -> None:
    with capture() as records:
        with mlobs.run("youtube", "v1") as run:
            with run.component("summarize"):
                record_cache_lookup("prompt_templates", "hit", key="user:1/summary")
                record_cache_lookup("prompt_templates", "miss", reason="expired")
                record_cache_lookup("prompt_templates", "stale", key="user:1/summary",
                                    reason="source_unavailable")
                mlobs.current().event("oom", attempt=1)  # another kind, kept apart
            with run.component("asr"):
                pass
    summarize = records.component("summarize")
    events = _external_events(summarize)
    assert [e.attributes for e in events] == [
        {"cache": "prompt_templates", "status": "hit", "key": "user:1/summary"},
        {"cache": "prompt_templates", "status": "miss", "reason": "expired"},
        {"cache": "prompt_templates", "status": "stale", "key": "user:1/summary",
         "reason": "source_unavailable"},
    ]
    assert all(e.component_run_id == summarize.component_run_id for e in events)
    assert all(summarize.started_at <= e.occurred_at for e in events)
    assert [e.kind for e in summarize.events] == [EXTERNAL_CACHE_EVENT] * 3 + ["oom"]
    assert summarize.warnings == []
    assert _external_events(records.component("asr")) == []


def test_nested_components_record_on_the_innermost() -> None:
    with capture() as records:
        with mlobs.run("youtube", "v1") as run:
            with run.component("outer"):
                with run.component("inner"):
                    record_cache_lookup("embeddings", "hit")
                record_cache_lookup("embeddings", "miss")
    assert [e.attributes["status"] for e in _external_events(records.component("inner"))] \
        == ["hit"]
    assert [e.attributes["status"] for e in _external_events(records.component("outer"))] \
        == ["miss"]


def test_outside_a_component_nothing_is_recorded() -> None:
    with capture() as records:
        record_cache_lookup("prompt_templates", "hit")  # no run at all
        with mlobs.run("youtube", "v1") as run:
            record_cache_lookup("prompt_templates", "miss")  # a run, but no component
            with run.component("asr"):
                pass
            record_cache_lookup("prompt_templates", "stale")
    assert records.component("asr").events == []
    assert records.run().warnings == []


@pytest.mark.parametrize("status", ["HIT", "expired", "", None, 1, ["hit"]])
def test_invalid_status_is_refused_inside_and_outside(status) -> None:
    with pytest.raises(ConfigError) as outside:
        record_cache_lookup("prompt_templates", status)
    assert all(word in str(outside.value) for word in ("hit", "miss", "stale"))
    with capture() as records:
        with mlobs.run("youtube", "v1") as run:
            with run.component("asr"):
                with pytest.raises(ConfigError, match="hit, miss, stale"):
                    record_cache_lookup("prompt_templates", status)
    assert records.component("asr").events == []


@pytest.mark.parametrize("kwargs", [{"cache": ""}, {"cache": None}, {"cache": "x" * 256},
                                    {"key": ""}, {"key": 42}, {"key": "k" * 256},
                                    {"reason": ""}, {"reason": "r" * 129}])
def test_invalid_names_are_refused(kwargs) -> None:
    arguments = {"cache": "prompt_templates", "status": "hit", **kwargs}
    with pytest.raises(ConfigError):
        record_cache_lookup(arguments.pop("cache"), arguments.pop("status"), **arguments)


def test_vocabulary_is_shared_with_the_rollup() -> None:
    assert LOOKUP_STATUSES == ("hit", "miss", "stale")
    assert mlobs.analysis.rollup_sql.EXTERNAL_CACHE_EVENT == EXTERNAL_CACHE_EVENT


# -------------------------------------------------------------------------- the rollup


def _records(seed: int = 11, n_runs: int = 30) -> tuple[list[RunRecord],
                                                         list[ComponentRecord]]:
    """Runs over ~2.5 days; summarize and rerank look up external caches, asr never.

    Noise the rollup must not count: events of other kinds, an ``external_cache`` event
    with an unknown status, one without a cache name.
    """
    rng = random.Random(seed)
    runs, components = [], []
    caches = {"summarize": ["prompt_templates", "user_settings"],
              "rerank": ["embeddings"], "asr": []}
    for i in range(n_runs):
        run_id = str(uuid.uuid4())
        started = T0 + timedelta(hours=2 * i, minutes=rng.randrange(60))
        if i % 4 == 0:  # written with an offset: buckets still follow UTC
            started = started.astimezone(CEST)
        runs.append(RunRecord(run_id=run_id, platform_id="youtube", video_id=f"v{i}",
                              status="ok", started_at=started))
        for attempt_offset, component in enumerate(("asr", "summarize", "rerank")):
            began = started + timedelta(seconds=10 * attempt_offset)
            component_run_id = str(uuid.uuid4())
            events = []
            for n in range(rng.randrange(0, 6) if caches[component] else 0):
                status = rng.choices(["hit", "miss", "stale"], weights=[6, 3, 1])[0]
                attributes = {"cache": rng.choice(caches[component]), "status": status}
                if status != "hit":
                    attributes["reason"] = rng.choice(["expired", "source_unavailable"])
                events.append(attributes)
            if component == "summarize" and i % 7 == 3:
                events += [{"cache": "prompt_templates", "status": "bogus"},
                           {"status": "hit"}]
            records = [EventRecord(event_id=str(uuid.uuid4()), run_id=run_id,
                                   component_run_id=component_run_id,
                                   kind=EXTERNAL_CACHE_EVENT,
                                   occurred_at=began + timedelta(milliseconds=n),
                                   attributes=attributes)
                       for n, attributes in enumerate(events)]
            if i % 3 == 0:
                records.append(EventRecord(event_id=str(uuid.uuid4()), run_id=run_id,
                                           component_run_id=component_run_id, kind="retry",
                                           occurred_at=began,
                                           attributes={"cache": "prompt_templates",
                                                       "status": "hit"}))
            components.append(ComponentRecord(
                component_run_id=component_run_id, run_id=run_id, component=component,
                attempt=1, required=True, status="ok", started_at=began,
                finished_at=began + timedelta(milliseconds=50), duration_ms=50.0,
                events=records))
    return runs, components


def _populate(db_url: str, runs: list[RunRecord], components: list[ComponentRecord]) -> None:
    upgrade(db_url)
    with WarehouseStore(db_url) as store:
        store.write(runs, components)


def _reference(components: list[ComponentRecord], bucket: str,
               since: datetime | None = None) -> dict:
    """The rollup by plain counting over the records written."""
    counts: dict[tuple, Counter] = defaultdict(Counter)
    for component in components:
        started = component.started_at.astimezone(timezone.utc)
        if since is not None and started < bucket_floor(since, bucket):
            continue
        start = None if bucket == "all" else bucket_floor(started, bucket)
        for event in _external_events(component):
            cache, status = event.attributes.get("cache"), event.attributes.get("status")
            if cache is not None and status in ("hit", "miss", "stale"):
                counts[(start, component.component, cache)][status] += 1
    out = {}
    for key, counter in counts.items():
        lookups = sum(counter.values())
        out[key] = {"lookups": lookups, "hits": counter["hit"], "misses": counter["miss"],
                    "stale": counter["stale"], "hit_rate": counter["hit"] / lookups,
                    "stale_rate": counter["stale"] / lookups}
    return out


def _assert_matches(rows: list[ExternalCacheRow], expected: dict, bucket: str) -> None:
    got = {(r.bucket_start, r.component, r.cache): r for r in rows}
    assert set(got) == set(expected)
    for key, values in expected.items():
        row = got[key]
        assert row.bucket_width == bucket
        for name, value in values.items():
            if isinstance(value, int):
                assert getattr(row, name) == value and type(getattr(row, name)) is int, \
                    (key, name)
            else:
                assert getattr(row, name) == pytest.approx(value, rel=1e-12), (key, name)


@pytest.fixture
def external_warehouse(db_url: str) -> tuple[str, list[ComponentRecord]]:
    runs, components = _records()
    _populate(db_url, runs, components)
    return db_url, components


@pytest.mark.parametrize("bucket", ["all", "hour", "day"])
def test_rollup_matches_plain_counting(external_warehouse, bucket: str) -> None:
    db_url, components = external_warehouse
    rows = compute_external_cache_rollup(db_url, bucket=bucket)
    expected = _reference(components, bucket)
    assert len(expected) >= (3 if bucket == "all" else 10)
    _assert_matches(rows, expected, bucket)
    assert len({r.computed_at for r in rows}) == 1
    # Ordered by bucket_start, component, cache.
    order = [((r.bucket_start or T0).timestamp(), r.component, r.cache) for r in rows]
    assert order == sorted(order)
    assert all(r.lookups == r.hits + r.misses + r.stale for r in rows)


def test_rollup_all_shape_and_since(external_warehouse) -> None:
    db_url, components = external_warehouse
    rows = compute_external_cache_rollup(db_url)
    assert [(r.component, r.cache) for r in rows] == [
        ("rerank", "embeddings"), ("summarize", "prompt_templates"),
        ("summarize", "user_settings")]
    assert all(r.bucket_start is None for r in rows)
    since = datetime(2024, 5, 2, 13, 30, tzinfo=timezone.utc)
    for bucket in ("all", "day"):
        _assert_matches(compute_external_cache_rollup(db_url, bucket=bucket, since=since),
                        _reference(components, bucket, since), bucket)
    naive = compute_external_cache_rollup(db_url, since=since.replace(tzinfo=None))
    assert [r.lookups for r in naive] == \
        [r.lookups for r in compute_external_cache_rollup(db_url, since=since)]


def test_rollup_of_lookups_recorded_through_the_api(db_url: str) -> None:
    """End to end: record_cache_lookup → capture → WarehouseStore → DuckDB rollup."""
    plan = {"summarize": ["hit", "hit", "hit", "miss", "stale"], "rerank": ["miss", "hit"]}
    with capture() as records:
        for video in ("v1", "v2"):
            with mlobs.run("youtube", video) as run:
                for component, statuses in plan.items():
                    with run.component(component):
                        for status in statuses:
                            record_cache_lookup("prompt_templates", status, key=video)
                with run.component("asr"):
                    pass
    _populate(db_url, records.runs, records.components)
    rows = {r.component: r for r in compute_external_cache_rollup(db_url)}
    assert set(rows) == {"summarize", "rerank"}
    summarize = rows["summarize"]
    assert (summarize.cache, summarize.lookups, summarize.hits, summarize.misses,
            summarize.stale) == ("prompt_templates", 10, 6, 2, 2)
    assert summarize.hit_rate == pytest.approx(0.6)
    assert summarize.stale_rate == pytest.approx(0.2)
    assert (rows["rerank"].lookups, rows["rerank"].hit_rate, rows["rerank"].stale_rate) \
        == (4, 0.5, 0.0)


def test_no_lookups_no_rows(db_url: str) -> None:
    _populate(db_url, [], [])
    assert compute_external_cache_rollup(db_url, bucket="day") == []
    assert "no external cache lookups" in format_external_cache_rollup([])


def test_format_and_json(external_warehouse) -> None:
    db_url, _ = external_warehouse
    rows = compute_external_cache_rollup(db_url)
    lines = format_external_cache_rollup(rows).splitlines()
    assert lines[0].split() == ["component", "external", "cache", "lookups", "hits",
                                "misses", "stale", "hit", "%", "stale", "%"]
    summarize = next(r for r in rows if r.cache == "prompt_templates")
    line = next(line for line in lines if "prompt_templates" in line)
    assert line.split()[:7] == ["summarize", "prompt_templates", str(summarize.lookups),
                                str(summarize.hits), str(summarize.misses),
                                str(summarize.stale), f"{100 * summarize.hit_rate:.1f}"]
    day = compute_external_cache_rollup(db_url, bucket="day")
    assert format_external_cache_rollup(day).splitlines()[0].startswith("bucket (UTC)")
    document = json.loads(rollup_json([], day))
    assert document["component_rollups"] == []
    assert document["external_caches"][0]["bucket_start"] == "2024-05-01T00:00:00+00:00"
    assert set(document["external_caches"][0]) == {
        "computed_at", "bucket_width", "bucket_start", "component", "cache", "lookups",
        "hits", "misses", "stale", "hit_rate", "stale_rate"}
    assert json.loads(rollup_json([])) == []  # without external rows: the plain array


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="mlobs")
    rollup_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["rollup", *argv])
    return args.func(args)


def test_cli_prints_external_caches_under_the_component_table(sqlite_url: str,
                                                              capsys) -> None:
    runs, components = _records(n_runs=6)
    _populate(sqlite_url, runs, components)
    assert _cli("--db-url", sqlite_url) == 0
    out, err = capsys.readouterr()
    component_table, _, external = out.partition("\nexternal caches\n")
    assert component_table.splitlines()[0].split()[:2] == ["component", "model"]
    assert "summarize" in component_table
    assert external.splitlines()[0].split()[:3] == ["component", "external", "cache"]
    assert "prompt_templates" in external and "embeddings" in external
    assert "stored 3 component_rollups rows" in err
    assert _cli("--db-url", sqlite_url, "--json", "--no-write") == 0
    document = json.loads(capsys.readouterr().out)
    expected = [r.to_dict() for r in compute_external_cache_rollup(sqlite_url)]
    for row in (*document["external_caches"], *expected):
        row.pop("computed_at")
    assert document["external_caches"] == expected
    assert {r["component"] for r in document["component_rollups"]} == \
        {"asr", "summarize", "rerank"}
