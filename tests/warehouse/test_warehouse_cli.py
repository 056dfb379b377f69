"""``mlobs db`` and ``mlobs runs`` through an argparse parser like mlobs.cli.main's."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from mlobs.cli import db, runs
from mlobs.core.manifest import parse_manifest, read_manifest
from mlobs.warehouse import migrate
from mlobs.warehouse.store import WarehouseStore

#: the newest revision (its number is tested in test_warehouse_migrations).
HEAD = migrate.head_revision()


def mlobs(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="mlobs")
    commands = parser.add_subparsers(dest="command", required=True)
    db.register(commands)
    runs.register(commands)
    args = parser.parse_args(list(argv))
    return args.func(args)


@pytest.fixture
def stored_runs(db_url, make_run):
    with WarehouseStore(db_url, manage_schema=True) as store:
        written = [make_run(video_id=f"v{i}") for i in range(3)]
        for run, components in written:
            store.write([run], components)
    return written


def test_db_upgrade_current_downgrade(db_url, capsys):
    assert mlobs("db", "current", "--db-url", db_url) == 1
    assert "mlobs db upgrade" in capsys.readouterr().out

    assert mlobs("db", "upgrade", "--db-url", db_url) == 0
    assert f"from base to {HEAD}" in capsys.readouterr().out
    assert mlobs("db", "upgrade", "--db-url", db_url) == 0
    assert f"already at revision {HEAD}" in capsys.readouterr().out

    assert mlobs("db", "current", "--db-url", db_url) == 0
    assert capsys.readouterr().out.strip() == f"{HEAD} (head)"

    assert mlobs("db", "downgrade", "0001", "--db-url", db_url) == 0
    assert f"from {HEAD} to 0001" in capsys.readouterr().out
    assert mlobs("db", "current", "--db-url", db_url) == 1
    assert f"mlobs needs {HEAD}" in capsys.readouterr().out

    assert mlobs("db", "downgrade", "base", "--db-url", db_url) == 0
    assert "from 0001 to base" in capsys.readouterr().out
    assert migrate.current_revision(db_url) is None


def test_db_current_does_not_create_a_missing_sqlite_file(sqlite_url, tmp_path, capsys):
    assert mlobs("db", "current", "--db-url", sqlite_url) == 1
    assert "no warehouse file" in capsys.readouterr().out
    assert not (tmp_path / "warehouse").exists()


def test_db_url_defaults_to_the_environment(sqlite_url, monkeypatch, capsys):
    monkeypatch.setenv("MLOBS_DB_URL", sqlite_url)
    assert mlobs("db", "upgrade") == 0
    assert migrate.current_revision(sqlite_url) == HEAD


def test_db_upgrade_to_an_unknown_revision_fails_cleanly(sqlite_url, capsys):
    assert mlobs("db", "upgrade", "--revision", "0042", "--db-url", sqlite_url) == 1
    assert "0042" in capsys.readouterr().err


def test_runs_list_table_and_json(db_url, stored_runs, capsys):
    assert mlobs("runs", "list", "--db-url", db_url) == 0
    out = capsys.readouterr().out
    for run, _ in stored_runs:
        assert run.run_id in out
        assert f"youtube/{run.video_id}" in out
    assert "components" in out and "warnings" in out

    assert mlobs("runs", "list", "--json", "--video-id", "v1", "--db-url", db_url) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["video_id"] for r in listed] == ["v1"]
    assert listed[0]["n_components"] == 5
    assert listed[0]["run_id"] == stored_runs[1][0].run_id

    assert mlobs("runs", "list", "--status", "error", "--db-url", db_url) == 0
    assert capsys.readouterr().out.startswith("no run matches these filters (3 run(s) in "
                                              "the warehouse; `mlobs runs list --db-url ")


def test_runs_show_table_and_json(db_url, stored_runs, capsys):
    run, components = stored_runs[0]
    assert mlobs("runs", "show", run.run_id, "--db-url", db_url) == 0
    out = capsys.readouterr().out
    assert run.run_id in out and "no_faces" in out and "oom" in out
    assert components[0].model_signature[:12] in out
    assert components[0].model_signature not in out

    assert mlobs("runs", "show", run.run_id, "--json", "--db-url", db_url) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["run"] == run.to_dict()
    assert shown["components"] == [c.to_dict() for c in components]


def test_runs_show_of_an_unknown_run_fails(db_url, stored_runs, capsys):
    assert mlobs("runs", "show", "no-such-run", "--db-url", db_url) == 1
    assert "no run 'no-such-run'" in capsys.readouterr().err


def test_runs_manifest_exports_the_stored_run_as_a_manifest(db_url, stored_runs, tmp_path,
                                                           capsys):
    run, components = stored_runs[1]
    by_finish = sorted(components, key=lambda c: (c.finished_at, c.component_run_id))
    assert mlobs("runs", "manifest", run.run_id, "--db-url", db_url) == 0
    printed = capsys.readouterr().out
    assert parse_manifest(json.loads(printed)) == (run, by_finish)

    assert mlobs("runs", "manifest", run.run_id, "--write", "--root", str(tmp_path),
                 "--db-url", db_url) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path == tmp_path / "runs" / run.platform_id / run.video_id / run.run_id / \
        "manifest.json"
    assert read_manifest(path) == (run, by_finish)

    assert mlobs("runs", "manifest", "no-such-run", "--write", "--root", str(tmp_path),
                 "--db-url", db_url) == 1
    assert "no run 'no-such-run'" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "no-such-run").exists()


def test_runs_commands_refuse_a_database_that_is_not_upgraded(db_url, capsys):
    migrate.upgrade(db_url)
    migrate.downgrade(db_url, "base")
    assert mlobs("runs", "list", "--db-url", db_url) == 1
    assert "mlobs db upgrade" in capsys.readouterr().err
    assert mlobs("runs", "show", "x", "--db-url", db_url) == 1
    assert "mlobs db upgrade" in capsys.readouterr().err


def test_runs_list_of_a_missing_sqlite_file_says_so(sqlite_url, tmp_path, capsys):
    assert mlobs("runs", "list", "--db-url", sqlite_url) == 1
    assert "no warehouse at" in capsys.readouterr().err
    assert not (tmp_path / "warehouse").exists()


def test_runs_show_says_how_oom_degraded_the_batch_and_the_gpu_peaks(db_url, make_run, capsys):
    run, components = make_run(video_id="oom")
    degraded = components[0]
    degraded.batch_size, degraded.batch_size_requested, degraded.oom_count = 8, 32, 2
    degraded.peak_gpu_allocated_bytes = 3 * 2**30
    with WarehouseStore(db_url, manage_schema=True) as store:
        store.write([run], components)
    assert mlobs("runs", "show", run.run_id, "--db-url", db_url) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[[i for i, line in enumerate(out.splitlines())
                               if line.startswith("component")][0]]
    assert "ooms" in header and "peak_gpu_alloc_mib" in header
    row = next(line for line in out.splitlines() if line.startswith(degraded.component))
    assert "8 of 32" in row and "3072.0" in row
