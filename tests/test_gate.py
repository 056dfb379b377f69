"""The release gate's decisions (:mod:`mlobs.analysis.gate`) on known samples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlobs.analysis.budgets import Budgets, ComponentBudget, FigureBudget, GatePolicy
from mlobs.analysis.gate import GateInput, GroupData, Invocations, evaluate_gate
from mlobs.analysis.stats import compare_shift, compare_summaries


def _side(values: dict[str, list[float]], *, errors: dict[str, int] | None = None,
          items: float = 0.0) -> GateInput:
    """One value per run per component (durations in ms)."""
    side = GateInput("test side")
    for name, durations in values.items():
        failed = (errors or {}).get(name, 0)
        side.groups[(name, "s" * 64)] = GroupData(
            per_run={("computed", "duration_ms"): list(durations)},
            invocations={"baseline": Invocations(
                durations_ms=list(durations), total=len(durations) + failed, errors=failed,
                items=items * len(durations), items_seconds=sum(durations) / 1000)},
            runs=len(durations))
        side.runs = max(side.runs, len(durations))
    return side


def _noisy(rng, n, scale=1.0, cv=0.02, median=100.0):
    return list(median * scale * np.exp(cv * rng.standard_normal(n)))


def _verdicts(report, kind="comparison"):
    return {(c.component, c.check): c.verdict for c in report.checks if c.kind == kind}


def test_a_slowdown_is_a_regression_of_that_component_only():
    rng = np.random.default_rng(3)
    baseline = _side({"asr": _noisy(rng, 10), "ocr": _noisy(rng, 10)})
    candidate = _side({"asr": _noisy(rng, 10, 1.15), "ocr": _noisy(rng, 10)})
    report = evaluate_gate(baseline, candidate)
    verdicts = _verdicts(report)
    assert verdicts[("asr", "duration_ms")] == "regression"
    assert verdicts[("ocr", "duration_ms")] == "pass"
    asr = next(c for c in report.checks if c.component == "asr" and c.check == "duration_ms")
    assert asr.change == pytest.approx(np.median(candidate.groups[("asr", "s" * 64)].per_run[
        ("computed", "duration_ms")]) / np.median(baseline.groups[("asr", "s" * 64)].per_run[
            ("computed", "duration_ms")]) - 1)
    assert asr.adjusted_p <= 0.05 and asr.change > asr.tolerance
    assert report.component_verdicts() == {("asr", "s" * 64): "regression",
                                           ("ocr", "s" * 64): "pass"}
    assert report.exit_code() == 1


def test_the_same_code_passes_and_an_improvement_is_no_regression():
    rng = np.random.default_rng(4)
    same = evaluate_gate(_side({"asr": _noisy(rng, 12)}), _side({"asr": _noisy(rng, 12)}))
    assert _verdicts(same)[("asr", "duration_ms")] == "pass"
    faster = evaluate_gate(_side({"asr": _noisy(rng, 12)}), _side({"asr": _noisy(rng, 12, 0.7)}))
    check = next(c for c in faster.checks if c.check == "duration_ms")
    assert check.verdict == "pass" and check.change < -0.2
    assert same.exit_code() == faster.exit_code() == 0


def test_too_few_runs_is_unknown_and_says_how_many_more():
    rng = np.random.default_rng(5)
    report = evaluate_gate(_side({"asr": _noisy(rng, 4)}), _side({"asr": _noisy(rng, 3, 2.0)}))
    check = next(c for c in report.checks if c.check == "duration_ms")
    assert check.verdict == "unknown" and check.runs_needed == 3
    assert "3 run(s) a side" in check.message and "needs 6" in check.message
    assert report.exit_code() == 2 and report.exit_code(unknown_exit=0) == 0


def test_a_change_near_the_tolerance_with_noise_is_unknown_with_runs_needed():
    rng = np.random.default_rng(6)
    report = evaluate_gate(_side({"asr": _noisy(rng, 6, cv=0.015)}),
                           _side({"asr": _noisy(rng, 6, 1.055, cv=0.015)}))
    check = next(c for c in report.checks if c.check == "duration_ms")
    assert check.verdict == "unknown"
    assert check.runs_needed >= 1 and "more run(s) a side" in check.message
    # the interval reaches beyond the tolerance: neither a pass nor a proven regression
    assert check.change_high > check.tolerance


def test_one_disturbed_baseline_run_does_not_widen_the_tolerance():
    rng = np.random.default_rng(14)
    baseline = _noisy(rng, 10, cv=0.01)
    baseline[3] *= 1.8  # a neighbour's load during one run
    report = evaluate_gate(_side({"asr": baseline}), _side({"asr": _noisy(rng, 10, 1.12,
                                                                          cv=0.01)}))
    check = next(c for c in report.checks if c.check == "duration_ms")
    assert check.tolerance < 0.06 and check.verdict == "regression"


def test_a_slow_drift_of_the_machine_is_not_counted_as_noise():
    rng = np.random.default_rng(15)
    drift = np.linspace(1.0, 1.15, 16)  # the machine slows by 15% over the session
    baseline = [v * d for v, d in zip(_noisy(rng, 16, cv=0.01), drift)]
    candidate = [v * d * 1.10 for v, d in zip(_noisy(rng, 16, cv=0.01), drift)]
    check = next(c for c in evaluate_gate(_side({"asr": baseline}),
                                          _side({"asr": candidate})).checks
                 if c.check == "duration_ms")
    assert np.std(baseline) / np.mean(baseline) > 0.04  # 3 x that would hide +10%
    assert check.tolerance < 0.06 and check.verdict == "regression"


def test_the_tolerance_grows_with_the_baseline_noise():
    rng = np.random.default_rng(7)
    baseline = _noisy(rng, 30, cv=0.10)
    report = evaluate_gate(_side({"asr": baseline}), _side({"asr": _noisy(rng, 30, 1.12,
                                                                          cv=0.10)}))
    check = next(c for c in report.checks if c.check == "duration_ms")
    step = np.median(np.abs(np.diff(baseline)))
    assert check.tolerance == pytest.approx(3 * 1.4826 * step / math.sqrt(2)
                                            / np.median(baseline), rel=1e-4)
    assert 0.2 < check.tolerance < 0.4  # about 3 x the 10% it was drawn with
    assert check.verdict != "regression"  # +12% within 3 x a 10% CV
    quiet = evaluate_gate(_side({"asr": _noisy(rng, 30, cv=0.001)}),
                          _side({"asr": _noisy(rng, 30, 1.12, cv=0.001)}))
    quiet_check = next(c for c in quiet.checks if c.check == "duration_ms")
    assert quiet_check.tolerance == GatePolicy().min_tolerance
    assert quiet_check.verdict == "regression"


def test_zeros_on_both_sides_pass_and_a_zero_in_a_sample_still_decides():
    rng = np.random.default_rng(17)

    def side(values):
        data = GroupData(per_run={("computed", "peak_gpu_allocated_bytes"): values}, runs=10)
        return GateInput("t", {("cpu_only", None): data})

    zeros = evaluate_gate(side([0.0] * 10), side([0.0] * 10)).checks[0]
    assert zeros.verdict == "pass" and zeros.change == 0
    with_zero = _noisy(rng, 10)
    with_zero[2] = 0.0  # no logarithm: a linear interval instead
    same = evaluate_gate(side(with_zero), side(_noisy(rng, 10))).checks[0]
    assert same.verdict in ("pass", "unknown") and same.change_high is not None


def test_throughput_is_worse_when_it_drops():
    rng = np.random.default_rng(8)

    def side(scale):
        data = GroupData(per_run={("computed", "items_per_s"): _noisy(rng, 10, scale)}, runs=10)
        return GateInput("t", {("embed", None): data})

    assert _verdicts(evaluate_gate(side(1.0), side(0.8)))[("embed", "items_per_s")] == \
        "regression"
    assert _verdicts(evaluate_gate(side(1.0), side(1.25)))[("embed", "items_per_s")] == "pass"


def test_a_component_that_starts_failing_is_an_error_rate_regression():
    rng = np.random.default_rng(9)
    report = evaluate_gate(_side({"asr": _noisy(rng, 40)}),
                           _side({"asr": _noisy(rng, 40)}, errors={"asr": 12}))
    check = next(c for c in report.checks if c.check == "error_rate")
    assert check.verdict == "regression"
    assert check.candidate_value == pytest.approx(12 / 52)
    assert check.change == pytest.approx(12 / 52)


def test_benjamini_hochberg_spans_every_comparison_of_one_gate():
    rng = np.random.default_rng(10)
    names = [f"c{i}" for i in range(8)]
    report = evaluate_gate(_side({n: _noisy(rng, 8) for n in names}),
                           _side({n: _noisy(rng, 8) for n in names}))
    from scipy import stats

    compared = [c for c in report.checks if c.p_value is not None]
    assert len(compared) == 16  # durations and error rates, adjusted together
    expected = stats.false_discovery_control([c.p_value for c in compared], method="bh")
    assert [c.adjusted_p for c in compared] == pytest.approx(list(expected))


def test_budgets_are_checked_on_the_candidates_invocations():
    durations = list(np.linspace(10, 200, 50))
    candidate = _side({"asr": durations, "ocr": [5.0] * 10}, errors={"asr": 5}, items=40.0)
    budgets = Budgets(components=(
        ComponentBudget("asr", {"max_p95_duration_ms": 150.0, "max_error_rate": 0.2,
                                "min_items_per_s": 1.0, "max_peak_rss_bytes": 1e9}),
        ComponentBudget("ocr", {"max_p99_duration_ms": 6.0}, profile="baseline"),
        ComponentBudget("ocr", {"max_p99_duration_ms": 6.0}, profile="other"),
        ComponentBudget("missing", {"max_error_rate": 0.1})))
    report = evaluate_gate(None, candidate, budgets=budgets)
    checks = {(c.component, c.check, c.verdict) for c in report.checks}
    p95 = float(np.percentile(durations, 95))
    assert p95 > 150
    assert ("asr", "p95_duration_ms", "breach") in checks
    assert ("asr", "error_rate", "pass") in checks  # 5 of 55
    assert ("asr", "items_per_s", "pass") in checks
    assert ("asr", "peak_rss_bytes", "unknown") in checks  # nothing recorded
    assert ("ocr", "p99_duration_ms", "pass") in checks
    assert ("ocr", "p99_duration_ms", "unknown") in checks  # no runs of profile "other"
    assert ("missing", "error_rate", "unknown") in checks
    breach = next(c for c in report.checks if c.verdict == "breach")
    assert breach.candidate_value == pytest.approx(p95) and breach.limit == 150.0
    assert report.exit_code() == 1


def test_figure_budgets_read_a_benchmarks_extra_info():
    candidate = GateInput("bench", figures={("overhead", "overhead_us"): 3.2,
                                            ("ingest", "ratio"): 0.4})
    budgets = Budgets(figures=(FigureBudget("overhead", "overhead_us", max=5.0),
                               FigureBudget("ingest", "ratio", min=0.5),
                               FigureBudget("rollup", "ratio", max=1.3)))
    verdicts = {(c.component, c.check): c.verdict
                for c in evaluate_gate(None, candidate, budgets=budgets,
                                       source="pytest-benchmark").checks}
    assert verdicts == {("overhead", "overhead_us"): "pass", ("ingest", "ratio"): "breach",
                        ("rollup", "ratio"): "unknown"}


def test_shift_interval_and_summary_comparison_agree_with_scipy_by_hand():
    a, b = [100.0, 102.0, 98.0, 101.0, 99.0], [110.0, 111.0, 109.0, 112.0, 108.0]
    shift = compare_shift(a, b)
    assert shift.ratio == pytest.approx(110 / 100)
    la, lb = np.log(a), np.log(b)
    assert shift.ratio_low < math.exp(lb.mean() - la.mean()) < shift.ratio_high
    # successive differences 2, 4, 3, 2: median 2.5
    assert shift.baseline_cv == pytest.approx(1.4826 * 2.5 / math.sqrt(2) / 100, rel=1e-4)
    summary = compare_summaries((np.mean(a), np.std(a, ddof=1), 5),
                                (np.mean(b), np.std(b, ddof=1), 5))
    assert summary.ratio == pytest.approx(np.mean(b) / np.mean(a))
    assert summary.p_value < 0.001 and summary.ratio_low > 1
    with pytest.raises(ValueError):
        compare_shift([1.0], [1.0, 2.0])


def test_policy_bounds_are_checked():
    from mlobs.core.errors import ConfigError

    for bad in ({"alpha": 0}, {"min_tolerance": 1.5}, {"cv_factor": -1}, {"min_runs": 1},
                {"min_runs": True}, {"alpha": float("nan")}):
        with pytest.raises(ConfigError):
            GatePolicy(**bad)


def test_a_run_set_needs_a_filter_and_an_aware_ordered_time_range():
    from datetime import datetime, timezone

    from mlobs.analysis.gate_inputs import RunSet
    from mlobs.core.errors import ConfigError

    with pytest.raises(ConfigError, match="needs a pipeline_version, a label"):
        RunSet()
    with pytest.raises(ConfigError, match="a run set's since must be a timezone-aware"):
        RunSet(since=datetime(2026, 1, 1))
    aware = datetime(2026, 1, 1, tzinfo=timezone.utc)
    with pytest.raises(ConfigError, match="must be before its until"):
        RunSet(since=aware, until=aware)
    assert RunSet(labels={"release": "rc-2"}, since=aware).describe() == \
        "label release=rc-2 since 2026-01-01T00:00:00+00:00"
