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
