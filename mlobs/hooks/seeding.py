"""Setting the random seed through mlobs, so that the run records it (rules §5).

Determinism is best-effort within one environment; the seed, engine, precision, device
and CUDA/cuDNN versions recorded on the run are what makes a result reproducible.
"""

from __future__ import annotations

import random
import sys

from mlobs.core.checks import check_int
from mlobs.core.limits import SEED_BOUND
from mlobs.hooks.context import resolve_run


def set_seed(seed: int) -> list[str]:
    """Seed Python's ``random`` and, when the program already imported them, NumPy's
    global generator and torch (CPU and every CUDA device); record the seed on the
    current run's environment.

    Args:
        seed: a non-negative integer below 2**32 (NumPy's bound).

    Returns:
        The libraries seeded, e.g. ``["random", "numpy", "torch"]``.

    Raises:
        ConfigError: ``seed`` is not an integer in range.
    """
    seed = check_int("seed", seed, 0, below=SEED_BOUND, bound_reason="NumPy's bound")
    random.seed(seed)
    seeded = ["random"]
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed(seed)
        seeded.append("numpy")
    torch = sys.modules.get("torch")  # never imported by mlobs itself
    if torch is not None:
        torch.manual_seed(seed)  # seeds every CUDA device too
        seeded.append("torch")
    run = resolve_run()
    if run is not None:
        run.record.environment["seed"] = seed
        run.record.environment["seeded"] = seeded
    return seeded
