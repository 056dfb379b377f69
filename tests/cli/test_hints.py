"""Every hint names the exact command to paste, with the --root / --db-url the user gave
(without them the command would read another warehouse)."""

from __future__ import annotations

import mlobs
from mlobs.cli.hints import rerun
from mlobs.cli.main import main
from mlobs.recording.recorder import set_recorder


def test_runs_hints_carry_root_and_db_url(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MLOBS_DB_URL", raising=False)
    root = tmp_path / "data"
    assert main(["db", "upgrade", "--root", str(root)]) == 0
    capsys.readouterr()
    assert main(["runs", "show", "nope", "--root", str(root)]) == 1
    assert f"`mlobs runs list --root {root}` lists the latest runs" in capsys.readouterr().err
    url = f"sqlite:///{root / 'warehouse.db'}"
    assert main(["runs", "show", "nope", "--db-url", url]) == 1
    assert f"`mlobs runs list --db-url {url}`" in capsys.readouterr().err


def test_doctor_hints_name_the_root_it_checked(tmp_path, monkeypatch, capsys):
    """`mlobs ingest PATH` alone would load into ./mlobs-data's warehouse, not this one."""
    monkeypatch.delenv("MLOBS_DB_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "elsewhere"
    mlobs.configure(root=root, sinks=["manifest"])
    try:
        with mlobs.run("youtube", "a") as run:
            with run.component("asr"):
                pass
    finally:
        set_recorder(None)
    assert main(["db", "upgrade", "--root", str(root)]) == 0
    assert main(["doctor", "--root", str(root)]) == 1
    out = capsys.readouterr().out
    fix = f"fix: mlobs ingest '{root / 'runs'}' --root '{root}'"
    assert fix in out
    # the command it names repairs this root's warehouse
    assert main(["ingest", str(root / "runs"), "--root", str(root)]) == 0
    assert main(["doctor", "--root", str(root)]) == 0


def test_rollup_hint_repeats_the_command_with_the_missing_option(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'w.db'}"
    assert main(["rollup", "--since", "2026-01-01", "--db-url", url]) == 1
    assert f"(`mlobs rollup --since 2026-01-01 --db-url {url} --no-write`)" in \
        capsys.readouterr().err


def test_rerun_drops_options_and_hides_passwords():
    import argparse
    args = argparse.Namespace(argv=["runs", "list", "--limit=3", "--db-url",
                                    "postgresql+psycopg://u:s3cret@db/mlobs", "--json"])
    assert rerun(args, drop=["--limit"], add=["--limit", "9"]) == (
        "mlobs runs list --db-url 'postgresql+psycopg://u:<password>@db/mlobs' --json "
        "--limit 9")
