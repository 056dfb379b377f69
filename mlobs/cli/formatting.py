"""How the commands print values: one rule per unit, and one mark for "not measured".

Every table cell of a missing value is :data:`MISSING`; numbers keep one decimal.
"""

from __future__ import annotations

from datetime import datetime, timezone

#: the cell of a value that was not measured or does not apply.
MISSING = "-"


def ms(value: float | None) -> str:
    """A duration in milliseconds: ``12.3``."""
    return MISSING if value is None else f"{value:.1f}"


def mib(value: float | None) -> str:
    """A size in bytes shown in MiB: ``187.7``."""
    return MISSING if value is None else f"{value / 2**20:.1f}"


def pct(value: float | None) -> str:
    """A rate in [0, 1] shown in percent: ``2.5``."""
    return MISSING if value is None else f"{100 * value:.1f}"


def when(value: datetime | None, *, minutes: bool = False) -> str:
    """A time in UTC: ``2026-05-01 12:00:00`` (``2026-05-01 12:00`` with ``minutes``)."""
    if value is None:
        return MISSING
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M" if minutes
                                                   else "%Y-%m-%d %H:%M:%S")


def size(n: int) -> str:
    """A byte count, exact and readable: ``512 B``, ``1536 B (1.5 KiB)``."""
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{n} B ({value:.1f} {unit})"
