"""``mlobs ingest`` says how many manifests it loaded of how many it found, names each one
it skipped and why, and exits 1 when it skipped one (docs/cli.md, exit codes)."""

from __future__ import annotations

import mlobs
from mlobs.cli.main import main
from mlobs.recording.recorder import set_recorder
from mlobs.warehouse.migrate import upgrade


def test_a_malformed_manifest_is_counted_as_skipped(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'wh.db'}"
    upgrade(db)
    bad = tmp_path / "in" / "bad" / "manifest.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"schema": "other/1"}')
    assert main(["ingest", str(bad), "--db-url", db]) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith("ingested 0 of 1 manifest(s) (0 component record(s)) "
                                   "into sqlite:")
    assert captured.out.rstrip().endswith("; skipped 1")
    assert captured.err.splitlines() == [
        f"skipped: {bad}: expected schema 'mlobs.manifest/1', found 'other/1'"]
    assert "1/1" not in captured.out + captured.err


def test_good_and_bad_manifests_are_counted_apart(tmp_path, capsys):
    root = tmp_path / "root"
    mlobs.configure(root=root, sinks=["manifest"])
    try:
        for video in ("a", "b"):
            with mlobs.run("youtube", video) as run:
                with run.component("asr"):
                    pass
    finally:
        set_recorder(None)
    (root / "runs" / "broken").mkdir()
    (root / "runs" / "broken" / "manifest.json").write_text("{not json")
    db = f"sqlite:///{tmp_path / 'wh.db'}"
    upgrade(db)
    assert main(["ingest", str(root / "runs"), "--db-url", db]) == 1
    captured = capsys.readouterr()
    assert "ingested 2 of 3 manifest(s) (2 component record(s))" in captured.out
    assert captured.out.rstrip().endswith("; skipped 1")
    [skipped] = captured.err.splitlines()
    assert skipped.startswith(f"skipped: {root / 'runs' / 'broken' / 'manifest.json'}: ")
    assert main(["ingest", str(root / "runs" / "youtube"), "--db-url", db]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ingested 2 of 2 manifest(s)") and "skipped" not in out


def test_ingest_without_paths_names_the_commands(tmp_path, capsys):
    assert main(["ingest", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"`mlobs ingest {tmp_path / 'runs'} --root {tmp_path}`" in err
    assert f"`mlobs ingest --spool --root {tmp_path}`" in err
