"""``import mlobs`` is cheap: the heavy dependencies wait for the code that uses them.

A program (a worker, a notebook, the ``mlobs`` command) that imports mlobs and records
nothing, or records later, should not pay for SQLAlchemy, Alembic, DuckDB or tenacity
at import. Each check runs in a fresh interpreter: this test process has imported them
all already. Timings are the benchmarks' business; here only what gets imported.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import mlobs

INIT = Path(mlobs.__file__)

#: imported by the code that needs them (the warehouse, the rollups, the first component,
#: an OOM snapshot, the cache's file lock, the analyses), never by ``import mlobs``.
DEFERRED = ("sqlalchemy", "alembic", "duckdb", "tenacity", "psutil", "filelock", "numpy",
            "scipy", "tabulate")


def loaded_after(code: str) -> list[str]:
    """The :data:`DEFERRED` modules in ``sys.modules`` once ``code`` ran in a fresh
    interpreter."""
    probe = (f"{code}\nimport json, sys\n"
             f"print(json.dumps([m for m in {DEFERRED!r} if m in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_import_mlobs_leaves_the_heavy_dependencies_out():
    assert loaded_after("import mlobs") == []


def test_the_first_component_imports_tenacity_and_records():
    code = ("import mlobs\nfrom mlobs.testing import capture\n"
            "with capture() as rec:\n"
            "    with mlobs.run('youtube', 'v1') as run:\n"
            "        with run.component('asr') as c:\n"
            "            for attempt in c.attempts():\n"
            "                with attempt:\n"
            "                    pass\n"
            "assert rec.component('asr').status == 'ok'")
    assert "tenacity" in loaded_after(code)


def test_every_public_name_imports_from_a_fresh_interpreter():
    names = ", ".join(mlobs.__all__)
    code = (f"from mlobs import {names}\nimport mlobs\n"
            "assert set(mlobs.__all__) <= set(dir(mlobs))\n"
            "from mlobs import *")
    loaded_after(code)  # raises on an ImportError in the child


def _type_checking_imports() -> dict[str, str]:
    tree = ast.parse(INIT.read_text())
    (block,) = [node for node in tree.body
                if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)]
    return {alias.name: node.module for node in block.body
            if isinstance(node, ast.ImportFrom) for alias in node.names}


def test_the_lazy_names_are_the_type_checking_imports():
    # What type checkers and editors see is what __getattr__ hands out.
    assert _type_checking_imports() == mlobs._LAZY
    eager = {name for name in mlobs.__all__ if name not in mlobs._LAZY}
    assert eager == {"__version__"} | {name for name in mlobs.__all__
                                       if name.endswith(("Error", "Failed")) or name == "Empty"}


def test_a_lazy_name_is_the_object_of_its_module():
    from mlobs.hooks.run import run

    assert mlobs.run is run
    assert vars(mlobs)["run"] is run  # cached: later lookups skip __getattr__


def test_an_unknown_name_is_an_attribute_error():
    try:
        mlobs.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("mlobs.no_such_name did not raise")
