"""Pipeline overview: are runs finishing, how many fail, and which component is the
cause. Runs from the warehouse; component rate, errors and duration (RED) from
Prometheus."""

from __future__ import annotations

from grafana_foundation_sdk.models.dashboard import Dashboard

from mlobs_dashboards.panels import (
    data_table,
    finish,
    label_variable,
    new_dashboard,
    promql,
    row,
    single_stat,
    sql,
    time_series,
)

UID = "mlobs-overview"
#: Prometheus component filter, applied to every RED query.
COMPONENT = 'component=~"$component"'


def build() -> Dashboard:
    board = (new_dashboard(UID, "mlobs / Pipeline overview",
                           "Runs per hour by status, the run error rate, partial failures "
                           "and each component's rate, errors and p95 duration.")
             .with_variable(label_variable("component", "Component",
                                           "mlobs_component_runs_total",
                                           "Components of the RED panels (Prometheus)."))
             .with_row(row("Runs (warehouse)"))
             .with_panel(single_stat(
                 "Runs", "Pipeline runs started in the time range (any status).", "short",
                 sql("""
                     SELECT count(*) AS runs
                     FROM runs
                     WHERE $__timeFilter(started_at)
                 """, "table")))
             .with_panel(single_stat(
                 "Run error rate",
                 "Share of ended runs that failed: status error (a required component or "
                 "the pipeline's own code raised) or crashed (the process died).",
                 "percentunit",
                 sql("""
                     SELECT avg(CASE WHEN status IN ('error', 'crashed') THEN 1.0 ELSE 0.0 END)
                            AS error_rate
                     FROM runs
                     WHERE $__timeFilter(started_at) AND status IN ('ok', 'error', 'crashed')
                 """, "table"),
                 thresholds=((None, "green"), (0.01, "orange"), (0.05, "red"))))
             .with_panel(single_stat(
                 "Runs with partial failures",
                 "Runs that ended ok although an optional component failed (the run "
                 "carries a warning for it).", "short",
                 sql("""
                     SELECT count(*) AS partial_runs
                     FROM runs AS r
                     WHERE $__timeFilter(r.started_at) AND r.status = 'ok'
                       AND EXISTS (SELECT 1 FROM component_runs AS cr
                                   WHERE cr.run_id = r.run_id AND NOT cr.required
                                     AND cr.status = 'error')
                 """, "table"),
                 thresholds=((None, "green"), (1, "orange"))))
             .with_panel(single_stat(
                 "Median run duration", "Median wall time of finished runs.", "ms",
                 sql("""
                     SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms)
                            AS median_duration_ms
                     FROM runs
                     WHERE $__timeFilter(started_at) AND duration_ms IS NOT NULL
                 """, "table")))
             .with_panel(time_series(
                 "Runs per hour by status",
                 "Runs started in each hour, by final status (running: not finished, or "
                 "crashed without a final record).", "short",
                 sql("""
                     SELECT $__timeGroupAlias(started_at, '1h'), status AS metric,
                            count(*) AS runs
                     FROM runs
                     WHERE $__timeFilter(started_at)
                     GROUP BY 1, 2
                     ORDER BY 1
                 """), bars=True, stacked=True))
             .with_panel(data_table(
                 "Latest partial failures",
                 "The newest failed optional components of runs that ended ok: what the "
                 "run's warning reports, with the error code and message.", "short",
                 sql("""
                     SELECT cr.started_at AS "time", r.run_id, r.platform_id, r.video_id,
                            r.pipeline_version, cr.component, cr.error_code,
                            cr.error_message
                     FROM component_runs AS cr
                     JOIN runs AS r ON r.run_id = cr.run_id
                     WHERE $__timeFilter(cr.started_at) AND r.status = 'ok'
                       AND NOT cr.required AND cr.status = 'error'
                     ORDER BY cr.started_at DESC
                     LIMIT 100
                 """, "table")))
             .with_row(row("Components (Prometheus)"))
             .with_panel(time_series(
                 "Invocation rate by component",
                 "Component invocations per second, any status.", "ops",
                 promql(f"""
                     sum by (component) (
                       rate(mlobs_component_runs_total{{{COMPONENT}}}[$__rate_interval]))
                 """, "{{component}}"), width=8))
             .with_panel(time_series(
                 "Error ratio by component",
                 "Share of invocations that ended in error (0 when none did).",
                 "percentunit",
                 promql(f"""
                     (
                       sum by (component) (rate(
                         mlobs_component_runs_total{{status="error", {COMPONENT}}}
                           [$__rate_interval]))
                       or
                       0 * sum by (component) (
                         rate(mlobs_component_runs_total{{{COMPONENT}}}[$__rate_interval]))
                     )
                     /
                     sum by (component) (
                       rate(mlobs_component_runs_total{{{COMPONENT}}}[$__rate_interval]))
                 """, "{{component}}"), width=8))
             .with_panel(time_series(
                 "Duration p95 by component",
                 "95th percentile of invocation durations, from the exporter's histogram "
                 "(bucket resolution).", "s",
                 promql(f"""
                     histogram_quantile(0.95, sum by (component, le) (
                       rate(mlobs_component_duration_seconds_bucket{{{COMPONENT}}}
                         [$__rate_interval])))
                 """, "{{component}}"), width=8))
             .with_panel(time_series(
                 "Finished runs by status",
                 "Pipeline runs finished per second as the exporter counts them.", "ops",
                 promql("""
                     sum by (status) (rate(mlobs_runs_total[$__rate_interval]))
                 """, "{{status}}"), width=24, height=6)))
    return finish(board)
