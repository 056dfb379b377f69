"""``mlobs forget --dry-run`` lists what a real forget deletes, and deletes nothing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import mlobs
from mlobs.cache.intermediate import intermediate_dir
from mlobs.cli.main import main
from mlobs.recording.recorder import set_recorder
from mlobs.warehouse.migrate import upgrade

MODEL = mlobs.ModelRef("whisper-small", "r1", "sha256:" + "a" * 64, engine="torch",
                       precision="fp16")


def record(root: Path, db_url: str) -> None:
    upgrade(db_url)
    mlobs.configure(root=root, db_url=db_url, sinks=["manifest", "warehouse"])
    try:
        for video in ("keep", "gone", "gone"):
            with mlobs.run("youtube", video, labels={"source": video}) as run:
                with run.component("asr", producer_version="1", schema_version="1",
                                   models=[MODEL], cache=True, inputs={"v": video}) as c:
                    c.event("note", detail="x")
                    if not c.hit:
                        c.set_result({"text": f"said in {video}"})
                (intermediate_dir("youtube", video, "frames") / "1.jpg").write_bytes(b"0" * 9)
    finally:
        set_recorder(None)


def snapshot(root: Path) -> dict[str, str]:
    """Every file under the root with a digest of its bytes (the warehouse included)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.name.endswith(
                ("-wal", "-shm"))}


def test_dry_run_reports_what_forget_deletes_and_deletes_nothing(tmp_path, capsys):
    root = tmp_path / "data"
    db_url = f"sqlite:///{root / 'warehouse.db'}"
    record(root, db_url)
    before = snapshot(root)
    argv = ["forget", "--video-id", "gone", "--root", str(root), "--db-url", db_url]

    assert main([*argv, "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert main([*argv, "--dry-run", "--json"]) == 0
    planned = json.loads(capsys.readouterr().out)
    assert snapshot(root) == before  # not a file, not a row changed
    assert main(["runs", "list", "--json", "--db-url", db_url]) == 0
    assert sorted(r["video_id"] for r in json.loads(capsys.readouterr().out)) == [
        "gone", "gone", "keep"]

    lines = text.splitlines()
    assert lines[0] == "forget video gone (every platform)"
    assert f"  would delete manifests {root / 'runs' / 'youtube' / 'gone'}: 2 file(s)" in text
    assert f"  would delete cache {root / 'cache' / 'youtube' / 'gone'}: " in text
    assert ": would delete 2 runs, 2 component_runs, 2 events, 2 run_labels, 1 " \
        "artifact_index row(s)" in text
    assert lines[-1] == "dry run: nothing was deleted"
    assert planned["dry_run"] is True

    # the real thing deletes exactly what the dry run listed
    assert main([*argv, "--json"]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["dry_run"] is False
    assert {k: v for k, v in done.items() if k != "dry_run"} == \
        {k: v for k, v in planned.items() if k != "dry_run"}
    assert main([*argv, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "nothing to delete (already forgotten)" in out
    assert "would delete 0 runs" in out
