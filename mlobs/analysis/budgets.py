"""The release gate's configuration: its statistical policy and the budgets file.

``perf-budgets.toml`` (schema in ``docs/gating.md``) has three kinds of table, all
optional:

* ``[gate]``: the policy (:class:`GatePolicy`): ``alpha``, ``min_tolerance``,
  ``cv_factor``, ``min_runs``, ``rate_tolerance``;
* ``[[budget]]``: absolute limits of one component (optionally of one model_signature,
  given whole or as a prefix of at least 8 characters, and of one profile):
  ``max_p95_duration_ms``, ``max_p99_duration_ms``, ``max_peak_rss_bytes``,
  ``max_peak_gpu_bytes``, ``max_error_rate``, ``max_empty_rate``, ``max_oom_rate``,
  ``min_cache_hit_rate``, ``min_items_per_s``;
* ``[[figure]]``: a limit (``max`` or ``min``) of a figure a benchmark reports in its
  pytest-benchmark ``extra_info`` (``benchmark``, ``name``), e.g. a ratio against a
  baseline measured in the same run.

Every error names the file and line, e.g. ``perf-budgets.toml:12: max_p95_duration_ms
must be a number >= 0, got 'fast'``.
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlobs.core.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: budget key → (the check's name, "max" or "min", what the value is).
BUDGET_LIMITS: Mapping[str, tuple[str, str, str]] = {
    "max_p95_duration_ms": ("p95_duration_ms", "max", "duration"),
    "max_p99_duration_ms": ("p99_duration_ms", "max", "duration"),
    "max_peak_rss_bytes": ("peak_rss_bytes", "max", "bytes"),
    "max_peak_gpu_bytes": ("peak_gpu_bytes", "max", "bytes"),
    "max_error_rate": ("error_rate", "max", "rate"),
    "max_empty_rate": ("empty_rate", "max", "rate"),
    "max_oom_rate": ("oom_rate", "max", "rate"),
    "min_cache_hit_rate": ("cache_hit_rate", "min", "rate"),
    "min_items_per_s": ("items_per_s", "min", "throughput"),
}
_SELECTORS = ("component", "model_signature", "profile")
_SIGNATURE_PREFIX_MIN = 8


@dataclass(frozen=True)
class GatePolicy:
    """When a comparison is a regression, a pass or unknown (rules in
    :mod:`mlobs.analysis.gate`).

    Args:
        alpha: the largest Benjamini–Hochberg adjusted p that is significant.
        min_tolerance: the smallest relative change that can be a regression (0.05: 5%).
        cv_factor: the tolerance is at least this many times the baseline's own
            coefficient of variation (run to run), so a noisy metric needs a larger
            change. Defaults 5% and 3×: the issue's; for scale, CodSpeed measured a 2.66%
            CV on hosted CI runners.
        min_runs: fewer runs than this on a side is ``unknown`` (asv's Mann–Whitney U
            needs about 6 a side before any difference can be significant).
        rate_tolerance: the smallest absolute change of the error rate that can be a
            regression (0.02: two percentage points).
        confidence: of the interval that decides ``pass`` (its bound must be within the
            tolerance).

    Raises:
        ConfigError: a value out of range.
    """

    alpha: float = 0.05
    min_tolerance: float = 0.05
    cv_factor: float = 3.0
    min_runs: int = 6
    rate_tolerance: float = 0.02
    confidence: float = 0.95

    def __post_init__(self) -> None:
        for name in ("alpha", "min_tolerance", "rate_tolerance", "confidence"):
            value = getattr(self, name)
            if not _is_number(value) or not 0 < value < 1:
                raise ConfigError(f"{name} must be a number between 0 and 1, got {value!r}")
        if not _is_number(self.cv_factor) or self.cv_factor < 0:
            raise ConfigError(f"cv_factor must be a number >= 0, got {self.cv_factor!r}")
        if isinstance(self.min_runs, bool) or not isinstance(self.min_runs, int) \
                or not 2 <= self.min_runs <= 10_000:
            raise ConfigError(f"min_runs must be an integer from 2 to 10000, "
                              f"got {self.min_runs!r}")


@dataclass(frozen=True)
class ComponentBudget:
    """Absolute limits of a component (``limits``: budget key → value, in the key's unit).

    ``model_signature`` matches a signature it equals or starts; ``profile`` the runs'
    profile. ``line`` is where the table starts in its file (0 when built in code).
    """

    component: str
    limits: Mapping[str, float]
    model_signature: str | None = None
    profile: str | None = None
    line: int = 0

    def matches(self, component: str, model_signature: str | None) -> bool:
        if component != self.component:
            return False
        return self.model_signature is None or (
            model_signature is not None and model_signature.startswith(self.model_signature))

    def describe(self) -> str:
        parts = [self.component]
        if self.model_signature:
            parts.append(f"model_signature {self.model_signature[:12]}")
        if self.profile:
            parts.append(f"profile {self.profile}")
        return ", ".join(parts)


@dataclass(frozen=True)
class FigureBudget:
    """A limit of one figure of a benchmark's ``extra_info`` (``max`` and/or ``min``)."""

    benchmark: str
    name: str
    max: float | None = None
    min: float | None = None
    description: str = ""
    line: int = 0


@dataclass(frozen=True)
class Budgets:
    """A parsed budgets file (empty by default: no limits, the default policy)."""

    policy: GatePolicy = field(default_factory=GatePolicy)
    components: tuple[ComponentBudget, ...] = ()
    figures: tuple[FigureBudget, ...] = ()
    path: str | None = None


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


class _Lines:
    """Where each table and key of a TOML text starts (tomllib keeps no positions)."""

    _HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.-]+)\s*\]\]?")
    _KEY = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=")

    def __init__(self, text: str) -> None:
        self.tables: dict[tuple[str, int], int] = {}
        self.keys: dict[tuple[str, int, str], int] = {}
        counts: dict[str, int] = {}
        table, index = "", 0
        for number, line in enumerate(text.split("\n"), 1):  # TOML's only line break
            header = self._HEADER.match(line)
            if header:
                table = header.group(2)
                index = counts.get(table, -1) + 1 if header.group(1) == "[[" else 0
                counts[table] = index
                self.tables[(table, index)] = number
                continue
            key = self._KEY.match(line)
            if key:
                self.keys.setdefault((table, index, key.group(1)), number)

    def of(self, table: str, index: int, key: str | None = None) -> int:
        if key is not None and (table, index, key) in self.keys:
            return self.keys[(table, index, key)]
        return self.tables.get((table, index), 1)


def load_budgets(path: str | os.PathLike[str]) -> Budgets:
    """Read and check a budgets file.

    Raises:
        ConfigError: the file cannot be read, is not TOML, or breaks the schema (the
            message names the file and line).
    """
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the budgets file {name}: {exc}") from exc
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{name}: not valid TOML: {exc}") from exc
    return parse_budgets(document, name=name, lines=_Lines(text))


def parse_budgets(document: Mapping[str, Any], *, name: str = "budgets",
                  lines: _Lines | None = None) -> Budgets:
    """Check a budgets document already parsed from TOML (see :func:`load_budgets`)."""
    lines = lines or _Lines("")

    def fail(table: str, index: int, key: str | None, message: str) -> ConfigError:
        return ConfigError(f"{name}:{lines.of(table, index, key)}: {message}")

    for key, value in document.items():
        if not isinstance(value, (dict, list)):  # a key before any table header
            raise fail("", 0, key, f"unknown key {key!r} at the top level (policy keys go "
                       "under [gate])")
    unknown = sorted(set(document) - {"gate", "budget", "figure"})
    if unknown:
        raise fail(unknown[0], 0, None, f"unknown table {unknown[0]!r} (expected [gate], "
                   "[[budget]] or [[figure]])")
    policy = _policy(document.get("gate", {}), fail)
    budgets = tuple(_component(i, table, fail, lines)
                    for i, table in enumerate(_tables(document, "budget", fail)))
    figures = tuple(_figure(i, table, fail, lines)
                    for i, table in enumerate(_tables(document, "figure", fail)))
    return Budgets(policy, budgets, figures, name)


def _tables(document: Mapping[str, Any], key: str, fail: Any) -> list[Mapping[str, Any]]:
    tables = document.get(key, [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise fail(key, 0, None, f"{key} must be an array of tables: write [[{key}]]")
    return tables


def _policy(table: Any, fail: Any) -> GatePolicy:
    if not isinstance(table, dict):
        raise fail("gate", 0, None, "gate must be a table: write [gate]")
    allowed = {"alpha", "min_tolerance", "cv_factor", "min_runs", "rate_tolerance",
               "confidence"}
    for key in table:
        if key not in allowed:
            raise fail("gate", 0, key, f"unknown key {key!r} in [gate] (allowed: "
                       f"{', '.join(sorted(allowed))})")
    try:
        return GatePolicy(**table)
    except ConfigError as exc:
        key = str(exc).split(" ", 1)[0]
        raise fail("gate", 0, key, str(exc)) from None


def _component(index: int, table: Mapping[str, Any], fail: Any,
               lines: _Lines) -> ComponentBudget:
    for key in table:
        if key not in _SELECTORS and key not in BUDGET_LIMITS:
            raise fail("budget", index, key, f"unknown key {key!r} in [[budget]] (limits: "
                       f"{', '.join(BUDGET_LIMITS)})")
    for key in _SELECTORS:
        value = table.get(key)
        if (key == "component" or value is not None) and \
                (not isinstance(value, str) or not value.strip()):
            raise fail("budget", index, key if key in table else None,
                       f"[[budget]] needs {key} = \"...\" (a non-empty string)"
                       if key == "component" else f"{key} must be a non-empty string")
    signature = table.get("model_signature")
    if signature is not None and len(signature) < _SIGNATURE_PREFIX_MIN:
        raise fail("budget", index, "model_signature", "model_signature must be the "
                   f"signature or a prefix of at least {_SIGNATURE_PREFIX_MIN} characters")
    limits: dict[str, float] = {}
    for key, (_, _, kind) in BUDGET_LIMITS.items():
        if key not in table:
            continue
        value = table[key]
        if not _is_number(value) or value < 0 or (kind == "rate" and value > 1):
            bound = "a number from 0 to 1" if kind == "rate" else "a number >= 0"
            raise fail("budget", index, key, f"{key} must be {bound}, got {value!r}")
        limits[key] = float(value)
    if not limits:
        raise fail("budget", index, None, f"[[budget]] of {table['component']!r} sets no "
                   f"limit (one of {', '.join(BUDGET_LIMITS)})")
    return ComponentBudget(table["component"], limits, signature, table.get("profile"),
                           lines.of("budget", index))


def _figure(index: int, table: Mapping[str, Any], fail: Any, lines: _Lines) -> FigureBudget:
    allowed = {"benchmark", "name", "max", "min", "description"}
    for key in table:
        if key not in allowed:
            raise fail("figure", index, key, f"unknown key {key!r} in [[figure]] (allowed: "
                       f"{', '.join(sorted(allowed))})")
    for key in ("benchmark", "name"):
        if not isinstance(table.get(key), str) or not table[key].strip():
            raise fail("figure", index, key if key in table else None,
                       f"[[figure]] needs {key} = \"...\" (a non-empty string)")
    for key in ("max", "min"):
        if key in table and not _is_number(table[key]):
            raise fail("figure", index, key, f"{key} must be a number, got {table[key]!r}")
    if "max" not in table and "min" not in table:
        raise fail("figure", index, None, "[[figure]] needs max = ... or min = ...")
    description = table.get("description", "")
    if not isinstance(description, str):
        raise fail("figure", index, "description", "description must be a string")
    return FigureBudget(table["benchmark"], table["name"], table.get("max"),
                        table.get("min"), description, lines.of("figure", index))
