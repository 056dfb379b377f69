"""``mlobs runs show`` says what each component added to memory and prints the traceback
of each failure."""

from __future__ import annotations

import json

import mlobs
from mlobs.cli.main import main

MIB = 1024 * 1024


def load_weights():
    raise FileNotFoundError("weights/asr.bin")


def test_runs_show_prints_the_increase_and_the_failures_traceback(tmp_path, capsys):
    root = tmp_path / "data"
    mlobs.configure(root=root)
    with mlobs.run("youtube", "abc") as run:
        with run.component("grows"):
            block = bytearray(64 * MIB)
            del block
        with run.component("asr", required=False):
            load_weights()
    assert mlobs.flush(10)
    assert main(["runs", "show", run.run_id[:8], "--root", str(root)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("component "))
    start = header.index("rss_increase_mib")  # the table's columns are left-aligned
    grows = next(line for line in lines if line.startswith("grows "))
    assert float(grows[start:].split()[0]) >= 60
    at = next(i for i, line in enumerate(lines) if line.startswith("traceback of asr "))
    shown = lines[at + 1:]
    assert shown[0] == "  Traceback (most recent call last):"
    assert any("in load_weights" in line for line in shown)
    assert any(line == "  FileNotFoundError: weights/asr.bin" for line in shown)

    assert main(["runs", "show", run.run_id, "--root", str(root), "--json"]) == 0
    asr = next(c for c in json.loads(capsys.readouterr().out)["components"]
               if c["component"] == "asr")
    assert "in load_weights" in asr["error_traceback"]
