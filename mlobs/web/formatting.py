"""How the pages show values (Jinja2 filters): units spelled out, one mark for a value
that was not measured."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

#: what a page shows for a missing value.
MISSING = "–"


def duration_ms(value: float | None) -> str:
    """A duration given in milliseconds: ``12.3 ms``; from 10 s on in seconds, ``12.34 s``."""
    if value is None:
        return MISSING
    return f"{value:.1f} ms" if value < 10_000 else f"{value / 1000:.2f} s"


def size_bytes(value: float | None) -> str:
    """A byte count in the largest binary unit under 1024: ``187.7 MiB``."""
    if value is None:
        return MISSING
    number = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(number) < 1024:
            return f"{number:.0f} {unit}" if unit == "B" else f"{number:.1f} {unit}"
        number /= 1024
    return f"{number:.1f} TiB"


def percent(value: float | None) -> str:
    """A rate in [0, 1] as ``2.5 %``."""
    return MISSING if value is None else f"{100 * value:.1f} %"


def utc(value: datetime | None) -> str:
    """``2026-05-01 12:00:00`` (UTC)."""
    if value is None:
        return MISSING
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def short(signature: str | None, chars: int = 12) -> str:
    """A signature or run id cut to its first characters."""
    return MISSING if not signature else signature[:chars]


def or_missing(value: Any) -> Any:
    return MISSING if value is None or value == "" else value


FILTERS = {"duration_ms": duration_ms, "size_bytes": size_bytes, "percent": percent,
           "utc": utc, "short": short, "or_missing": or_missing}
