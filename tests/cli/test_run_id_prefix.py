"""A RUN_ID may be a unique prefix of the id, like git's abbreviated hashes."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, event

from mlobs.cli.main import main
from mlobs.warehouse.store import WarehouseStore

START = datetime(2026, 5, 9, 12, 0, tzinfo=timezone.utc)
IDS = ("aaaa1111-0000", "aaaa2222-0000", "abcd0000-0000", "a%c_0000-0000")


def store_runs(db_url: str, make_run, ids=IDS) -> None:
    with WarehouseStore(db_url, manage_schema=True) as store:
        for n, run_id in enumerate(ids):
            run, components = make_run(video_id=f"v{n}",
                                       started_at=START + timedelta(minutes=n))
            run.run_id = run_id
            for c in components:
                c.run_id = run_id
                for e in c.events:
                    e.run_id = run_id
            store.write([run], components)


@pytest.fixture
def warehouse(sqlite_url, make_run) -> str:
    store_runs(sqlite_url, make_run)
    return sqlite_url


def shown_id(capsys, *argv: str) -> str:
    assert main(["runs", "show", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)["run"]["run_id"]


def test_a_unique_prefix_names_the_run(warehouse, capsys):
    assert shown_id(capsys, "abc", "--db-url", warehouse) == "abcd0000-0000"
    assert shown_id(capsys, "aaaa2", "--db-url", warehouse) == "aaaa2222-0000"
    assert shown_id(capsys, "aaaa1111-0000", "--db-url", warehouse) == "aaaa1111-0000"
    # LIKE wildcards in a prefix are literal characters
    assert shown_id(capsys, "a%", "--db-url", warehouse) == "a%c_0000-0000"
    assert main(["runs", "manifest", "aaaa1", "--db-url", warehouse]) == 0
    assert json.loads(capsys.readouterr().out)["run_id"] == "aaaa1111-0000"


def test_an_ambiguous_prefix_lists_the_candidates(warehouse, capsys):
    assert main(["runs", "show", "aaaa", "--db-url", warehouse]) == 1
    err = capsys.readouterr().err
    assert "run id 'aaaa' is ambiguous: 2 runs have an id starting with it:" in err
    lines = err.splitlines()
    # newest first: id, platform/video, started_at, status
    assert lines[1].split() == ["aaaa2222-0000", "youtube/v1", "started", "2026-05-09",
                                "12:01:00", "UTC", "ok"]
    assert lines[2].split()[:2] == ["aaaa1111-0000", "youtube/v0"]
    assert f"`mlobs runs show aaaa2222-0000 --db-url {warehouse}`" in lines[-1]
    # "a_" must not match "aaaa..." or "abcd..." through the LIKE wildcard
    assert main(["runs", "show", "a_", "--db-url", warehouse]) == 1
    assert "no run 'a_'" in capsys.readouterr().err


def test_no_match_is_a_clear_error_with_the_command_to_list(warehouse, capsys):
    assert main(["runs", "show", "zz", "--db-url", warehouse]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mlobs: error: no run 'zz' in the warehouse sqlite:")
    assert f"`mlobs runs list --db-url {warehouse}` lists the latest runs" in err
    assert main(["runs", "show", " ", "--db-url", warehouse]) == 1
    assert "a run id must not be empty" in capsys.readouterr().err


def test_many_candidates_are_cut_to_the_newest_ten(sqlite_url, make_run, capsys):
    store_runs(sqlite_url, make_run, ids=[f"bb{n:02d}-x" for n in range(12)])
    assert main(["runs", "show", "bb", "--db-url", sqlite_url]) == 1
    err = capsys.readouterr().err
    assert "12 runs have an id starting with it; the newest 10:" in err
    assert "bb11-x" in err and "bb02-x" in err and "bb01-x" not in err


def test_a_prefix_is_one_like_query_not_a_read_of_every_run(warehouse, capsys):
    statements: list[str] = []

    def record(conn, cursor, statement, *rest):
        statements.append(" ".join(statement.split()))

    event.listen(Engine, "before_cursor_execute", record)
    try:
        assert shown_id(capsys, "abc", "--db-url", warehouse) == "abcd0000-0000"
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    on_runs = [s for s in statements if " FROM runs" in s]
    assert any("runs.run_id LIKE" in s for s in on_runs), on_runs
    assert all(" WHERE " in s for s in on_runs), on_runs  # never the whole table


def test_drift_and_gate_take_prefixes_too(warehouse, capsys):
    assert main(["drift", "--baseline-runs", "aaaa1,aaaa2", "--current-runs", "abc",
                 "--no-write", "--fail-on", "never", "--json", "--db-url", warehouse]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["baseline"]["run_ids"] == ["aaaa1111-0000", "aaaa2222-0000"]
    assert report["current"]["run_ids"] == ["abcd0000-0000"]
    assert main(["gate", "--baseline-runs", "aaaa", "--candidate-runs", "abc",
                 "--no-write", "--db-url", warehouse]) == 1
    assert "run id 'aaaa' is ambiguous" in capsys.readouterr().err
