"""``make bench``'s results as a pytest-benchmark-compatible JSON file.

Each benchmark module is one entry: ``stats`` hold its wall time (one round, seconds,
with the raw ``data``), and ``extra_info`` the figures it measured, which the
``[[figure]]`` budgets of ``perf-budgets.toml`` check through ``mlobs gate``.
"""

from __future__ import annotations

import json
import math
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def _commit() -> dict[str, Any]:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
        return done.stdout.strip()

    return {"id": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain")),
            "project": "mlobs", "branch": git("rev-parse", "--abbrev-ref", "HEAD")}


def entry(name: str, seconds: float, figures: dict[str, Any]) -> dict[str, Any]:
    """One benchmark entry (pytest-benchmark 5's layout) for a module that ran once."""
    extra = {k: v for k, v in figures.items()
             if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
    stats = {"min": seconds, "max": seconds, "mean": seconds, "stddev": 0.0, "rounds": 1,
             "median": seconds, "iqr": 0.0, "q1": seconds, "q3": seconds,
             "iqr_outliers": 0, "stddev_outliers": 0, "outliers": "0;0",
             "ld15iqr": seconds, "hd15iqr": seconds, "ops": 1 / seconds if seconds else 0.0,
             "total": seconds, "data": [seconds], "iterations": 1}
    return {"group": None, "name": name, "fullname": f"tests/perf/bench_{name}.py::main",
            "params": None, "param": None, "extra_info": extra,
            "options": {"disable_gc": False, "timer": "perf_counter", "min_rounds": 1,
                        "max_time": None, "min_time": None, "warmup": False},
            "stats": stats}


def write(path: Path, entries: list[dict[str, Any]]) -> None:
    document = {
        "machine_info": {"node": platform.node(), "processor": platform.processor(),
                         "machine": platform.machine(),
                         "python_implementation": platform.python_implementation(),
                         "python_version": platform.python_version(),
                         "system": platform.system(), "release": platform.release()},
        "commit_info": _commit(), "benchmarks": entries,
        "datetime": datetime.now(timezone.utc).isoformat(), "version": "5.1.0",
        "generator": f"mlobs make bench (Python {sys.version.split()[0]})"}
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
