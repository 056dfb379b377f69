"""How the commands print values: one rule per unit, and one mark for "not measured".

Every table cell of a missing value is :data:`MISSING`; numbers keep one decimal.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

#: the cell of a value that was not measured or does not apply.
MISSING = "-"


def tabulate(*args: Any, **kwargs: Any) -> str:
    """:func:`tabulate.tabulate`, imported on the first table: its import (importlib.metadata,
    wcwidth) costs more than building the whole parser, which every command pays."""
    from tabulate import tabulate as _tabulate

    return _tabulate(*args, **kwargs)


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


#: a ``runs list`` labels cell is cut to this many characters.
LABELS_CELL_MAX_CHARS = 40


def labels_text(labels: Mapping[str, str], max_chars: int | None = None) -> str:
    """Labels as ``k=v,k=v`` (sorted by key; unprintable characters escaped), cut to
    ``max_chars`` with ``...``; :data:`MISSING` when there are none."""
    if not labels:
        return MISSING
    text = ",".join(f"{_printable(k)}={_printable(v)}" for k, v in sorted(labels.items()))
    if max_chars is not None and len(text) > max_chars:
        return text[:max_chars - 3] + "..."
    return text


def _printable(text: str) -> str:
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")
