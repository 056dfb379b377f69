"""Drift checks (``mlobs drift``, :mod:`mlobs.analysis.drift`) on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import math
import uuid
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from sqlalchemy import func, select

from mlobs.analysis.drift import CHECKS, DriftPolicy, Window, check_drift
from mlobs.analysis.stats import benjamini_hochberg, compare_distributions, compare_rates
from mlobs.cli.main import main
from mlobs.core.errors import ConfigError
from mlobs.core.records import ComponentRecord, RunRecord
from mlobs.warehouse.engine import create_warehouse_engine
from mlobs.warehouse.migrate import upgrade
from mlobs.warehouse.store import WarehouseStore

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)


def _write(db_url, version, components, *, start):
    """One run per invocation: components is a list of (name, duration_ms, status,
    cache_status)."""
    runs, records = [], []
    for i, (name, duration_ms, status, cache_status) in enumerate(components):
        at = start + timedelta(seconds=i)
        run = RunRecord(run_id=str(uuid.uuid4()), platform_id="youtube", video_id=f"v{i}",
                        status="ok", started_at=at, pipeline_version=version)
        runs.append(run)
        records.append(ComponentRecord(
            component_run_id=str(uuid.uuid4()), run_id=run.run_id, component=name,
            attempt=1, required=True, status=status, started_at=at,
            finished_at=at + timedelta(milliseconds=duration_ms), duration_ms=duration_ms,
            error_code="internal" if status == "error" else None, cache_status=cache_status,
            items=10, metrics={"score": 0.5}))
    with WarehouseStore(db_url) as store:
        store.write(runs, records)


def _durations(rng, n, scale=1.0):
    return (rng.lognormal(np.log(20.0), 0.25, n) * scale).tolist()


@pytest.fixture
def warehouse(db_url):
    upgrade(db_url)
    rng = np.random.default_rng(7)
    baseline = ([("asr", d, "ok", "miss") for d in _durations(rng, 80)]
                + [("ocr", d, "ok", None) for d in _durations(rng, 80)]
                + [("rare", d, "ok", None) for d in _durations(rng, 10)]
                + [("fragile", 5.0, "ok", None)] * 200)
    current = ([("asr", d, "ok", "miss") for d in _durations(rng, 80, 1.5)]
               + [("asr", 1.0, "ok", "hit")] * 40
               + [("ocr", d, "ok", None) for d in _durations(rng, 80)]
               + [("rare", d, "ok", None) for d in _durations(rng, 10)]
               + [("fragile", 5.0, "ok", None)] * 170 + [("fragile", 5.0, "error", None)] * 30)
    _write(db_url, "1.0", baseline, start=T0)
    _write(db_url, "1.1", current, start=T0 + timedelta(days=1))
    return db_url


def _verdicts(report):
    return {(c.component, c.stratum, c.metric): c.verdict for c in report.checks}


def test_exactly_what_changed_drifts_and_too_few_samples_is_no_verdict(warehouse):
    report = check_drift(warehouse, Window(pipeline_version="1.0"),
                         Window(pipeline_version="1.1"))
    verdicts = _verdicts(report)
    assert {key for key, verdict in verdicts.items() if verdict == "drift"} == {
        ("asr", "computed", "duration_ms"), ("asr", "computed", "items_per_s"),
        ("asr", "all", "cache_hit_rate"), ("fragile", "all", "error_rate")}
    assert verdicts[("ocr", "computed", "duration_ms")] == "no_drift"
    assert verdicts[("rare", "computed", "duration_ms")] == "insufficient_data"
    # cache hits exist in the current window only: no baseline to compare with
    assert verdicts[("asr", "cache_hit", "duration_ms")] == "insufficient_data"
    asr = next(c for c in report.checks if (c.component, c.metric) == ("asr", "duration_ms")
               and c.stratum == "computed")
    assert 0.3 < asr.effect < 0.7 and asr.effect_low > 0 and asr.adjusted_p < 1e-6
    assert (asr.n_baseline, asr.n_current) == (80, 80)
    fragile = next(c for c in report.checks if (c.component, c.metric) == ("fragile",
                                                                           "error_rate"))
    assert math.isclose(fragile.effect, 0.15) and fragile.baseline_value == 0.0


def test_every_check_is_stored_with_its_windows(warehouse):
    report = check_drift(warehouse, Window(since=T0, until=T0 + timedelta(days=1)),
                         Window(since=T0 + timedelta(days=1)))
    engine = create_warehouse_engine(warehouse)
    try:
        with engine.connect() as conn:
            stored = conn.execute(select(func.count()).select_from(CHECKS)).scalar_one()
            drifted = conn.execute(select(CHECKS.c.component, CHECKS.c.metric,
                                          CHECKS.c.baseline_window)
                                   .where(CHECKS.c.verdict == "drift")).all()
    finally:
        engine.dispose()
    assert stored == len(report.checks)
    assert ("asr", "duration_ms") in {(r.component, r.metric) for r in drifted}
    assert json.loads(drifted[0].baseline_window)["since"].startswith("2026-11-01")


def test_cli_prints_the_table_and_exits_1_on_drift(warehouse, capsys):
    args = ["drift", "--db-url", warehouse, "--baseline-version", "1.0",
            "--current-version", "1.1", "--no-write"]
    assert main(args) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[2].startswith("drift ")  # drift rows first
    assert "4 of" in out and "check(s) drifted" in out
    assert main([*args, "--fail-on", "never"]) == 0
    capsys.readouterr()
    assert main([*args, "--component", "ocr", "--json"]) == 0
    checks = json.loads(capsys.readouterr().out)["checks"]
    assert {c["component"] for c in checks} == {"ocr"}
    assert main([*args, "--component", "rare", "--fail-on", "insufficient_data"]) == 1


def test_a_window_without_any_filter_is_refused(sqlite_url, capsys):
    with pytest.raises(ConfigError, match="a window needs"):
        Window()
    upgrade(sqlite_url)
    assert main(["drift", "--db-url", sqlite_url, "--current-version", "1"]) == 1
    assert "a window needs" in capsys.readouterr().err


def test_policy_bounds():
    with pytest.raises(ConfigError, match="alpha"):
        DriftPolicy(alpha=1.5)
    with pytest.raises(ConfigError, match="min_samples"):
        DriftPolicy(min_samples=1)


def test_statistics_agree_with_their_definitions():
    rng = np.random.default_rng(1)
    same = rng.normal(10, 1, 500)
    compared = compare_distributions(same, same)
    assert compared.p_value == 1.0 and compared.psi == 0.0 and compared.wasserstein == 0.0
    assert compared.median_ratio == compared.p95_ratio == 1.0
    shifted = compare_distributions(same, same * 1.3)
    assert shifted.p_value < 1e-10 and math.isclose(shifted.p95_ratio, 1.3)
    assert shifted.p95_low < 1.3 < shifted.p95_high
    # BH by hand: sorted p (0.01, 0.02, 0.03, 0.5) x m / rank, then running minimum
    assert benjamini_hochberg([0.5, 0.01, 0.03, 0.02, math.nan])[:4] == pytest.approx(
        [0.5, 0.04, 0.04, 0.04])
    rates = compare_rates(40, 2000, 80, 2000)
    assert rates.change == pytest.approx(0.02) and rates.p_value < 0.001
    with pytest.raises(ValueError):
        compare_rates(3, 2, 0, 10)


def _one_check(a, b, metric="duration_ms"):
    from mlobs.analysis.drift import DriftResult, _decide, _distribution_check
    policy = DriftPolicy()
    result = DriftResult("c", None, "computed", metric, len(a), len(b), policy.tolerance)
    _distribution_check(result, list(a), list(b))
    _decide([result], policy)
    return result


def test_zero_and_negative_metrics_drift_by_their_distance_not_a_ratio():
    rng = np.random.default_rng(3)
    # GPU memory from none (a CPU run) to 8 GiB: a ratio to 0 means nothing
    assert _one_check([0.0] * 60, [8 * 2**30] * 60, "peak_gpu_allocated_bytes").verdict \
        == "drift"
    centred = rng.normal(0, 1, 200)
    shifted = _one_check(centred, rng.normal(1, 1, 200), "metric:score")
    assert shifted.verdict == "drift" and shifted.effect > 0.5 and shifted.effect_low is None
    assert _one_check(centred, rng.normal(0, 1, 200), "metric:score").verdict == "no_drift"


def test_two_tests_are_one_p_value_and_psi_sees_beyond_the_baseline_range():
    rng = np.random.default_rng(4)
    a, b = rng.normal(10, 1, 300), rng.normal(10.2, 1, 300)
    from scipy import stats
    expected = min(1.0, 2 * min(stats.ks_2samp(a, b).pvalue,
                                stats.mannwhitneyu(a, b, alternative="two-sided").pvalue))
    assert compare_distributions(a, b).p_value == pytest.approx(expected)
    from mlobs.analysis.stats import population_stability_index
    assert population_stability_index([5.0] * 50, [50.0] * 50) > 10


def test_odd_stored_values_neither_crash_nor_count(db_url):
    """bypass is no cache outcome (as in the rollups); bools and huge ints are no metrics;
    a metric name of 255 characters fits the stored check."""
    upgrade(db_url)
    name = "m" * 255
    runs, records = [], []
    for i in range(80):
        run = RunRecord(run_id=str(uuid.uuid4()), platform_id="youtube", video_id=f"v{i}",
                        status="ok", started_at=T0 + timedelta(seconds=i),
                        pipeline_version="1.0" if i < 40 else "1.1")
        runs.append(run)
        records.append(ComponentRecord(
            component_run_id=str(uuid.uuid4()), run_id=run.run_id, component="asr",
            attempt=1, required=True, status="ok", started_at=run.started_at,
            finished_at=run.started_at, duration_ms=10.0 + i % 3,
            cache_status="hit" if i % 2 else ("miss" if i < 40 else "bypass"),
            metrics={name: 1.0 + i % 5, "flag": True, "huge": 10**400}))
    with WarehouseStore(db_url) as store:
        store.write(runs, records)
    report = check_drift(db_url, Window(pipeline_version="1.0"),
                         Window(pipeline_version="1.1"))
    metrics = {c.metric for c in report.checks}
    assert f"metric:{name}" in metrics and not {"metric:flag", "metric:huge"} & metrics
    hit_rate = next(c for c in report.checks if c.metric == "cache_hit_rate")
    assert (hit_rate.n_baseline, hit_rate.n_current) == (40, 20)  # bypass left out
    assert hit_rate.verdict == "insufficient_data"


def test_no_data_at_all_fails_a_job_that_fails_on_insufficient_data(sqlite_url, capsys):
    upgrade(sqlite_url)
    args = ["drift", "--db-url", sqlite_url, "--baseline-version", "1.0",
            "--current-version", "1.1"]
    assert main(args) == 0
    assert main([*args, "--fail-on", "insufficient_data"]) == 1
    assert "failing on --fail-on insufficient_data" in capsys.readouterr().err
