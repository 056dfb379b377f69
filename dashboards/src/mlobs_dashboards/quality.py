"""Drift and release gates: the verdicts `mlobs drift` stores in ``drift_checks`` and
`mlobs gate` in ``gate_results``, over time and as the latest lists to read.

A drift check compares a baseline window with a current window (two-sample test and an
effect beyond a tolerance); a gate compares a candidate run set with a baseline run set
and checks budgets. Both are in docs/gating.md.
"""

from __future__ import annotations

from grafana_foundation_sdk.models.dashboard import Dashboard

from mlobs_dashboards.panels import (
    data_table,
    finish,
    new_dashboard,
    row,
    single_stat,
    sql,
    time_series,
)

UID = "mlobs-quality"
#: verdicts that need someone's attention, of drift checks and of gates.
BAD = ((None, "green"), (1, "red"))


def build() -> Dashboard:
    board = (new_dashboard(UID, "mlobs / Drift and release gates",
                           "Drift checks and release-gate results with their verdicts.",
                           time_from="now-7d")
             .with_row(row("Drift checks"))
             .with_panel(single_stat(
                 "Drifting checks", "Drift checks with verdict drift in the time range.",
                 "short",
                 sql("""
                     SELECT count(*) AS drift
                     FROM drift_checks
                     WHERE $__timeFilter(checked_at) AND verdict = 'drift'
                 """, "table"), thresholds=BAD))
             .with_panel(time_series(
                 "Drift verdicts", "Drift checks per interval by verdict (no_drift, "
                 "drift, insufficient_data).", "short",
                 sql("""
                     SELECT $__timeGroupAlias(checked_at, $__interval), verdict AS metric,
                            count(*) AS checks
                     FROM drift_checks
                     WHERE $__timeFilter(checked_at)
                     GROUP BY 1, 2
                     ORDER BY 1
                 """), width=18, height=5, bars=True, stacked=True))
             .with_panel(data_table(
                 "Latest drift checks",
                 "Newest checks first: the metric compared, both windows, the effect (a "
                 "relative change, or a rate difference) and its adjusted p-value.",
                 "short",
                 sql("""
                     SELECT checked_at AS "time", component, left(model_signature, 12)
                              AS model_signature, stratum, metric, verdict, effect,
                            effect_low, effect_high, threshold, adjusted_p, n_baseline,
                            n_current, baseline_window, current_window
                     FROM drift_checks
                     WHERE $__timeFilter(checked_at)
                     ORDER BY checked_at DESC, verdict
                     LIMIT 200
                 """, "table"), width=24, height=9))
             .with_row(row("Release gates"))
             .with_panel(single_stat(
                 "Regressions and breaches",
                 "Gate checks with verdict regression (candidate worse than baseline) or "
                 "breach (a budget exceeded) in the time range.", "short",
                 sql("""
                     SELECT count(*) AS failing_checks
                     FROM gate_results
                     WHERE $__timeFilter(checked_at) AND verdict IN ('regression', 'breach')
                 """, "table"), thresholds=BAD))
             .with_panel(time_series(
                 "Gate verdicts", "Gate checks per interval by verdict (pass, regression, "
                 "breach, unknown).", "short",
                 sql("""
                     SELECT $__timeGroupAlias(checked_at, $__interval), verdict AS metric,
                            count(*) AS checks
                     FROM gate_results
                     WHERE $__timeFilter(checked_at)
                     GROUP BY 1, 2
                     ORDER BY 1
                 """), width=18, height=5, bars=True, stacked=True))
             .with_panel(data_table(
                 "Gates", "One line per gate: when, what it compared, and its verdict counts.",
                 "short",
                 sql("""
                     SELECT min(checked_at) AS "time", gate_id, min(baseline) AS baseline,
                            min(candidate) AS candidate,
                            count(*) FILTER (WHERE verdict = 'regression') AS regressions,
                            count(*) FILTER (WHERE verdict = 'breach') AS breaches,
                            count(*) FILTER (WHERE verdict = 'unknown') AS unknown,
                            count(*) FILTER (WHERE verdict = 'pass') AS passed
                     FROM gate_results
                     WHERE $__timeFilter(checked_at)
                     GROUP BY gate_id
                     ORDER BY 1 DESC
                     LIMIT 50
                 """, "table"), width=24, height=6))
             .with_panel(data_table(
                 "Latest gate results",
                 "Newest first: the check, the change against the tolerance (or the "
                 "budget's limit), the adjusted p-value and the runs still needed.",
                 "short",
                 sql("""
                     SELECT checked_at AS "time", gate_id, kind, component,
                            left(model_signature, 12) AS model_signature, "check", stratum,
                            verdict, change, tolerance, limit_value, adjusted_p,
                            n_baseline, n_candidate, runs_needed, message
                     FROM gate_results
                     WHERE $__timeFilter(checked_at)
                     ORDER BY checked_at DESC, verdict
                     LIMIT 200
                 """, "table"), width=24, height=9)))
    return finish(board)
