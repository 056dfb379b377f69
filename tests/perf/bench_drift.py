"""Calibration of the drift checks (``make bench``): how often they cry wolf, how often
they find a real change. The verdict rule is mlobs.analysis.drift's, applied to samples
drawn here:

* A/A: 200 pairs of windows of 200 durations from one log-normal distribution (σ = 0.25 in
  log space, a component whose durations vary by about 25%): false ``drift`` verdicts;
* a 20% slowdown (every duration × 1.2, so p95 and median move 20%), 200 per window, 200
  trials: found;
* an error rate of 2% becoming 4%, 2,000 invocations per window, 200 trials: found.

Each trial is one check, as when a single component drifts (Benjamini–Hochberg over one
p-value is that p-value).
"""

from __future__ import annotations

import numpy as np

from mlobs.analysis.drift import DriftPolicy, DriftResult, _decide, _distribution_check
from mlobs.analysis.stats import compare_rates

TRIALS = 200


def _distribution_verdict(a, b, policy) -> str:
    result = DriftResult("c", None, "computed", "duration_ms", len(a), len(b),
                         policy.tolerance)
    _distribution_check(result, list(a), list(b))
    _decide([result], policy)
    return result.verdict


def _rate_verdict(hits_a, n_a, hits_b, n_b, policy) -> str:
    compared = compare_rates(hits_a, n_a, hits_b, n_b)
    result = DriftResult("c", None, "all", "error_rate", n_a, n_b, policy.rate_tolerance,
                         p_value=compared.p_value, effect=compared.change)
    _decide([result], policy)
    return result.verdict


def main(trials: int = TRIALS) -> dict[str, float]:
    policy = DriftPolicy()
    rng = np.random.default_rng(20261202)

    def durations(n, scale=1.0):
        return rng.lognormal(mean=np.log(20.0), sigma=0.25, size=n) * scale

    false_drift = sum(_distribution_verdict(durations(200), durations(200), policy) == "drift"
                      for _ in range(trials))
    found_slowdown = sum(_distribution_verdict(durations(200), durations(200, 1.2),
                                               policy) == "drift" for _ in range(trials))
    found_rate = sum(_rate_verdict(rng.binomial(2000, 0.02), 2000, rng.binomial(2000, 0.04),
                                   2000, policy) == "drift" for _ in range(trials))
    false_rate = sum(_rate_verdict(rng.binomial(2000, 0.02), 2000, rng.binomial(2000, 0.02),
                                   2000, policy) == "drift" for _ in range(trials))
    two_points = DriftPolicy(rate_tolerance=0.02)
    found_rate_2pt = sum(_rate_verdict(rng.binomial(2000, 0.02), 2000,
                                       rng.binomial(2000, 0.04), 2000, two_points) == "drift"
                         for _ in range(trials))
    figures = {"aa_false_drift": false_drift / trials,
               "slowdown_20pct_found": found_slowdown / trials,
               "error_rate_2_to_4pct_found": found_rate / trials,
               "error_rate_aa_false_drift": false_rate / trials,
               "error_rate_2_to_4pct_found_at_2pt_tolerance": found_rate_2pt / trials}
    print(f"drift check calibration ({trials} trials each; alpha {policy.alpha}, "
          f"tolerance {policy.tolerance:.0%} on p95/median, {policy.rate_tolerance:.0%} "
          "on rates)")
    rows = [("A/A durations, 200 a window: false drift", false_drift, "≤ 5%"),
            ("20% slowdown, 200 a window: found", found_slowdown, "≥ 95%"),
            ("error rate 2% → 4%, 2,000 a window: found", found_rate, "≥ 90%"),
            ("A/A error rate 2%, 2,000 a window: false drift", false_rate, "≤ 5%"),
            ("2% → 4% with a 2-point tolerance instead: found", found_rate_2pt, "")]
    for label, count, target in rows:
        print(f"  {label:<52} {count:4d}/{trials}  {count / trials:6.1%}  {target}")
    return figures


if __name__ == "__main__":
    main()
