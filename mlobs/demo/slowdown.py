"""Deliberate slowdowns of demo components (``mlobs demo --slow NAME=FACTOR``), to see a
drift check find exactly the component that got slower.

A slowed component works on, at the end of its body, ``FACTOR - 1`` times what the body
took, inside the component: the body's part of its recorded duration grows by that
factor (the cache lookup and store around it do not). It keeps its core busy rather than
sleeping, as more computation would (a sleeping core comes back with cold caches and a
lower clock, which slowed the next components too), and gives the GIL up at each turn, so
components in other threads go on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from mlobs.core.errors import ConfigError

_factors: dict[str, float] = {}


def set_slowdowns(factors: Mapping[str, float], known: set[str]) -> None:
    """Slow the components ``factors`` names by their factor (>= 1) from now on.

    Raises:
        ConfigError: an unknown component or a factor below 1.
    """
    unknown = sorted(set(factors) - known)
    if unknown:
        raise ConfigError(f"--slow names no demo component: {unknown}; the components are "
                          f"{sorted(known)}")
    for name, factor in factors.items():
        if not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor >= 1):
            raise ConfigError(f"--slow {name}=FACTOR needs a factor >= 1, got {factor!r}")
    _factors.clear()
    _factors.update(factors)


@contextmanager
def slowed(name: str) -> Iterator[None]:
    """Around a component's body: works on ``factor - 1`` times the body's time after it."""
    factor = _factors.get(name)
    if factor is None or factor == 1:
        yield
        return
    started = time.perf_counter()
    yield
    now = time.perf_counter()
    deadline = now + (factor - 1) * (now - started)
    while time.perf_counter() < deadline:
        time.sleep(0)  # yields the GIL without leaving the core idle
