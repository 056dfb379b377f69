"""The statistics behind drift checks and the release gate, from scipy.

Two kinds of comparison between a baseline and a current sample:

* **distributions** (durations, memory peaks, throughput, user metrics):
  :func:`compare_distributions` gives p = 2 · min(Kolmogorov–Smirnov, Mann–Whitney U)
  (Bonferroni over the two tests), the
  ratios of medians and of p95 with percentile-bootstrap intervals, the Wasserstein
  distance normalised by the baseline's standard deviation, and the PSI over ten
  baseline-quantile bins;
* **rates** (error, empty, OOM, cache hit): :func:`compare_rates` gives Fisher's exact
  test and the absolute change;
* **a shift between run sets** (the release gate, one value per run a side):
  :func:`compare_shift` gives the same two-sample p, the ratio of medians and a Welch
  t-interval of the ratio (on logarithms), and the baseline's coefficient of variation.

:func:`benjamini_hochberg` adjusts the p-values of one call's checks together.

Anchors for the defaults (see :mod:`mlobs.analysis.drift`): Evidently flags drift at a
KS p ≤ 0.05, PSI ≥ 0.1 and a normalised Wasserstein distance ≥ 0.1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

#: resamples of the bootstrap intervals (percentile method, 95%).
BOOTSTRAP_RESAMPLES = 400
PSI_BINS = 10
_PSI_FLOOR = 1e-4  # an empty bin counts as this share, so the logarithm stays finite


@dataclass(frozen=True)
class DistributionComparison:
    """Baseline vs current sample of one metric.

    Attributes:
        n_baseline, n_current: sample sizes.
        p_value: the smaller of the KS and Mann–Whitney U p-values, doubled (Bonferroni:
            the minimum of two p-values alone rejects too often); ks_statistic: the KS
            distance D.
        median_ratio, p95_ratio: current / baseline, each with a 95% bootstrap interval
            (``*_low``, ``*_high``); None when the baseline's value is 0.
        wasserstein: the Wasserstein distance divided by the baseline's standard
            deviation (None when that is 0).
        psi: population stability index over the baseline's deciles.
        baseline_p95, current_p95: the 95th percentiles (linear interpolation).
    """

    n_baseline: int
    n_current: int
    p_value: float
    ks_statistic: float
    median_ratio: float | None
    median_low: float | None
    median_high: float | None
    p95_ratio: float | None
    p95_low: float | None
    p95_high: float | None
    wasserstein: float | None
    psi: float
    baseline_p95: float
    current_p95: float


@dataclass(frozen=True)
class RateComparison:
    """Baseline vs current rate of an event (``hits`` of ``n`` each side)."""

    n_baseline: int
    n_current: int
    baseline_rate: float
    current_rate: float
    p_value: float

    @property
    def change(self) -> float:
        """current − baseline, as a fraction (0.02 is two percentage points)."""
        return self.current_rate - self.baseline_rate


def _ratio(a: float, b: float) -> float | None:
    return None if a == 0 else float(b / a)


def _samples(baseline: Sequence[float], current: Sequence[float]
             ) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(baseline, dtype=float), np.asarray(current, dtype=float)
    if a.size < 2 or b.size < 2:
        raise ValueError("each sample needs at least 2 values")
    return a, b


def compare_distributions(baseline: Sequence[float], current: Sequence[float], *,
                          seed: int = 0) -> DistributionComparison:
    """Compare two samples of a metric (each of at least 2 finite values).

    Args:
        baseline, current: the values (any unit; the ratios are unit-free).
        seed: the bootstrap's random seed (results are reproducible).

    Raises:
        ValueError: a sample has fewer than 2 values.
    """
    a, b = _samples(baseline, current)
    p_value, ks_statistic = two_sample_p(a, b)
    median_low = median_high = p95_low = p95_high = None
    median_ratio = _ratio(float(np.median(a)), float(np.median(b)))
    p95_a, p95_b = float(np.percentile(a, 95)), float(np.percentile(b, 95))
    p95_ratio = _ratio(p95_a, p95_b)
    rng = np.random.default_rng(seed)
    if median_ratio is not None or p95_ratio is not None:
        ia = rng.integers(0, a.size, size=(BOOTSTRAP_RESAMPLES, a.size))
        ib = rng.integers(0, b.size, size=(BOOTSTRAP_RESAMPLES, b.size))
        ra, rb = a[ia], b[ib]
        with np.errstate(divide="ignore", invalid="ignore"):
            if median_ratio is not None:
                median_low, median_high = _interval(np.median(rb, axis=1)
                                                    / np.median(ra, axis=1))
            if p95_ratio is not None:
                p95_low, p95_high = _interval(np.percentile(rb, 95, axis=1)
                                              / np.percentile(ra, 95, axis=1))
    spread = float(np.std(a))
    wasserstein = (float(stats.wasserstein_distance(a, b)) / spread) if spread > 0 else None
    return DistributionComparison(
        n_baseline=int(a.size), n_current=int(b.size),
        p_value=p_value, ks_statistic=ks_statistic,
        median_ratio=median_ratio, median_low=median_low, median_high=median_high,
        p95_ratio=p95_ratio, p95_low=p95_low, p95_high=p95_high,
        wasserstein=wasserstein, psi=population_stability_index(a, b),
        baseline_p95=p95_a, current_p95=p95_b)


def two_sample_p(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(p, KS D): p = 2 · min(Kolmogorov–Smirnov, Mann–Whitney U), two-sided, at most 1.

    Bonferroni over the two tests: the bare minimum of two p-values rejects too often
    (6.1% at a nominal 5% under H0 in ``tests/perf/bench_drift.py``)."""
    ks = stats.ks_2samp(a, b)
    if np.ptp(a) == 0 and np.ptp(b) == 0 and a[0] == b[0]:
        mwu_p = 1.0  # identical constants: nothing to rank
    else:
        mwu_p = float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)
    return min(1.0, 2 * min(float(ks.pvalue), mwu_p)), float(ks.statistic)


def _interval(values: np.ndarray) -> tuple[float | None, float | None]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None, None
    low, high = np.percentile(finite, [2.5, 97.5])
    return float(low), float(high)


def population_stability_index(baseline: Sequence[float], current: Sequence[float],
                               bins: int = PSI_BINS) -> float:
    """PSI = Σ (c − b) · ln(c / b) over bins cut at the baseline's quantiles, plus one bin
    below and one above the baseline's range (shares of each sample per bin; an empty bin
    counts as 1e-4). 0 for the same distribution; 0.1 is Evidently's default drift
    threshold."""
    a = np.asarray(baseline, dtype=float)
    b = np.asarray(current, dtype=float)
    low, high = float(a.min()), float(a.max())
    edges = np.unique(np.quantile(a, np.linspace(0, 1, bins + 1)[1:-1]))

    def shares(x: np.ndarray) -> np.ndarray:
        inside = x[(x >= low) & (x <= high)]
        counts = np.bincount(np.searchsorted(edges, inside, side="right"),
                             minlength=edges.size + 1)
        counts = np.concatenate([[np.sum(x < low)], counts, [np.sum(x > high)]])
        return np.maximum(counts / x.size, _PSI_FLOOR)

    share_a, share_b = shares(a), shares(b)
    return float(np.sum((share_b - share_a) * np.log(share_b / share_a)))


def compare_rates(baseline_hits: int, baseline_n: int, current_hits: int,
                  current_n: int) -> RateComparison:
    """Fisher's exact test of two rates (``hits`` events of ``n`` trials each side).

    Raises:
        ValueError: a side has no trials, or more hits than trials.
    """
    for hits, n in ((baseline_hits, baseline_n), (current_hits, current_n)):
        if n < 1 or not 0 <= hits <= n:
            raise ValueError(f"a rate needs 0 <= hits <= n and n >= 1, got {hits}/{n}")
    table = [[baseline_hits, baseline_n - baseline_hits],
             [current_hits, current_n - current_hits]]
    p_value = float(stats.fisher_exact(table).pvalue)
    return RateComparison(baseline_n, current_n, baseline_hits / baseline_n,
                          current_hits / current_n, p_value)


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Benjamini–Hochberg adjusted p-values (the false discovery rate of the checks of one
    call), in the order given; NaN stays NaN and counts as no test."""
    adjusted = [math.nan] * len(p_values)
    tested = [(p, i) for i, p in enumerate(p_values) if not math.isnan(p)]
    if not tested:
        return adjusted
    values = stats.false_discovery_control([p for p, _ in tested], method="bh")
    for (_, index), value in zip(tested, values):
        adjusted[index] = float(value)
    return adjusted


@dataclass(frozen=True)
class ShiftComparison:
    """Candidate vs baseline values of one metric, one value per run a side.

    Attributes:
        n_baseline, n_current: sample sizes.
        p_value: :func:`two_sample_p`.
        baseline_median, current_median: the medians.
        ratio: current / baseline median; None when the baseline's is 0.
        ratio_low, ratio_high: the interval (``confidence``) of the ratio of geometric
            means from Welch's t-test on the logarithms; None when a value is not
            positive or the interval is undefined (fewer than 2 values a side).
        baseline_cv: the baseline's run-to-run coefficient of variation
            (:func:`run_to_run_cv`; None when its median is not positive).
        log_sd: the pooled standard deviation of the logarithms (None as ``ratio_low``).
    """

    n_baseline: int
    n_current: int
    p_value: float
    baseline_median: float
    current_median: float
    ratio: float | None
    ratio_low: float | None
    ratio_high: float | None
    baseline_cv: float | None
    log_sd: float | None


def run_to_run_cv(values: Sequence[float]) -> float:
    """The noise from one run to the next, over the median: the robust scale of the
    differences of successive values (in the order run), 1.4826 · median |xᵢ₊₁ − xᵢ| / √2.

    It is the standard deviation over the mean for independent normal values, like the
    mean square successive difference (von Neumann) it is the robust form of. Unlike the
    plain standard deviation it ignores a slow drift of the machine over a session (a
    neighbour's load, thermal throttling) and one disturbed run. 0 for a constant or a
    single value; ``values`` must have a positive median.
    """
    x = np.asarray(values, dtype=float)
    if x.size < 2:
        return 0.0
    scale = 1.4826 * float(np.median(np.abs(np.diff(x)))) / math.sqrt(2)
    return scale / float(np.median(x))


def compare_shift(baseline: Sequence[float], current: Sequence[float], *,
                  confidence: float = 0.95) -> ShiftComparison:
    """Compare two small samples of a per-run metric (each of at least 2 finite values,
    in the order the runs started).

    Raises:
        ValueError: a sample has fewer than 2 values.
    """
    a, b = _samples(baseline, current)
    p_value, _ = two_sample_p(a, b)
    median_a, median_b = float(np.median(a)), float(np.median(b))
    cv = run_to_run_cv(a) if median_a > 0 else None
    low = high = log_sd = None
    if np.ptp(a) == 0 and np.ptp(b) == 0 and a[0] == b[0]:  # the same constant: no change
        low = high = 1.0
        log_sd = 0.0
    elif min(a.min(), b.min()) <= 0:  # no logarithms: Welch on the values themselves
        linear = compare_summaries((mean_a := float(a.mean()), float(a.std(ddof=1)), a.size),
                                   (float(b.mean()), float(b.std(ddof=1)), b.size),
                                   confidence=confidence)
        if mean_a > 0:
            low, high = linear.ratio_low, linear.ratio_high
    else:
        la, lb = np.log(a), np.log(b)
        log_sd = float(np.sqrt((np.var(la, ddof=1) + np.var(lb, ddof=1)) / 2))
        if log_sd == 0:
            low = high = float(np.exp(lb[0] - la[0]))
        else:
            with np.errstate(invalid="ignore", divide="ignore"):
                interval = stats.ttest_ind(lb, la, equal_var=False).confidence_interval(
                    confidence)
            if math.isfinite(interval.low) and math.isfinite(interval.high):
                low, high = float(np.exp(interval.low)), float(np.exp(interval.high))
    return ShiftComparison(int(a.size), int(b.size), p_value, median_a, median_b,
                           _ratio(median_a, median_b), low, high, cv, log_sd)


def compare_summaries(baseline: tuple[float, float, int], current: tuple[float, float, int],
                      *, confidence: float = 0.95) -> ShiftComparison:
    """:func:`compare_shift` from summaries ``(mean, standard deviation, n)`` alone (a
    pytest-benchmark file saved without raw data): Welch's t-test and its interval of
    the difference of means over the baseline's mean; the "medians" of the result are
    the means.

    Raises:
        ValueError: a side has fewer than 2 values.
    """
    (mean_a, sd_a, n_a), (mean_b, sd_b, n_b) = baseline, current
    if n_a < 2 or n_b < 2:
        raise ValueError("each sample needs at least 2 values")
    se2 = sd_a ** 2 / n_a + sd_b ** 2 / n_b
    low = high = None
    if se2 == 0:
        p_value = 1.0 if mean_a == mean_b else 0.0
    else:
        p_value = float(stats.ttest_ind_from_stats(mean_b, sd_b, n_b, mean_a, sd_a, n_a,
                                                   equal_var=False).pvalue)
    cv = sd_a / mean_a if mean_a > 0 else None
    if mean_a > 0:
        if se2 == 0:
            low = high = mean_b / mean_a
        else:
            df = se2 ** 2 / ((sd_a ** 2 / n_a) ** 2 / (n_a - 1) + (sd_b ** 2 / n_b) ** 2 / (n_b - 1))
            half = float(stats.t.ppf((1 + confidence) / 2, df)) * math.sqrt(se2)
            low, high = (mean_b - mean_a - half) / mean_a + 1, (mean_b - mean_a + half) / mean_a + 1
    log_sd = None
    if mean_a > 0 and mean_b > 0:
        log_sd = math.sqrt(((sd_a / mean_a) ** 2 + (sd_b / mean_b) ** 2) / 2)
    return ShiftComparison(n_a, n_b, min(1.0, p_value), mean_a, mean_b,
                           _ratio(mean_a, mean_b), low, high, cv, log_sd)


def runs_needed(log_sd: float | None, log_distance: float, *, n_now: int,
                z: float = 2.8, cap: int = 1000) -> int:
    """More runs a side before an interval of half-width ``z`` standard errors (1.96 for
    95% plus 0.84 for 80% power) would clear a boundary ``log_distance`` away (a normal
    approximation: n = 2 (z · sd / distance)²); ``cap`` when the distance is 0."""
    if log_sd is None or log_sd == 0:
        return 0 if log_distance > 0 else cap
    if log_distance <= 0:
        return cap
    return max(0, min(cap, math.ceil(2 * (z * log_sd / log_distance) ** 2) - n_now))
