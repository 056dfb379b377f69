"""Start-up cost: ``import mlobs`` and ``mlobs --version``, wall time of a fresh
interpreter (median of ``RUNS``), against ``python -c pass`` measured in the same run, and
the modules each leaves loaded that it should not (SQLAlchemy, Alembic, DuckDB, tenacity).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

RUNS = 10
HEAVY = ("sqlalchemy", "alembic", "duckdb", "tenacity")
MLOBS_CLI = str(Path(sys.executable).with_name("mlobs"))


def median_s(command: list[str]) -> float:
    samples = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def loaded_heavy(code: str) -> list[str]:
    probe = (f"{code}\nimport sys; print(); "
             f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True,
                         text=True).stdout
    return out.splitlines()[-1].split() if out.strip() else []


def main() -> dict[str, float]:
    bare = median_s([sys.executable, "-c", "pass"])
    imported = median_s([sys.executable, "-c", "import mlobs"])
    version = median_s([MLOBS_CLI, "--version"])
    print(f"start-up (median of {RUNS} fresh interpreters)")
    print(f"  python -c pass          {bare * 1000:7.1f} ms")
    print(f"  python -c 'import mlobs' {imported * 1000:6.1f} ms (target ≤ 150 ms)")
    print(f"  mlobs --version         {version * 1000:7.1f} ms (target ≤ 300 ms)")
    heavy = loaded_heavy("import mlobs")
    cli_heavy = loaded_heavy("import sys; sys.argv = ['mlobs', '--version']\n"
                             "from mlobs.cli.main import main\n"
                             "try:\n    main()\nexcept SystemExit:\n    pass")
    print(f"  heavy modules after import mlobs: {heavy or 'none'}; "
          f"after mlobs --version: {cli_heavy or 'none'}")
    return {"python_ms": bare * 1000, "import_mlobs_ms": imported * 1000,
            "mlobs_version_ms": version * 1000,
            "heavy_modules_loaded": float(len(heavy) + len(cli_heavy))}


if __name__ == "__main__":
    main()
