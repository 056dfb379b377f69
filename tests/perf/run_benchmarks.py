"""``make bench``: every benchmark, each printing figures measured in this same run, then
the release gate on mlobs's own budgets (``perf-budgets.toml``).

    python tests/perf/run_benchmarks.py [--only NAME,NAME] [--json FILE]

The figures go to a pytest-benchmark-compatible JSON file (default
``bench-results.json``); the exit code is ``mlobs gate``'s: 1 when a budget is breached,
else 0 (a figure not measured, e.g. PostgreSQL unreachable, is shown as unknown).
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import bench_async  # noqa: E402
import bench_cache  # noqa: E402
import bench_drift  # noqa: E402
import bench_gate  # noqa: E402
import bench_import  # noqa: E402
import bench_ingest  # noqa: E402
import bench_overhead  # noqa: E402
import bench_pg_ingest  # noqa: E402
import bench_rollup  # noqa: E402
import bench_scale  # noqa: E402
import bench_ui  # noqa: E402
import benchjson  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = {
    "overhead": bench_overhead.main,
    "import": bench_import.main,
    "scale": bench_scale.main,  # N = 100 to 10,000 components per run: about 3 minutes
    "ingest": bench_ingest.main,
    "pg_ingest": bench_pg_ingest.main,  # prints a SKIPPED line when PostgreSQL is unreachable
    "cache": bench_cache.main,
    "async": bench_async.main,
    "drift": bench_drift.main,
    "gate": bench_gate.main,  # 40 gates over a real pipeline: about 8 minutes
    "rollup": bench_rollup.main,  # 10M rows on SQLite: about 6 minutes
    "ui": bench_ui.main,  # 100k runs / 1M component_runs: seeding ~30 s, then ~1 minute
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    parser.add_argument("--json", default=str(ROOT / "bench-results.json"), metavar="FILE",
                        help="where the pytest-benchmark-compatible results go")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(BENCHMARKS)
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; known: {', '.join(BENCHMARKS)}")
    entries = []
    for name in names:
        start = time.perf_counter()
        figures = BENCHMARKS[name]() or {}
        entries.append(benchjson.entry(name, time.perf_counter() - start, figures))
        print()
    benchjson.write(Path(args.json), entries)
    print(f"results: {args.json}")
    # a figure nobody measured (PostgreSQL unreachable, --only) is unknown, not a failure
    gate = [sys.executable, "-m", "mlobs.cli.main", "gate", "--candidate-json", args.json,
            "--budgets", str(ROOT / "perf-budgets.toml"), "--no-write", "--unknown-exit", "0"]
    return subprocess.run(gate, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
