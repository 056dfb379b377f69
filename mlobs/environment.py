"""Environment capture for the run record: interpreter, OS, host, package versions.

Computed once per process (package metadata lookups take milliseconds) and copied into
every run; the seed, when given to ``mlobs.run``, is added per run.
"""

from __future__ import annotations

import functools
import os
import platform
import socket
import sys
from importlib import metadata
from typing import Any

#: distributions whose versions are recorded when installed.
TRACKED_PACKAGES = ("mlobs", "numpy", "scipy", "scikit-learn", "torch", "onnxruntime",
                    "tensorrt", "transformers", "sqlalchemy")


@functools.lru_cache(maxsize=1)
def process_environment() -> dict[str, Any]:
    """Facts about this process that do not change while it runs."""
    packages = {}
    for name in TRACKED_PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "cpu_count": os.cpu_count(),
        "argv0": os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else None,
        "packages": packages,
    }


def run_environment(seed: int | None) -> dict[str, Any]:
    """The environment recorded on one run."""
    env = dict(process_environment())
    env["pid"] = os.getpid()  # may differ from the cached value after a fork
    if seed is not None:
        env["seed"] = seed
    return env
