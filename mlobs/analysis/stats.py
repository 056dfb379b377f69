"""The statistics behind drift checks (and, later, the release gate), from scipy.

Two kinds of comparison between a baseline and a current sample:

* **distributions** (durations, memory peaks, throughput, user metrics):
  :func:`compare_distributions` gives p = 2 · min(Kolmogorov–Smirnov, Mann–Whitney U)
  (Bonferroni over the two tests), the
  ratios of medians and of p95 with percentile-bootstrap intervals, the Wasserstein
  distance normalised by the baseline's standard deviation, and the PSI over ten
  baseline-quantile bins;
* **rates** (error, empty, OOM, cache hit): :func:`compare_rates` gives Fisher's exact
  test and the absolute change.

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


def compare_distributions(baseline: Sequence[float], current: Sequence[float], *,
                          seed: int = 0) -> DistributionComparison:
    """Compare two samples of a metric (each of at least 2 finite values).

    Args:
        baseline, current: the values (any unit; the ratios are unit-free).
        seed: the bootstrap's random seed (results are reproducible).

    Raises:
        ValueError: a sample has fewer than 2 values.
    """
    a = np.asarray(baseline, dtype=float)
    b = np.asarray(current, dtype=float)
    if a.size < 2 or b.size < 2:
        raise ValueError("each sample needs at least 2 values")
    ks = stats.ks_2samp(a, b)
    if np.ptp(a) == 0 and np.ptp(b) == 0 and a[0] == b[0]:
        mwu_p = 1.0  # identical constants: nothing to rank
    else:
        mwu_p = float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)
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
        p_value=min(1.0, 2 * min(float(ks.pvalue), mwu_p)), ks_statistic=float(ks.statistic),
        median_ratio=median_ratio, median_low=median_low, median_high=median_high,
        p95_ratio=p95_ratio, p95_low=p95_low, p95_high=p95_high,
        wasserstein=wasserstein, psi=population_stability_index(a, b),
        baseline_p95=p95_a, current_p95=p95_b)


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
