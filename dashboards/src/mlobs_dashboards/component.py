"""Component detail: how fast one component is per model_signature and pipeline_version
(p50/p95/p99 from the warehouse rollups), how it ends (status mix, error codes, empty
reasons), what batch size it ran with and its throughput.

Components without models have no model_signature; the variables and filters show them
as ``none``, as they do a run without a pipeline_version.
"""

from __future__ import annotations

from grafana_foundation_sdk.models.dashboard import Dashboard

from mlobs_dashboards.panels import (
    custom_variable,
    data_table,
    finish,
    new_dashboard,
    sql,
    sql_filter,
    sql_variable,
    time_series,
)

UID = "mlobs-component"
#: the variables' filter on component_runs (cr) joined to its run (r).
INVOCATIONS = f"""
    FROM component_runs AS cr
    JOIN runs AS r ON r.run_id = cr.run_id
    WHERE $__timeFilter(cr.started_at)
      AND {sql_filter("cr.component", "component")}
      AND {sql_filter("coalesce(cr.model_signature, 'none')", "model_signature")}
      AND {sql_filter("coalesce(r.pipeline_version, 'none')", "pipeline_version")}
"""
#: the same filter on component_rollups, for the chosen bucket width.
ROLLUPS = f"""
    FROM component_rollups
    WHERE bucket_width = '$bucket'
      AND $__timeFilter(bucket_start)
      AND {sql_filter("component", "component")}
      AND {sql_filter("coalesce(model_signature, 'none')", "model_signature")}
      AND {sql_filter("coalesce(pipeline_version, 'none')", "pipeline_version")}
"""
#: a rollup row's series name: what it is grouped by (signature cut to 12 hex digits).
ROLLUP_SERIES = """concat_ws(' ', component, left(model_signature, 12), pipeline_version,
                 profile, device_kind)"""


def build() -> Dashboard:
    board = (new_dashboard(UID, "mlobs / Component detail",
                           "Latency percentiles, outcomes, batch sizes and throughput of "
                           "components, per model_signature and pipeline_version.")
             .with_variable(sql_variable(
                 "component", "Component", """
                     SELECT DISTINCT component FROM component_runs
                     WHERE $__timeFilter(started_at) ORDER BY 1
                 """, "Components that ran in the time range."))
             .with_variable(sql_variable(
                 "model_signature", "Model signature", f"""
                     SELECT DISTINCT coalesce(model_signature, 'none') FROM component_runs
                     WHERE $__timeFilter(started_at)
                       AND {sql_filter("component", "component")}
                     ORDER BY 1
                 """, "Signatures of the models the components used ('none': no model)."))
             .with_variable(sql_variable(
                 "pipeline_version", "Pipeline version", """
                     SELECT DISTINCT coalesce(r.pipeline_version, 'none')
                     FROM component_runs AS cr JOIN runs AS r ON r.run_id = cr.run_id
                     WHERE $__timeFilter(cr.started_at) ORDER BY 1
                 """, "pipeline_version of the runs whose components ran in the range."))
             .with_variable(custom_variable(
                 "bucket", "Rollup bucket", ["hour", "day", "minute"],
                 "Bucket width of the rollup rows (`mlobs rollup --bucket ...` writes them)."))
             .with_panel(time_series(
                 "Duration p50 / p95 / p99 (rollups)",
                 "Percentiles of invocation durations per rollup bucket; a series per "
                 "component, signature, version, profile and device kind. Needs `mlobs "
                 "rollup` to have run for the bucket width.", "ms",
                 sql(f"""
                     SELECT bucket_start AS "time", {ROLLUP_SERIES} AS metric,
                            p50_duration_ms, p95_duration_ms, p99_duration_ms
                     {ROLLUPS}
                     ORDER BY 1
                 """), width=24, height=9))
             .with_panel(time_series(
                 "Status mix", "Invocations per interval by final status (ok, empty, error).",
                 "short",
                 sql(f"""
                     SELECT $__timeGroupAlias(cr.started_at, $__interval),
                            cr.status AS metric, count(*) AS invocations
                     {INVOCATIONS}
                     GROUP BY 1, 2
                     ORDER BY 1
                 """), bars=True, stacked=True))
             .with_panel(time_series(
                 "Throughput (rollups)",
                 "Items per second of computed invocations (items / duration), per rollup "
                 "bucket; components that record no items have none.", "suffix: items/s",
                 sql(f"""
                     SELECT bucket_start AS "time", {ROLLUP_SERIES} AS metric,
                            items_per_s
                     {ROLLUPS}
                       AND items_per_s IS NOT NULL
                     ORDER BY 1
                 """)))
             .with_panel(data_table(
                 "Error codes", "Failed invocations by component and error_code.", "short",
                 sql(f"""
                     SELECT cr.component, cr.error_code, count(*) AS invocations,
                            max(cr.started_at) AS last_seen,
                            max(cr.error_message) AS example_message
                     {INVOCATIONS}
                       AND cr.status = 'error'
                     GROUP BY 1, 2
                     ORDER BY 3 DESC
                 """, "table"), width=12))
             .with_panel(data_table(
                 "Empty reasons", "Invocations that ended empty, by component and "
                 "empty_reason.", "short",
                 sql(f"""
                     SELECT cr.component, cr.empty_reason, count(*) AS invocations,
                            max(cr.started_at) AS last_seen
                     {INVOCATIONS}
                       AND cr.status = 'empty'
                     GROUP BY 1, 2
                     ORDER BY 3 DESC
                 """, "table"), width=12))
             .with_panel(time_series(
                 "Batch size used vs requested",
                 "Mean batch size per interval: requested, and used after OOM "
                 "degradation (a gap between the two is halving at work).", "short",
                 sql(f"""
                     SELECT $__timeGroupAlias(cr.started_at, $__interval),
                            cr.component AS metric,
                            avg(cr.batch_size_requested) AS requested,
                            avg(cr.batch_size) AS used
                     {INVOCATIONS}
                       AND cr.batch_size_requested IS NOT NULL
                     GROUP BY 1, 2
                     ORDER BY 1
                 """), width=24)))
    return finish(board)
