"""``mlobs runs list``: time windows, pipeline version, profile, labels, and --limit saying
what it left out."""

from __future__ import annotations

import json
import shlex
from datetime import datetime, timedelta, timezone

import pytest

from mlobs.cli.main import main
from mlobs.warehouse.store import WarehouseStore

NOW = datetime.now(timezone.utc).replace(microsecond=0)
#: video -> (hours ago, pipeline_version, profile, labels)
RUNS = {"old": (24 * 10, "1.0", "baseline", {}),
        "week": (24 * 5, "1.0", "fast", {"release": "rc-1"}),
        "day": (20, "2.0", "baseline", {"release": "rc-2"}),
        "hour": (0.5, "2.0", "fast", {"release": "rc-2"})}


@pytest.fixture
def warehouse(sqlite_url, make_run) -> str:
    with WarehouseStore(sqlite_url, manage_schema=True) as store:
        for video, (hours, version, profile, labels) in RUNS.items():
            run, components = make_run(video_id=video,
                                       started_at=NOW - timedelta(hours=hours))
            run.pipeline_version, run.profile, run.labels = version, profile, labels
            store.write([run], components)
    return sqlite_url


def listed(capsys, db_url: str, *extra: str) -> list[str]:
    assert main(["runs", "list", "--json", "--db-url", db_url, *extra]) == 0
    return [run["video_id"] for run in json.loads(capsys.readouterr().out)]


def test_since_and_until_take_iso_times_and_times_before_now(warehouse, capsys):
    assert listed(capsys, warehouse, "--since", "2h") == ["hour"]
    assert listed(capsys, warehouse, "--since", "1d") == ["hour", "day"]
    assert listed(capsys, warehouse, "--since", "1w", "--until", "1h") == ["day", "week"]
    assert listed(capsys, warehouse, "--until", "6d") == ["old"]
    day = (NOW - timedelta(hours=20)).replace(tzinfo=None).isoformat()
    assert listed(capsys, warehouse, "--since", day) == ["hour", "day"]   # naive = UTC
    assert listed(capsys, warehouse, "--until", day) == ["week", "old"]   # until excludes
    assert listed(capsys, warehouse, "--since", (NOW - timedelta(days=30)).date()
                  .isoformat(), "--until", "90m") == ["day", "week", "old"]


def test_version_profile_and_label_filters_combine(warehouse, capsys):
    assert listed(capsys, warehouse, "--pipeline-version", "2.0") == ["hour", "day"]
    assert listed(capsys, warehouse, "--profile", "fast") == ["hour", "week"]
    assert listed(capsys, warehouse, "--profile", "fast", "--pipeline-version", "1.0") == \
        ["week"]
    assert listed(capsys, warehouse, "--label", "release=rc-2", "--profile", "baseline") == \
        ["day"]
    assert listed(capsys, warehouse, "--pipeline-version", "9") == []


@pytest.mark.parametrize("value", ["yesterday", "2h ago", "-2h", "2026-13-01", "3y"])
def test_a_bad_time_is_a_usage_error_that_says_what_is_expected(warehouse, capsys, value):
    with pytest.raises(SystemExit) as caught:
        main(["runs", "list", f"--since={value}", "--db-url", warehouse])
    assert caught.value.code == 2
    assert (f"argument --since: expected an ISO 8601 date/time (2026-05-01, "
            f"2026-05-01T12:00) or a time before now (30m, 2h, 7d, 2w), got {value!r}"
            in capsys.readouterr().err)


def test_since_after_until_is_an_error(warehouse, capsys):
    assert main(["runs", "list", "--since", "1h", "--until", "2h", "--db-url",
                 warehouse]) == 1
    assert "--since (" in capsys.readouterr().err


def test_limit_says_how_many_were_not_shown_and_how_to_see_them(warehouse, capsys):
    assert main(["runs", "list", "--limit", "2", "--profile", "fast", "--db-url",
                 warehouse]) == 0
    out = capsys.readouterr().out
    assert "no run" not in out and "more run(s)" not in out  # 2 of 2: nothing left out
    assert main(["runs", "list", "--limit", "3", "--db-url", warehouse]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    command = shlex.join(["mlobs", "runs", "list", "--db-url", warehouse, "--limit", "4"])
    assert last == (f"1 more run(s) match, not shown (the newest 3 of 4): `{command}` "
                    "lists them all")
    # the command it names lists them all
    assert listed(capsys, warehouse, *shlex.split(command)[3:]) == list(
        reversed(RUNS))
    # with --json the note goes to stderr, the JSON stays whole
    assert main(["runs", "list", "--json", "--limit=1", "--db-url", warehouse]) == 0
    captured = capsys.readouterr()
    assert len(json.loads(captured.out)) == 1
    assert "3 more run(s) match" in captured.err and "--json --db-url" in captured.err


def test_no_match_says_how_many_runs_there_are(warehouse, capsys):
    assert main(["runs", "list", "--profile", "nope", "--db-url", warehouse]) == 0
    assert capsys.readouterr().out.startswith(
        "no run matches these filters (4 run(s) in the warehouse; `mlobs runs list "
        f"--db-url {warehouse}` lists the latest)")
