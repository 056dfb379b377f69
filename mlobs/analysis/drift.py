"""Drift checks: did a component get slower, heavier or fail more than it used to?

:func:`check_drift` compares a **current window** of component invocations with a
**baseline window** (each a time range, a pipeline_version, a set of run ids, or a mix),
per component × model_signature:

* distributions, stratified by cache outcome (``cache_hit`` vs ``computed``: pooled, a
  change of the hit rate would look like a latency change): ``duration_ms``,
  ``peak_rss_bytes``, ``peak_gpu_allocated_bytes``, ``items_per_s`` (items per second of
  the invocation) and every user metric (``metric:<name>``), over the invocations that did
  not fail. Test: p = 2 · min(Kolmogorov–Smirnov, Mann–Whitney U) (Bonferroni over the two
  tests); effect: the relative change of the p95 or of the median, whichever is larger,
  with a bootstrap interval, when both samples are positive; for a metric with zeros or
  negative values (where a ratio means nothing), the normalised Wasserstein distance.
  The PSI is reported beside it;
* rates over every invocation (stratum ``all``): ``error_rate``, ``empty_rate``,
  ``oom_rate`` (invocations with an OOM) and ``cache_hit_rate`` (when the component
  caches). Test: Fisher's exact test; effect: the absolute change.

The p-values of one call are adjusted together (Benjamini–Hochberg). A check is
``drift`` only when the adjusted p is at most ``alpha`` **and** the effect is beyond the
tolerance **and** (distributions) its 95% bootstrap interval excludes "no change": a
p95 estimated from few samples can move a lot by chance. With fewer than
``min_samples`` invocations on either side it is ``insufficient_data``, never "no drift".

Defaults (:class:`DriftPolicy`) and their anchors: alpha 0.05 (Evidently's KS threshold);
a 10% change of p95 or median; one percentage point on a rate (the issue suggested two;
with 2,000 invocations a side, a 2% → 4% error rate is then found in about half the
trials only, see ``tests/perf/bench_drift.py``); 30 samples a side. Evidently's PSI ≥ 0.1
and normalised Wasserstein ≥ 0.1 are reported beside each check for reference.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Table, and_, select
from sqlalchemy.exc import SQLAlchemyError

from mlobs.analysis.stats import benjamini_hochberg, compare_distributions, compare_rates
from mlobs.core.checks import check_finite, check_int, check_time_range, finite_number
from mlobs.core.errors import ConfigError, WarehouseError
from mlobs.warehouse.engine import create_warehouse_engine, display_url, require_sqlite_file
from mlobs.warehouse.migrate import check_schema
from mlobs.warehouse.models import ComponentRun, DriftCheck, Run

COMPONENTS: Table = ComponentRun.__table__  # type: ignore[assignment]
RUNS: Table = Run.__table__  # type: ignore[assignment]
CHECKS: Table = DriftCheck.__table__  # type: ignore[assignment]

DISTRIBUTION_METRICS = ("duration_ms", "peak_rss_bytes", "peak_gpu_allocated_bytes",
                        "items_per_s")
RATE_METRICS = ("error_rate", "empty_rate", "oom_rate", "cache_hit_rate")


@dataclass(frozen=True)
class Window:
    """Which invocations a side holds: every filter given must match (None: any).

    Args:
        since, until: ``started_at`` in [since, until) (aware datetimes).
        pipeline_version: the runs' pipeline_version.
        run_ids: these runs only.
    """

    since: datetime | None = None
    until: datetime | None = None
    pipeline_version: str | None = None
    run_ids: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        check_time_range("a window", self.since, self.until)
        if not any((self.since, self.until, self.pipeline_version, self.run_ids)):
            raise ConfigError("a window needs a time range, a pipeline_version or run ids")

    def describe(self) -> str:
        """The window as stored in ``drift_checks`` (JSON)."""
        data = {k: v for k, v in asdict(self).items() if v is not None}
        for name in ("since", "until"):
            if name in data:
                data[name] = data[name].astimezone(timezone.utc).isoformat()
        if "run_ids" in data:
            data["run_ids"] = list(data["run_ids"])
        return json.dumps(data, sort_keys=True)


@dataclass(frozen=True)
class DriftPolicy:
    """When a check is drift (see the module docstring for the rules and anchors).

    Args:
        alpha: the largest adjusted p-value that is significant.
        tolerance: the relative change of p95 or median beyond which a distribution
            drifted (0.10: 10%).
        rate_tolerance: the absolute change of a rate beyond which it drifted (0.01: one
            percentage point).
        min_samples: fewer invocations than this on a side: ``insufficient_data``.

    Raises:
        ConfigError: a value out of range.
    """

    alpha: float = 0.05
    tolerance: float = 0.10
    rate_tolerance: float = 0.01
    min_samples: int = 30

    def __post_init__(self) -> None:
        for name in ("alpha", "tolerance", "rate_tolerance"):
            if not 0 < check_finite(name, getattr(self, name), positive=True) < 1:
                raise ConfigError(f"{name} must be between 0 and 1, got {getattr(self, name)}")
        check_int("min_samples", self.min_samples, 2)


@dataclass
class DriftResult:
    """One check (a row of ``drift_checks``; column meanings in :class:`DriftCheck`)."""

    component: str
    model_signature: str | None
    stratum: str
    metric: str
    n_baseline: int
    n_current: int
    threshold: float
    verdict: str = "insufficient_data"
    baseline_value: float | None = None
    current_value: float | None = None
    statistic: float | None = None
    p_value: float | None = None
    adjusted_p: float | None = None
    effect: float | None = None
    effect_low: float | None = None
    effect_high: float | None = None
    wasserstein: float | None = None
    psi: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in asdict(self).items()}


@dataclass
class DriftReport:
    """What :func:`check_drift` found."""

    baseline: Window
    current: Window
    policy: DriftPolicy
    checked_at: datetime
    checks: list[DriftResult] = field(default_factory=list)

    @property
    def drifted(self) -> list[DriftResult]:
        return [c for c in self.checks if c.verdict == "drift"]

    def to_dict(self) -> dict[str, Any]:
        return {"checked_at": self.checked_at.isoformat(),
                "baseline": json.loads(self.baseline.describe()),
                "current": json.loads(self.current.describe()),
                "policy": asdict(self.policy),
                "checks": [c.to_dict() for c in self.checks]}


def _filters(window: Window, run_ids: Sequence[str] | None) -> list[Any]:
    where = []
    if window.since is not None:
        where.append(COMPONENTS.c.started_at >= window.since)
    if window.until is not None:
        where.append(COMPONENTS.c.started_at < window.until)
    if window.pipeline_version is not None:
        where.append(RUNS.c.pipeline_version == window.pipeline_version)
    if run_ids is not None:
        where.append(COMPONENTS.c.run_id.in_(list(run_ids)))
    return where


def _rows(conn: Any, window: Window, component: str | None) -> list[Any]:
    c = COMPONENTS.c
    ids = window.run_ids
    # chunks of 500 keep the IN (...) lists below every backend's bind-parameter limit
    chunks = [None] if ids is None else [ids[i:i + 500] for i in range(0, len(ids), 500)]
    found = []
    for chunk in chunks:
        query = (select(c.component, c.model_signature, c.status, c.cache_status,
                        c.oom_count, c.duration_ms, c.peak_rss_bytes,
                        c.peak_gpu_allocated_bytes, c["items"].label("n_items"), c.metrics)
                 .select_from(COMPONENTS.join(RUNS, RUNS.c.run_id == c.run_id))
                 .where(and_(*_filters(window, chunk))))
        if component is not None:
            query = query.where(c.component == component)
        found.extend(conn.execute(query))
    return found


def _samples(rows: Iterable[Any]) -> dict[tuple[str, str], list[float]]:
    """(stratum, metric) → values of the invocations that did not fail."""
    found: dict[tuple[str, str], list[float]] = defaultdict(list)
    for row in rows:
        if row.status == "error":
            continue
        stratum = "cache_hit" if row.cache_status == "hit" else "computed"
        for metric in ("duration_ms", "peak_rss_bytes", "peak_gpu_allocated_bytes"):
            value = getattr(row, metric)
            if value is not None:
                found[(stratum, metric)].append(float(value))
        if row.n_items is not None and row.duration_ms and row.duration_ms > 0:
            found[(stratum, "items_per_s")].append(row.n_items / (row.duration_ms / 1000))
        metrics = row.metrics if isinstance(row.metrics, dict) else \
            json.loads(row.metrics or "{}")
        for name, value in metrics.items():
            number = finite_number(value)  # no bool, nothing beyond a float
            if number is not None:
                found[(stratum, f"metric:{name}")].append(float(number))
    return found


def window_samples(conn: Any, window: Window, component: str,
                   model_signature: str | None) -> dict[tuple[str, str], list[float]]:
    """What a stored drift check compared on one side: (stratum, metric) → the values of
    ``component`` × ``model_signature`` in ``window`` (the admin views plot them)."""
    rows = [row for row in _rows(conn, window, component)
            if row.model_signature == model_signature]
    return _samples(rows)


def stored_window(text: str) -> Window:
    """A window as :meth:`Window.describe` stored it.

    Raises:
        ConfigError: not such a JSON document.
    """
    try:
        data = json.loads(text)
        for name in ("since", "until"):
            if name in data:
                data[name] = datetime.fromisoformat(data[name])
        if "run_ids" in data:
            data["run_ids"] = tuple(data["run_ids"])
        return Window(**data)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"not a stored drift window: {text[:80]!r}") from exc


def _rates(rows: Sequence[Any]) -> dict[str, tuple[int, int]]:
    """metric → (events, invocations)."""
    n = len(rows)
    rates = {"error_rate": (sum(r.status == "error" for r in rows), n),
             "empty_rate": (sum(r.status == "empty" for r in rows), n),
             "oom_rate": (sum((r.oom_count or 0) > 0 for r in rows), n)}
    cached = [r for r in rows if r.cache_status in ("hit", "miss")]  # as the rollups: no bypass
    if cached:
        rates["cache_hit_rate"] = (sum(r.cache_status == "hit" for r in cached), len(cached))
    return rates


def _distribution_check(result: DriftResult, a: list[float], b: list[float]) -> None:
    compared = compare_distributions(a, b)
    result.statistic, result.p_value = compared.ks_statistic, compared.p_value
    result.wasserstein, result.psi = compared.wasserstein, compared.psi
    if min(a) > 0 and min(b) > 0:  # the larger relative change of p95 and median
        ratio, low, high = max(
            ((compared.p95_ratio, compared.p95_low, compared.p95_high),
             (compared.median_ratio, compared.median_low, compared.median_high)),
            key=lambda c: abs(c[0] - 1))  # type: ignore[operator]
        result.effect = ratio - 1  # type: ignore[operator]
        result.effect_low = None if low is None else low - 1
        result.effect_high = None if high is None else high - 1
    elif compared.wasserstein is not None:  # zeros or negatives: no ratio means anything
        result.effect = compared.wasserstein
    else:  # a constant baseline: any other value is beyond every tolerance
        result.effect = 0.0 if compared.ks_statistic == 0 else math.inf
    result.baseline_value, result.current_value = compared.baseline_p95, compared.current_p95


def check_drift(db_url: str, baseline: Window, current: Window, *,
                policy: DriftPolicy | None = None, component: str | None = None,
                write: bool = True, now: datetime | None = None) -> DriftReport:
    """Compare ``current`` with ``baseline`` per component × model_signature × stratum.

    Args:
        db_url: the warehouse (read; ``drift_checks`` written unless ``write`` is False).
        baseline, current: the two windows.
        policy: thresholds (default: :class:`DriftPolicy`).
        component: only this component.
        now: the ``checked_at`` of the rows (default: the current time).

    Returns:
        Every check, by component and model_signature: the distributions (by stratum and
        metric), then the rates.

    Raises:
        WarehouseError: the warehouse is missing, not at the current schema, or cannot
            be read or written.
    """
    policy = policy or DriftPolicy()
    require_sqlite_file(db_url)
    engine = create_warehouse_engine(db_url)
    report = DriftReport(baseline, current, policy, now or datetime.now(timezone.utc))
    try:
        check_schema(engine)
        with engine.connect() as conn:
            sides = [_rows(conn, window, component) for window in (baseline, current)]
        groups: dict[tuple[str, str | None], list[list[Any]]] = defaultdict(lambda: [[], []])
        for side, rows in enumerate(sides):
            for row in rows:
                groups[(row.component, row.model_signature)][side].append(row)
        for (name, signature), (rows_a, rows_b) in sorted(
                groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
            report.checks.extend(_group_checks(name, signature, rows_a, rows_b, policy))
        _decide(report.checks, policy)
        if write and report.checks:
            _store(engine, report)
    except SQLAlchemyError as exc:
        raise WarehouseError(f"drift check failed on {display_url(engine)}: {exc}") from exc
    finally:
        engine.dispose()
    return report


def _group_checks(name: str, signature: str | None, rows_a: list[Any], rows_b: list[Any],
                  policy: DriftPolicy) -> list[DriftResult]:
    checks = []
    samples_a, samples_b = _samples(rows_a), _samples(rows_b)
    for stratum, metric in sorted(set(samples_a) | set(samples_b)):
        a, b = samples_a.get((stratum, metric), []), samples_b.get((stratum, metric), [])
        result = DriftResult(name, signature, stratum, metric, len(a), len(b),
                             policy.tolerance)
        if min(len(a), len(b)) >= policy.min_samples:
            _distribution_check(result, a, b)
        checks.append(result)
    rates_a, rates_b = _rates(rows_a), _rates(rows_b)
    for metric in RATE_METRICS:
        (hits_a, n_a), (hits_b, n_b) = rates_a.get(metric, (0, 0)), rates_b.get(metric, (0, 0))
        if n_a == 0 and n_b == 0:
            continue
        result = DriftResult(name, signature, "all", metric, n_a, n_b, policy.rate_tolerance)
        if min(n_a, n_b) >= policy.min_samples:
            compared = compare_rates(hits_a, n_a, hits_b, n_b)
            result.baseline_value, result.current_value = (compared.baseline_rate,
                                                           compared.current_rate)
            result.statistic = result.effect = compared.change
            result.p_value = compared.p_value
        checks.append(result)
    return checks


def _decide(checks: list[DriftResult], policy: DriftPolicy) -> None:
    adjusted = benjamini_hochberg([math.nan if c.p_value is None else c.p_value
                                   for c in checks])
    for check, p in zip(checks, adjusted):
        if check.p_value is None:
            check.verdict = "insufficient_data"
            continue
        check.adjusted_p = p
        beyond = check.effect is not None and abs(check.effect) > check.threshold
        # A bootstrap interval that still holds "no change" is no evidence of one.
        holds_zero = check.effect_low is not None and check.effect_high is not None and \
            check.effect_low <= 0 <= check.effect_high
        check.verdict = "drift" if p <= policy.alpha and beyond and not holds_zero \
            else "no_drift"


def _store(engine: Any, report: DriftReport) -> None:
    baseline, current = report.baseline.describe(), report.current.describe()
    rows = [{**c.to_dict(), "checked_at": report.checked_at, "baseline_window": baseline,
             "current_window": current} for c in report.checks]
    with engine.begin() as conn:
        conn.execute(CHECKS.insert(), rows)
