"""The ``mlobs`` command imports a command's dependencies only when that command runs.

The parser (every command's module) is built for every invocation, ``mlobs --version``
and ``--help`` included, so those must not bring in the warehouse (SQLAlchemy, Alembic),
DuckDB, the analyses or tabulate. Each check runs ``main`` in a fresh interpreter (this
test process has imported everything already); timings are the benchmarks' business.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: what no parser of any command needs.
HEAVY = ("sqlalchemy", "alembic", "duckdb", "tenacity", "psutil", "numpy", "scipy",
         "tabulate", "mlobs.warehouse.engine", "mlobs.sinks.base", "mlobs.hooks.run")


def run_main(*argv: str) -> tuple[int, str, list[str]]:
    """``mlobs ARGV`` in a fresh interpreter: exit code, stdout, and the :data:`HEAVY`
    modules it had imported when it ended."""
    probe = ("import contextlib, io, json, sys\n"
             "from mlobs.cli.main import main\n"
             "out = io.StringIO()\n"
             "with contextlib.redirect_stdout(out):\n"
             "    try:\n"
             f"        code = main({list(argv)!r})\n"
             "    except SystemExit as exc:\n"
             "        code = exc.code\n"
             f"print(json.dumps([code, out.getvalue(), [m for m in {HEAVY!r} "
             "if m in sys.modules]]))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    code, stdout, loaded = json.loads(done.stdout.splitlines()[-1])
    return code, stdout, loaded


def test_version_imports_no_command():
    code, stdout, loaded = run_main("--version")
    assert (code, stdout) == (0, "mlobs 0.1.0\n")
    assert loaded == []


def test_help_imports_no_command():
    code, stdout, loaded = run_main("--help")
    assert code == 0 and "mlobs runs list" in stdout
    assert loaded == []


@pytest.mark.parametrize("command", [
    ["demo"], ["db"], ["db", "upgrade"], ["ingest"], ["runs"], ["runs", "list"], ["rollup"],
    ["drift"], ["gate"], ["gate", "run"], ["licenses", "check"], ["doctor"], ["cache"],
    ["cache", "ls"], ["gc"], ["forget"], ["ui"],
], ids=" ".join)
def test_a_commands_help_imports_none_of_its_implementation(command):
    code, stdout, loaded = run_main(*command, "--help")
    assert code == 0 and stdout.startswith(f"usage: mlobs {' '.join(command)}")
    assert loaded == []


def test_a_command_imports_what_it_uses(tmp_path):
    # `mlobs db current` on a missing SQLite file: the warehouse's helpers say so.
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    code, stdout, loaded = run_main("db", "current", "--db-url", url)
    assert code == 1 and stdout.startswith("no revision (no warehouse file at")
    assert {"sqlalchemy", "mlobs.warehouse.engine"} <= set(loaded)
