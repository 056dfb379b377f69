"""The release gate: did a candidate run set regress against a baseline run set?

:func:`evaluate_gate` takes both sides as :class:`GateInput` (built from the warehouse
or from pytest-benchmark files by :mod:`mlobs.analysis.gate_inputs`) and returns a
:class:`GateReport` of checks of three kinds:

* ``comparison`` (per component × model_signature × stratum × metric; stratum
  ``computed`` or ``cache_hit`` as in the drift checks): ``duration_ms`` (per run, the
  median of the component's invocations), ``peak_rss_bytes`` and
  ``peak_gpu_allocated_bytes`` (per run, the largest), ``items_per_s`` (per run, items
  over seconds of component time; lower is worse), over invocations that did not fail;
  and ``error_rate`` (stratum ``all``, invocations pooled). Verdicts:

  - ``regression``: the Benjamini–Hochberg adjusted p (of p = 2 · min(KS, Mann–Whitney
    U) over the per-run values; Fisher's exact test for the error rate) is at most
    ``alpha`` **and** the change of the median in the bad direction is beyond the
    tolerance, max(``min_tolerance``, ``cv_factor`` × the baseline's run-to-run
    coefficient of variation, :func:`~mlobs.analysis.stats.run_to_run_cv`); for the error
    rate, beyond ``rate_tolerance`` points;
  - ``pass``: not a regression, and the bad-direction bound of the interval of the change
    (Welch's t on the logarithms, ``confidence``) is within the tolerance: whatever the
    true change is, it is likely small;
  - ``unknown``: fewer than ``min_runs`` runs a side, or neither of the above. The check
    says how many more runs a side would likely decide it (``runs_needed``).

  Per run, not per invocation: invocations of one run share the machine's state, so
  pooled they look far more certain than they are. This is asv's and Perfherder's
  choice too (one value per benchmark run).
* ``budget``: an absolute limit of ``perf-budgets.toml`` on the candidate's invocations
  (pooled): ``pass`` / ``breach`` / ``unknown`` (no data to check it on).
* ``figure``: a limit on a figure of a candidate benchmark file's ``extra_info``.

Exit code (:meth:`GateReport.exit_code`): 1 for any regression or breach, else 2 for
any unknown (configurable), else 0.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

import numpy as np

from mlobs.analysis.budgets import BUDGET_LIMITS, Budgets, GatePolicy
from mlobs.analysis.stats import (
    benjamini_hochberg,
    compare_rates,
    compare_shift,
    compare_summaries,
    runs_needed,
)

#: compared metrics → True when a larger value is worse.
COMPARED = {"duration_ms": True, "peak_rss_bytes": True, "peak_gpu_allocated_bytes": True,
            "items_per_s": False}
VERDICTS = ("pass", "regression", "unknown", "breach")


@dataclass
class Invocations:
    """Invocation-level figures of one component × model_signature (for the budgets)."""

    durations_ms: list[float] = field(default_factory=list)  # computed, not failed
    peak_rss_bytes: list[float] = field(default_factory=list)
    peak_gpu_bytes: list[float] = field(default_factory=list)
    total: int = 0
    errors: int = 0
    empties: int = 0
    ooms: int = 0
    hits: int = 0
    misses: int = 0
    items: float = 0.0
    items_seconds: float = 0.0

    def add(self, other: Invocations) -> None:
        for name in _INVOCATION_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))


_INVOCATION_FIELDS = tuple(f.name for f in fields(Invocations))


@dataclass
class GroupData:
    """One component × model_signature on one side.

    Attributes:
        per_run: (stratum, metric) → one value per run (see the module docstring).
        invocations: profile (None when the source has none) → invocation figures.
        runs: how many runs the component appears in.
        summaries: (stratum, metric) → (mean, standard deviation, n) where only a
            summary is known (a pytest-benchmark file saved without raw data).
    """

    per_run: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    invocations: dict[str | None, Invocations] = field(default_factory=dict)
    runs: int = 0
    summaries: dict[tuple[str, str], tuple[float, float, int]] = field(default_factory=dict)

    def pooled(self, profile: str | None = None) -> Invocations:
        """The invocations of ``profile`` (None: of every profile)."""
        total = Invocations()
        for name, part in self.invocations.items():
            if profile is None or name == profile:
                total.add(part)
        return total


@dataclass
class GateInput:
    """One side: groups by (component, model_signature), and benchmark figures by
    (benchmark, figure name). ``description`` says how the side was selected."""

    description: str
    groups: dict[tuple[str, str | None], GroupData] = field(default_factory=dict)
    figures: dict[tuple[str, str], float] = field(default_factory=dict)
    runs: int = 0


@dataclass
class GateCheck:
    """One check (a row of ``gate_results``; values in the metric's unit, changes and
    tolerances as fractions: 0.1 is +10%)."""

    component: str
    model_signature: str | None
    kind: str
    check: str
    stratum: str | None = None
    verdict: str = "unknown"
    n_baseline: int = 0
    n_candidate: int = 0
    baseline_value: float | None = None
    candidate_value: float | None = None
    change: float | None = None
    change_low: float | None = None
    change_high: float | None = None
    tolerance: float | None = None
    limit: float | None = None
    p_value: float | None = None
    adjusted_p: float | None = None
    runs_needed: int | None = None
    message: str = ""
    larger_is_worse: bool = True
    log_sd: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in asdict(self).items()}


@dataclass
class GateReport:
    """What :func:`evaluate_gate` found."""

    baseline: str
    candidate: str
    policy: GatePolicy
    source: str
    checked_at: datetime
    gate_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    checks: list[GateCheck] = field(default_factory=list)

    def having(self, verdict: str) -> list[GateCheck]:
        return [c for c in self.checks if c.verdict == verdict]

    def component_verdicts(self) -> dict[tuple[str, str | None], str]:
        """(component, model_signature) → the worst verdict of its comparisons:
        regression, else unknown, else pass."""
        found: dict[tuple[str, str | None], str] = {}
        rank = {"pass": 0, "unknown": 1, "regression": 2}
        for check in self.checks:
            if check.kind != "comparison":
                continue
            key = (check.component, check.model_signature)
            if rank[check.verdict] >= rank[found.get(key, "pass")]:
                found[key] = check.verdict
        return found

    def exit_code(self, unknown_exit: int = 2) -> int:
        """1 on any regression or budget breach, else ``unknown_exit`` on any unknown or
        when there was nothing to check (no run matched), else 0."""
        if self.having("regression") or self.having("breach"):
            return 1
        return unknown_exit if self.having("unknown") or not self.checks else 0

    def to_dict(self, unknown_exit: int = 2) -> dict[str, Any]:
        return {"gate_id": self.gate_id, "checked_at": self.checked_at.isoformat(),
                "source": self.source, "baseline": self.baseline,
                "candidate": self.candidate, "policy": asdict(self.policy),
                "exit_code": self.exit_code(unknown_exit),
                "components": [{"component": c, "model_signature": s, "verdict": v}
                               for (c, s), v in sorted(self.component_verdicts().items(),
                                                       key=lambda kv: (kv[0][0],
                                                                       kv[0][1] or ""))],
                "checks": [c.to_dict() for c in self.checks]}


def evaluate_gate(baseline: GateInput | None, candidate: GateInput, *,
                  budgets: Budgets | None = None, source: str = "warehouse",
                  now: datetime | None = None) -> GateReport:
    """Compare ``candidate`` with ``baseline`` (None: budgets only) and check the budgets.

    Returns:
        The comparisons by component, model_signature, stratum and metric, then the
        budget checks, then the figure checks.
    """
    budgets = budgets or Budgets()
    policy = budgets.policy
    report = GateReport(baseline.description if baseline else "", candidate.description,
                        policy, source, now or datetime.now(timezone.utc))
    if baseline is not None:
        keys = sorted(set(baseline.groups) | set(candidate.groups),
                      key=lambda k: (k[0], k[1] or ""))
        for key in keys:
            report.checks.extend(_comparisons(key, baseline.groups.get(key, GroupData()),
                                              candidate.groups.get(key, GroupData()),
                                              policy))
        _decide(report.checks, policy)
    report.checks.extend(_budget_checks(candidate, budgets))
    if source == "pytest-benchmark":  # only benchmark files report figures
        report.checks.extend(_figure_checks(candidate, budgets))
    return report


def _comparisons(key: tuple[str, str | None], a: GroupData, b: GroupData,
                 policy: GatePolicy) -> list[GateCheck]:
    checks = []
    for stratum, metric in sorted(set(a.per_run) | set(b.per_run) | set(a.summaries)
                                  | set(b.summaries)):
        side_a, side_b = _values(a, (stratum, metric)), _values(b, (stratum, metric))
        check = GateCheck(key[0], key[1], "comparison", metric, stratum,
                          n_baseline=_count(side_a), n_candidate=_count(side_b),
                          larger_is_worse=COMPARED.get(metric, True))
        if min(check.n_baseline, check.n_candidate) >= policy.min_runs:
            _compare(check, side_a, side_b, policy)
        checks.append(check)
    rates_a, rates_b = a.pooled(), b.pooled()
    if rates_a.total and rates_b.total:  # a side without statuses (benchmarks) has none
        check = GateCheck(key[0], key[1], "comparison", "error_rate", "all",
                          n_baseline=rates_a.total, n_candidate=rates_b.total,
                          tolerance=policy.rate_tolerance)
        if min(a.runs, b.runs) >= policy.min_runs:
            compared = compare_rates(rates_a.errors, rates_a.total, rates_b.errors,
                                     rates_b.total)
            check.baseline_value, check.candidate_value = (compared.baseline_rate,
                                                           compared.current_rate)
            check.change = compared.change
            check.p_value = compared.p_value
        checks.append(check)
    return checks


Side = Sequence[float] | tuple[float, float, int]  # per-run values, or a summary


def _values(data: GroupData, key: tuple[str, str]) -> Side:
    if key in data.per_run:
        return data.per_run[key]
    return data.summaries.get(key, [])


def _count(side: Side) -> int:
    return side[2] if isinstance(side, tuple) else len(side)  # type: ignore[return-value]


def _summary(side: Side) -> tuple[float, float, int]:
    if isinstance(side, tuple):
        return side  # type: ignore[return-value]
    values = np.asarray(side, dtype=float)
    return float(values.mean()), float(values.std(ddof=1)), int(values.size)


def _compare(check: GateCheck, a: Side, b: Side, policy: GatePolicy) -> None:
    if isinstance(a, tuple) or isinstance(b, tuple):  # a summary: Welch on the means
        compared = compare_summaries(_summary(a), _summary(b), confidence=policy.confidence)
    else:
        compared = compare_shift(a, b, confidence=policy.confidence)
    check.baseline_value, check.candidate_value = (compared.baseline_median,
                                                   compared.current_median)
    check.p_value, check.log_sd = compared.p_value, compared.log_sd
    cv = compared.baseline_cv
    check.tolerance = max(policy.min_tolerance, policy.cv_factor * cv) if cv is not None \
        else policy.min_tolerance
    if compared.ratio is None:  # a zero baseline: any other value is a change beyond all
        check.change = 0.0 if compared.current_median == 0 else math.inf
        if compared.ratio_low == compared.ratio_high == 1.0:  # zeros both sides
            check.change_low = check.change_high = 0.0
        return
    check.change = compared.ratio - 1
    if compared.ratio_low is not None and compared.ratio_high is not None:
        check.change_low, check.change_high = compared.ratio_low - 1, compared.ratio_high - 1


def _worse(check: GateCheck) -> tuple[float | None, float | None]:
    """(the change, the interval's bound on the bad side), turned so positive is worse."""
    if check.larger_is_worse:
        return check.change, check.change_high
    return (None if check.change is None else -check.change,
            None if check.change_low is None else -check.change_low)


def _separation_runs(tests: int, alpha: float) -> int:
    """The fewest runs a side at which a complete separation of the two samples could be
    significant after adjustment (the smallest exact two-sided Mann–Whitney p is
    2 / C(2n, n), doubled for the KS/MWU minimum)."""
    threshold = alpha / max(1, tests)
    n = 2
    while 4 / math.comb(2 * n, n) > threshold and n < 1000:
        n += 1
    return n


def _decide(checks: list[GateCheck], policy: GatePolicy) -> None:
    compared = [c for c in checks if c.kind == "comparison"]
    adjusted = benjamini_hochberg([math.nan if c.p_value is None else c.p_value
                                   for c in compared])
    separation = _separation_runs(sum(c.p_value is not None for c in compared), policy.alpha)
    for check, p in zip(compared, adjusted):
        n = min(check.n_baseline, check.n_candidate)
        if check.check == "error_rate":
            _decide_rate(check, p, policy)
            continue
        if check.p_value is None:
            check.verdict = "unknown"
            if n == 0:  # more runs cannot help: a new or removed component or metric
                side = "candidate" if check.n_candidate else "baseline"
                check.message = f"only in the {side}: nothing to compare with"
            else:
                check.runs_needed = policy.min_runs - n
                check.message = (f"{n} run(s) a side with this component; the gate needs "
                                 f"{policy.min_runs}")
            continue
        check.adjusted_p = p
        (bad, bound), tolerance = _worse(check), check.tolerance or policy.min_tolerance
        if p <= policy.alpha and bad is not None and bad > tolerance:
            check.verdict = "regression"
            check.message = f"{percent(bad)} worse, beyond the tolerance {percent(tolerance)}"
        elif bound is not None and bound <= tolerance and (bad or 0.0) <= tolerance:
            check.verdict = "pass"
            if tolerance > policy.min_tolerance:  # say why a large change may pass
                check.message = (f"noisy baseline: tolerance {tolerance:.1%} is "
                                 f"{policy.cv_factor:g} x its run-to-run CV")
        else:
            check.verdict = "unknown"
            distance = abs(math.log1p(tolerance) - math.log1p(max(bad or 0.0, -0.99)))
            needed = runs_needed(check.log_sd, distance, n_now=n)
            check.runs_needed = max(needed, separation - n, 1)
            check.message = (f"change {percent(check.change or 0.0)} against a tolerance "
                             f"of {abs(tolerance):.1%} not decided; about "
                             f"{check.runs_needed} more run(s) a side")


def _decide_rate(check: GateCheck, p: float, policy: GatePolicy) -> None:
    if check.p_value is None:
        check.verdict = "unknown"
        check.message = "too few runs a side"
        return
    check.adjusted_p = p
    change = check.change or 0.0
    if change <= policy.rate_tolerance:
        check.verdict = "pass"
    elif p <= policy.alpha:
        check.verdict = "regression"
        check.message = (f"error rate {check.baseline_value:.1%} -> "
                         f"{check.candidate_value:.1%}")
    else:
        check.message = (f"error rate up {change * 100:.1f} points but not significant; "
                         "more runs would decide it")


def percent(fraction: float | None) -> str:
    """A signed change for reports: ``+10.3%``, ``inf``, ``-`` when missing."""
    if fraction is None:
        return "-"
    return "inf" if math.isinf(fraction) else f"{fraction:+.1%}"


def _budget_value(key: str, inv: Invocations) -> float | None:
    if key in ("max_p95_duration_ms", "max_p99_duration_ms"):
        q = 95 if "p95" in key else 99
        return float(np.percentile(inv.durations_ms, q)) if inv.durations_ms else None
    if key == "max_peak_rss_bytes":
        return max(inv.peak_rss_bytes) if inv.peak_rss_bytes else None
    if key == "max_peak_gpu_bytes":
        return max(inv.peak_gpu_bytes) if inv.peak_gpu_bytes else None
    if key in ("max_error_rate", "max_empty_rate", "max_oom_rate"):
        events = {"max_error_rate": inv.errors, "max_empty_rate": inv.empties,
                  "max_oom_rate": inv.ooms}[key]
        return events / inv.total if inv.total else None
    if key == "min_cache_hit_rate":
        lookups = inv.hits + inv.misses
        return inv.hits / lookups if lookups else None
    return inv.items / inv.items_seconds if inv.items_seconds > 0 else None


def _budget_checks(candidate: GateInput, budgets: Budgets) -> list[GateCheck]:
    checks = []
    for budget in budgets.components:
        keys = [k for k in sorted(candidate.groups, key=lambda k: (k[0], k[1] or ""))
                if budget.matches(*k)]
        for key in keys or [(budget.component, budget.model_signature)]:
            data = candidate.groups.get(key, GroupData())
            inv = data.pooled(budget.profile)
            for limit_key, limit in budget.limits.items():
                name, direction, _ = BUDGET_LIMITS[limit_key]
                check = GateCheck(key[0], key[1], "budget", name, limit=limit,
                                  n_candidate=inv.total)
                value = _budget_value(limit_key, inv) if keys else None
                check.candidate_value = value
                if value is None:
                    check.message = (f"no data for {name} of {budget.describe()} in the "
                                     f"candidate (budget at line {budget.line})")
                elif (value > limit) if direction == "max" else (value < limit):
                    check.verdict = "breach"
                    check.message = (f"{name} {value:.6g} {'>' if direction == 'max' else '<'}"
                                     f" budget {limit:.6g} (line {budget.line})")
                else:
                    check.verdict = "pass"
                checks.append(check)
    return checks


def _figure_checks(candidate: GateInput, budgets: Budgets) -> list[GateCheck]:
    checks = []
    for figure in budgets.figures:
        value = candidate.figures.get((figure.benchmark, figure.name))
        limit = figure.max if figure.max is not None else figure.min
        check = GateCheck(figure.benchmark, None, "figure", figure.name,
                          candidate_value=value, limit=limit, message=figure.description)
        if value is None:
            check.message = (f"{figure.benchmark} reported no figure {figure.name!r} "
                             f"(budget at line {figure.line})")
        elif figure.max is not None and value > figure.max:
            check.verdict = "breach"
            check.message = f"{figure.name} {value:.6g} > {figure.max:.6g}: {figure.description}"
        elif figure.min is not None and value < figure.min:
            check.verdict = "breach"
            check.limit = figure.min
            check.message = f"{figure.name} {value:.6g} < {figure.min:.6g}: {figure.description}"
        else:
            check.verdict = "pass"
        checks.append(check)
    return checks


def figures_of(extra_info: Mapping[str, Any]) -> dict[str, float]:
    """The numeric entries of a benchmark's ``extra_info`` (others are left out)."""
    return {k: float(v) for k, v in extra_info.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
