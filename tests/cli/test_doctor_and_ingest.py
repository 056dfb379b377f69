"""`mlobs doctor` and `mlobs ingest` as a user meets them."""

import mlobs
from mlobs.cli.main import main
from mlobs.recorder import set_recorder


def test_doctor_on_a_fresh_root_passes_and_creates_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MLOBS_DB_URL", raising=False)
    assert main(["doctor", "--root", str(tmp_path / "new")]) == 0
    assert not (tmp_path / "new").exists()
    assert "first run creates it" in capsys.readouterr().out


def test_doctor_finds_runs_the_warehouse_missed_and_ingest_repairs_it(tmp_path, monkeypatch,
                                                                      capsys):
    monkeypatch.delenv("MLOBS_DB_URL", raising=False)
    monkeypatch.setenv("MLOBS_ROOT", str(tmp_path))
    mlobs.configure(root=tmp_path, sinks=["manifest"])  # the warehouse never saw these
    for video in ("a", "b"):
        with mlobs.run("youtube", video) as run:
            with run.component("asr"):
                pass
    set_recorder(None)
    assert main(["db", "upgrade"]) == 0
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "2 run(s) missing from the warehouse" in out and "mlobs ingest" in out
    assert main(["ingest", str(tmp_path / "runs")]) == 0
    assert main(["ingest", str(tmp_path / "runs")]) == 0  # idempotent
    assert main(["doctor"]) == 0
    assert main(["runs", "list", "--json"]) == 0
    listed = capsys.readouterr().out
    assert listed.count('"run_id"') == 2


def test_ingest_names_what_is_wrong(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'wh.db'}"
    assert main(["ingest", str(tmp_path / "nowhere"), "--db-url", db]) == 1
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "runs" / "manifest.json"
    bad.parent.mkdir()
    bad.write_text('{"schema": "other/1"}')
    assert main(["db", "upgrade", "--db-url", db]) == 0
    assert main(["ingest", str(tmp_path / "runs"), "--db-url", db]) == 1
    assert "expected schema 'mlobs.manifest/1'" in capsys.readouterr().err
