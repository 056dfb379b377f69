"""mlobs works on the lowest versions its ``pyproject.toml`` ranges allow.

``make`` and CI install the pinned versions (``constraints/pinned.txt``); an application
that installs mlobs may resolve anything inside the ranges. The lower bounds are kept in
``constraints/lowest.txt``: the first tests check that both files agree with the ranges,
the last one installs mlobs with the lowest versions into a fresh virtual environment and
runs a core subset of this suite there (warehouse, rollups, statistics, CLI, sinks, cache,
the demo, the admin views, the GPU probe and Celery). That one needs the package index
and a few minutes, so it runs in CI (``CI=true``) or with ``MLOBS_TEST_LOWEST=1``, and is
skipped elsewhere.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from support.ci import in_ci

ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS = ROOT / "constraints"
#: every extra but dev. Without a GPU, NVML is the probes' fake; Celery runs in process.
EXTRAS = "demo,web,gpu,celery"
#: the test tools installed next to mlobs, at their pinned versions. httpx: Starlette's
#: test client before 1.x took httpx2; redis: the Celery test app's broker client.
TOOLS = ("pytest", "hypothesis", "jsonschema", "junitparser", "httpx", "redis")
#: one or more test files per dependency: SQLAlchemy, Alembic and psycopg (the warehouse),
#: DuckDB (rollups, doctor), numpy and scipy (drift, gate), tabulate (CLI tables), tenacity
#: and psutil (the API), orjson (spool), filelock (cache), scikit-learn (demo), Starlette,
#: nvidia-ml-py (the GPU probe) and Celery.
SUBSET = (
    "tests/warehouse/test_warehouse_store.py", "tests/warehouse/test_warehouse_migrations.py",
    "tests/warehouse/test_warehouse_engine.py", "tests/test_rollup.py", "tests/test_drift.py",
    "tests/test_gate.py", "tests/test_gate_budgets.py", "tests/cli/test_runs_labels_cli.py",
    "tests/cli/test_doctor_and_ingest.py", "tests/cli/test_cache_cli.py",
    "tests/cli/test_demo_without_extra.py", "tests/api", "tests/sinks/test_spool.py",
    "tests/sinks/test_sinks.py", "tests/cache/test_component_cache.py",
    "tests/demo/test_demo.py", "tests/web/test_api.py", "tests/web/test_security.py",
    "tests/probes/test_gpu_probe.py", "tests/integrations/test_celery_in_process.py",
    "tests/integrations/test_celery_labels.py",
)
#: pandas is a test tool only (it reads the Parquet export back); the API's property tests
#: take long, for dependencies the plain tests of tests/api cover.
DESELECT = "not pandas"
IGNORE = ("tests/api/test_api_property.py",)


def _pins(path: Path) -> dict[str, Version]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{path.name}: {line!r} is not name==version"
            pins[canonicalize_name(name)] = Version(version.split(";")[0].strip())
    return pins


def _requirements(*, dev: bool, extras: str | None = None) -> list[Requirement]:
    """The requirements of the library and of its extras: all of them but ``dev`` (unless
    ``dev``), or those named in ``extras`` (``"demo,web"``)."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found = [Requirement(r) for r in meta["dependencies"]]
    for extra, requirements in meta["optional-dependencies"].items():
        if (extra in extras.split(",")) if extras is not None else (dev or extra != "dev"):
            found += [Requirement(r) for r in requirements]
    return [r for r in found if canonicalize_name(r.name) != "mlobs"]


def _lower_bound(requirement: Requirement) -> Version | None:
    bounds = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
    return max(bounds) if bounds else None


def test_every_runtime_dependency_has_its_lower_bound_in_lowest_txt():
    lowest = _pins(CONSTRAINTS / "lowest.txt")
    wrong = []
    for requirement in _requirements(dev=False):
        bound = _lower_bound(requirement)
        name = canonicalize_name(requirement.name)
        if bound is None:
            wrong.append(f"{requirement} has no >= lower bound")
        elif lowest.get(name) != bound:
            wrong.append(f"{requirement}: lowest.txt has {lowest.get(name)}, not {bound}")
        for extra in requirement.extras:  # psycopg[binary]: psycopg-binary moves with it
            extra_name = canonicalize_name(f"{requirement.name}-{extra}")
            if extra_name in lowest and lowest[extra_name] != bound:
                wrong.append(f"{extra_name}: lowest.txt has {lowest[extra_name]}, not {bound}")
    assert not wrong, "; ".join(wrong)


def test_the_pinned_versions_lie_inside_the_ranges():
    pinned = _pins(CONSTRAINTS / "pinned.txt")
    wrong = [f"{r}: pinned.txt has {pinned.get(canonicalize_name(r.name))}"
             for r in _requirements(dev=True)
             if canonicalize_name(r.name) not in pinned
             or pinned[canonicalize_name(r.name)] not in r.specifier]
    assert not wrong, "not pinned, or pinned outside its range: " + "; ".join(wrong)


def test_the_duckdb_extensions_move_with_duckdb():
    # Each extension wheel requires duckdb == its own version: the ranges must be equal.
    ranges = {canonicalize_name(r.name): str(r.specifier) for r in _requirements(dev=False)
              if r.name.startswith("duckdb")}
    assert len(ranges) == 3 and len(set(ranges.values())) == 1, ranges


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, f"{' '.join(command)}\n{done.stdout[-6000:]}{done.stderr[-6000:]}"
    return done


@pytest.mark.skipif(not in_ci() and os.environ.get("MLOBS_TEST_LOWEST") != "1",
                    reason="installs mlobs with its lowest dependency versions from the package "
                           "index (a few minutes): runs in CI, or with MLOBS_TEST_LOWEST=1")
def test_the_core_tests_pass_on_the_lowest_versions(tmp_path):
    started = time.monotonic()
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], timeout=120)
    python = str(venv / "bin" / "python")
    # A constraint from the caller's environment (CI may pin everything) would fight these.
    env = {k: v for k, v in os.environ.items() if k not in ("PIP_CONSTRAINT", "PYTHONPATH")}
    pinned = _pins(CONSTRAINTS / "pinned.txt")
    tools = [f"{name}=={pinned[name]}" for name in TOOLS]
    _run([python, "-m", "pip", "install", "--quiet", "--constraint",
          str(CONSTRAINTS / "lowest.txt"), f"{ROOT}[{EXTRAS}]", *tools], env=env, timeout=900)

    # What got installed is the lowest of each (where the marker applies): a bound that
    # pip could not honour would otherwise pass unnoticed.
    freeze = _run([python, "-m", "pip", "list", "--format=freeze"], env=env).stdout
    installed = {canonicalize_name(n): Version(v) for n, v in
                 re.findall(r"^([^=\s]+)==(\S+)$", freeze, flags=re.M)}
    lowest = _pins(CONSTRAINTS / "lowest.txt")
    expected = {canonicalize_name(r.name) for r in _requirements(dev=False, extras=EXTRAS)
                if r.marker is None or r.marker.evaluate()}
    off = {n: installed.get(n) for n in sorted(expected) if installed.get(n) != lowest[n]}
    assert not off, f"not installed at the lowest version of constraints/lowest.txt: {off}"

    # From outside the checkout, so that the installed wheel is what the tests import.
    where = _run([python, "-c", "import mlobs; print(mlobs.__file__)"], cwd=tmp_path,
                 env=env).stdout.strip()
    assert Path(where).is_relative_to(venv), where
    tests = subprocess.run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(ROOT),
         "-c", str(ROOT / "pyproject.toml"), "--basetemp", str(tmp_path / "basetemp"),
         "-k", DESELECT, *(f"--ignore={ROOT / path}" for path in IGNORE),
         *(str(ROOT / path) for path in SUBSET)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    print(f"lowest versions: installed and tested in {time.monotonic() - started:.0f} s")
    assert tests.returncode == 0, tests.stdout[-12000:] + tests.stderr[-4000:]
