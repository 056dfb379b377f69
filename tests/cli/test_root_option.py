"""``--root DIR`` on every command that reads the root, defined once and meaning the same:
the warehouse defaults to sqlite:///DIR/warehouse.db."""

from __future__ import annotations

import argparse

import pytest

from mlobs.cli.db import ROOT_HELP
from mlobs.cli.main import build_parser, main

#: every command that reads the data directory or its default warehouse.
READERS = [["db", "upgrade"], ["db", "downgrade"], ["db", "current"], ["ingest"],
           ["runs", "list"], ["runs", "show"], ["runs", "manifest"], ["rollup"], ["drift"],
           ["gate"], ["gate", "run"], ["licenses", "check"], ["doctor"], ["cache", "ls"],
           ["cache", "use"], ["cache", "diff"], ["gc"], ["forget"], ["ui"], ["demo"]]


def subparser(words: list[str]) -> argparse.ArgumentParser:
    parser = build_parser()
    for word in words:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[word]
    return parser


@pytest.mark.parametrize("words", READERS, ids=" ".join)
def test_every_reader_takes_root(words):
    [root] = [a for a in subparser(words)._actions if "--root" in a.option_strings]
    assert root.metavar == "DIR"
    if words != ["demo"]:  # the demo command keeps its own wording
        assert root.help.startswith(ROOT_HELP)


def test_db_runs_and_rollup_read_the_warehouse_under_root(tmp_path, monkeypatch, make_run,
                                                           capsys):
    monkeypatch.delenv("MLOBS_DB_URL", raising=False)
    monkeypatch.delenv("MLOBS_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "data"
    assert main(["db", "upgrade", "--root", str(root)]) == 0
    assert (root / "warehouse.db").is_file()
    assert not (tmp_path / "mlobs-data").exists()
    assert main(["db", "current", "--root", str(root)]) == 0
    from mlobs.warehouse.store import WarehouseStore
    run, components = make_run(video_id="rooted")
    with WarehouseStore(f"sqlite:///{root / 'warehouse.db'}") as store:
        store.write([run], components)
    capsys.readouterr()
    assert main(["runs", "list", "--root", str(root)]) == 0
    assert run.run_id in capsys.readouterr().out
    assert main(["runs", "show", run.run_id[:8], "--root", str(root)]) == 0
    assert "rooted" in capsys.readouterr().out
    assert main(["rollup", "--no-write", "--root", str(root)]) == 0
    assert "summarization" in capsys.readouterr().out
    # without --root: ./mlobs-data, which does not exist, and is not created
    assert main(["runs", "list"]) == 1
    assert "no warehouse at" in capsys.readouterr().err
    assert not (tmp_path / "mlobs-data").exists()


def test_db_url_wins_over_root(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MLOBS_DB_URL", raising=False)
    url = f"sqlite:///{tmp_path / 'other.db'}"
    assert main(["db", "upgrade", "--root", str(tmp_path / "data"), "--db-url", url]) == 0
    assert (tmp_path / "other.db").is_file() and not (tmp_path / "data").exists()
