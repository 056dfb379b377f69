"""The wheel ships the Alembic migrations: `mlobs db upgrade` works from a pip install."""

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out),
                    str(REPO)], check=True, timeout=300)
    (built,) = out.glob("mlobs-*.whl")
    return built


def test_wheel_contains_migrations_and_type_marker(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "mlobs/_migrations/env.py" in names
    assert any(n.startswith("mlobs/_migrations/versions/") and n.endswith(".py") for n in names)
    assert "mlobs/py.typed" in names
    assert not any(n.startswith("tests/") for n in names)


def test_db_upgrade_from_an_installed_wheel(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    # The wheel itself goes into the fresh venv; its dependencies are taken from this test's
    # environment through PYTHONPATH (no network, and this checkout is not importable).
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-index", str(wheel)], check=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": sysconfig.get_paths()["purelib"]}
    env.pop("MLOBS_DB_URL", None)
    db = tmp_path / "fresh.db"
    where = subprocess.run([str(python), "-c", "import mlobs.warehouse.migrate as m; "
                            "print(m.migrations_dir())"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(venv), where
    result = subprocess.run([str(venv / "bin" / "mlobs"), "db", "upgrade", "--db-url",
                             f"sqlite:///{db}"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    current = subprocess.run([str(venv / "bin" / "mlobs"), "db", "current", "--db-url",
                              f"sqlite:///{db}"], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=120)
    assert current.returncode == 0 and "head" in current.stdout, current.stdout + current.stderr
