"""Forgetting a video (``mlobs forget``, :func:`mlobs.housekeeping.forget.forget_video`) on SQLite and
PostgreSQL: no row or file of the video is left, other videos are untouched, and a repeat
reports nothing deleted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

import mlobs
from mlobs.cache.intermediate import intermediate_dir
from mlobs.cli.main import main
from mlobs.core.errors import ConfigError
from mlobs.housekeeping.forget import forget_video
from mlobs.recording.recorder import set_recorder
from mlobs.warehouse.engine import create_warehouse_engine
from mlobs.warehouse.migrate import upgrade

SECRET = "private-video-7f3a9c"
MODEL = mlobs.ModelRef("whisper-small", "r1", "sha256:" + "a" * 64, engine="torch",
                       precision="fp16", device="cuda:0")


def record_runs(root: Path, db_url: str, videos: list[tuple[str, str]]) -> None:
    """Two runs per (platform, video): cached asr (with an event), frames directory, and
    two labels, one naming the video (a deletion must leave no trace of it)."""
    upgrade(db_url)
    mlobs.configure(root=root, db_url=db_url, sinks=["manifest", "warehouse"])
    try:
        for platform, video in videos:
            for _ in range(2):
                with mlobs.run(platform, video, config={"fps": 1}, pipeline_version="1",
                               labels={"source": video, "release": "rc-2"}) as run:
                    with run.component("asr", producer_version="1", schema_version="1",
                                       models=[MODEL], cache=True, inputs={"v": video}) as c:
                        c.event("note", detail="x")
                        if not c.hit:
                            c.set_result({"text": f"said in {video}"})
                    frames = intermediate_dir(platform, video, "frames")
                    (frames / "0001.jpg").write_bytes(b"\x00" * 64)
    finally:
        set_recorder(None)  # flushes the sinks


def rows_of(db_url: str, video: str, platform: str | None = None) -> dict[str, int]:
    """Rows that name the video or one of its runs, per table."""
    engine = create_warehouse_engine(db_url)
    try:
        with engine.connect() as conn:
            where = "video_id = :v" + (" AND platform_id = :p" if platform else "")
            params = {"v": video, "p": platform}
            runs = list(conn.scalars(text(f"SELECT run_id FROM runs WHERE {where}"), params))
            counts = {"runs": len(runs)}
            for table in ("component_runs", "events", "run_labels"):
                counts[table] = sum(conn.execute(text(
                    f"SELECT COUNT(*) FROM {table} WHERE run_id = :r"), {"r": r}).scalar()
                    for r in runs)
            counts["artifact_index"] = conn.execute(text(
                f"SELECT COUNT(*) FROM artifact_index WHERE {where}"), params).scalar()
            tables = set(inspect(conn).get_table_names())
    finally:
        engine.dispose()
    assert {"runs", "component_runs", "events", "run_labels", "artifact_index"} <= tables
    return counts


def files_of(root: Path, video: str) -> list[Path]:
    return [p for base in ("runs", "cache") for p in (root / base).glob(f"*/{video}/**/*")]


def test_forget_leaves_no_row_or_file(tmp_path, db_url, capsys):
    root = tmp_path / "root"
    record_runs(root, db_url, [("youtube", SECRET), ("youtube", "other"),
                               ("vimeo", SECRET)])
    before = rows_of(db_url, SECRET, "youtube")
    assert before == {"runs": 2, "component_runs": 2, "events": 2, "run_labels": 4,
                      "artifact_index": 1}
    assert files_of(root, SECRET)
    other = rows_of(db_url, "other")
    other_files = sorted(files_of(root, "other"))

    assert main(["forget", "--video-id", SECRET, "--platform-id", "youtube",
                 "--root", str(root), "--db-url", db_url]) == 0
    out = capsys.readouterr().out
    assert f"forget video youtube/{SECRET}" in out
    assert ("deleted 2 runs, 2 component_runs, 2 events, 4 run_labels, 1 artifact_index "
            "row(s)") in out
    assert "deleted manifests" in out and "deleted cache" in out
    assert rows_of(db_url, SECRET, "youtube") == dict.fromkeys(before, 0)
    assert not (root / "runs" / "youtube" / SECRET).exists()
    assert not (root / "cache" / "youtube" / SECRET).exists()
    # the same video_id on another platform, and other videos, are untouched
    assert rows_of(db_url, SECRET, "vimeo")["runs"] == 2
    assert (root / "cache" / "vimeo" / SECRET / "intermediate" / "frames").is_dir()
    assert rows_of(db_url, "other") == other
    assert sorted(files_of(root, "other")) == other_files

    # safe to repeat: nothing deleted, exit 0
    assert main(["forget", "--video-id", SECRET, "--platform-id", "youtube",
                 "--root", str(root), "--db-url", db_url]) == 0
    assert "nothing was deleted (already forgotten)" in capsys.readouterr().out

    # without --platform-id: every platform
    assert main(["forget", "--video-id", SECRET, "--root", str(root), "--db-url", db_url,
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["platform_id"] is None and report["rows"] == 11 and report["files"] > 0
    assert {d["kind"] for d in report["deleted"]} == {"manifests", "cache"}
    assert rows_of(db_url, SECRET) == dict.fromkeys(before, 0)
    assert files_of(root, SECRET) == []
    assert not (root / "runs" / "vimeo").exists()   # its only video is gone
    assert rows_of(db_url, "other") == other


def test_forget_sqlite_leaves_no_trace_in_the_database_file(tmp_path, sqlite_url):
    root = tmp_path / "root"
    record_runs(root, sqlite_url, [("youtube", SECRET), ("youtube", "other")])
    db_file = Path(sqlite_url.removeprefix("sqlite:///"))
    assert SECRET.encode() in db_file.read_bytes() + _wal(db_file)
    report = forget_video(SECRET, root=root, db_urls=[sqlite_url])
    assert report.rows.runs == 2 and not report.problems
    # secure_delete overwrote the rows, the checkpoint emptied the WAL
    assert SECRET.encode() not in db_file.read_bytes() + _wal(db_file)
    assert b"other" in db_file.read_bytes()


def _wal(db_file: Path) -> bytes:
    wal = db_file.with_name(db_file.name + "-wal")
    return wal.read_bytes() if wal.exists() else b""


def test_forget_several_warehouses_and_absent_ones(tmp_path, sqlite_url, capsys):
    root = tmp_path / "root"
    record_runs(root, sqlite_url, [("youtube", SECRET)])
    second = f"sqlite:///{tmp_path / 'second.db'}"
    record_runs(tmp_path / "root2", second, [("youtube", SECRET)])
    absent = f"sqlite:///{tmp_path / 'absent.db'}"
    assert main(["forget", "--video-id", SECRET, "--root", str(root), "--db-url", sqlite_url,
                 "--db-url", second, "--db-url", absent]) == 0
    out = capsys.readouterr().out
    assert out.count("deleted 2 runs") == 2
    assert "absent.db: no database there" in out
    assert not (tmp_path / "absent.db").exists()
    assert rows_of(second, SECRET)["runs"] == 0


def test_forget_with_the_configured_root_and_warehouse(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MLOBS_DB_URL", raising=False)
    monkeypatch.setenv("MLOBS_ROOT", str(tmp_path))
    record_runs(tmp_path, f"sqlite:///{tmp_path / 'warehouse.db'}", [("youtube", SECRET)])
    assert main(["forget", "--video-id", SECRET]) == 0
    assert "deleted 2 runs" in capsys.readouterr().out
    assert files_of(tmp_path, SECRET) == []


def test_forget_on_an_empty_root_creates_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MLOBS_DB_URL", raising=False)
    assert main(["forget", "--video-id", "x", "--root", str(tmp_path / "none")]) == 0
    out = capsys.readouterr().out
    assert "nothing was deleted" in out and "no database there" in out
    assert not (tmp_path / "none").exists()


def test_forget_reports_a_failing_warehouse_and_still_deletes_files(tmp_path, capsys):
    root = tmp_path / "root"
    record_runs(root, f"sqlite:///{tmp_path / 'w.db'}", [("youtube", SECRET)])
    bad = "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1"
    assert main(["forget", "--video-id", SECRET, "--root", str(root), "--db-url", bad]) == 1
    captured = capsys.readouterr()
    assert "FAILED" in captured.out and "not deleted" in captured.err
    assert files_of(root, SECRET) == []


def test_forget_refuses_empty_ids(tmp_path):
    with pytest.raises(ConfigError):
        forget_video("", root=tmp_path)
    with pytest.raises(ConfigError):
        forget_video("v", platform_id="", root=tmp_path)
