"""`mlobs doctor` and `mlobs ingest` as a user meets them."""

import mlobs
from mlobs.cli.main import main
from mlobs.recording.recorder import set_recorder


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


def test_doctor_counts_spooled_records_until_ingest_spool_writes_them(tmp_path, make_run,
                                                                     capsys):
    from mlobs.sinks.warehouse_sink import WarehouseSink
    from mlobs.warehouse.migrate import upgrade
    root = tmp_path / "root"
    blocker = tmp_path / "dead"
    blocker.write_text("a file where the warehouse directory should be")
    sink = WarehouseSink(f"sqlite:///{blocker / 'warehouse.db'}", spool_dir=root / "spool")
    run, components = make_run()
    sink.export([run, *components])  # the database is away: spooled
    sink.shutdown(1)
    good = f"sqlite:///{tmp_path / 'good.db'}"
    upgrade(good)
    args = ["--root", str(root), "--db-url", good]
    assert main(["doctor", *args]) == 1
    out = capsys.readouterr().out
    assert f"{1 + len(components)} record(s) in 1 file(s) under {root / 'spool'}" in out
    assert f"fix: mlobs ingest --spool --root '{root}' --db-url" in out
    assert main(["ingest", "--spool", *args]) == 0
    assert main(["doctor", *args]) == 0
    assert "no records wait" in capsys.readouterr().out


def test_records_refused_on_replay_are_kept_and_doctor_names_them(tmp_path, make_run, capsys):
    import json

    from mlobs.sinks.spool import REJECTED_NAME, Spool
    from mlobs.warehouse.migrate import upgrade
    root = tmp_path / "root"
    run, components = make_run()
    components[0].items = 2**70  # out of the column's range: the warehouse refuses it
    Spool(root / "spool").append([run, *components])
    good = f"sqlite:///{tmp_path / 'good.db'}"
    upgrade(good)
    args = ["--root", str(root), "--db-url", good]
    assert main(["ingest", "--spool", *args]) == 1
    captured = capsys.readouterr()
    assert f"1 record(s) refused by the warehouse, kept in {root / 'spool' / REJECTED_NAME}" \
        in captured.err
    assert f"1 run record(s), {len(components) - 1} component record(s)" in captured.out
    kept = [json.loads(line) for line in
            (root / "spool" / REJECTED_NAME).read_text().splitlines()]
    assert [k["line"]["record"]["component_run_id"] for k in kept] == \
        [components[0].component_run_id]
    assert "items" in kept[0]["reason"]
    assert main(["doctor", *args]) == 1
    out = capsys.readouterr().out
    assert "no records wait" in out
    assert "1 spooled record(s) were refused by the warehouse" in out


def test_doctors_spool_fix_never_carries_a_masked_password(tmp_path, make_run):
    """The fix line is a command to paste: a password it must not print is a placeholder,
    never '***' (which the database would be sent)."""
    from mlobs.cli.doctor_checks import check_spool
    from mlobs.core.config import resolve_settings
    from mlobs.sinks.spool import Spool
    run, _ = make_run()
    Spool(tmp_path / "spool").append([run])
    settings = resolve_settings(root=tmp_path,
                                db_url="postgresql+psycopg://mlobs:s3cret@db:5432/mlobs")
    [waiting] = [check for check in check_spool(settings) if not check.ok]
    assert "--db-url 'postgresql+psycopg://mlobs:<password>@db:5432/mlobs'" in waiting.hint
    assert "***" not in waiting.hint and "s3cret" not in waiting.hint
