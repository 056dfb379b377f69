"""Memory, GPU and OOM: the peaks each component reached (process RSS, GPU memory
allocated and reserved by PyTorch's caching allocator) by component and device, the OOM
events and the batch-size degradations that followed them.

Peaks are per invocation, measured while the component ran (not the process lifetime).
GPU panels stay empty on CPU-only pipelines: their peaks are NULL there.
"""

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

UID = "mlobs-memory"


def build() -> Dashboard:
    board = (new_dashboard(UID, "mlobs / Memory, GPU and OOM",
                           "Peak RSS and GPU memory by component and device, OOM events "
                           "and batch-size degradations.")
             .with_variable(label_variable("component", "Component",
                                           "mlobs_component_runs_total",
                                           "Components of the Prometheus panels."))
             .with_row(row("Peaks (warehouse)"))
             .with_panel(time_series(
                 "Peak RSS by component",
                 "Largest resident set size reached during an invocation, per interval.",
                 "bytes",
                 sql("""
                     SELECT $__timeGroupAlias(started_at, $__interval), component AS metric,
                            max(peak_rss_bytes) AS peak_rss_bytes
                     FROM component_runs
                     WHERE $__timeFilter(started_at) AND peak_rss_bytes IS NOT NULL
                     GROUP BY 1, 2
                     ORDER BY 1
                 """)))
             .with_panel(time_series(
                 "Peak GPU memory by component and device",
                 "Largest GPU memory allocated and reserved (PyTorch's caching allocator) "
                 "during an invocation, per component and device; empty when no component "
                 "ran on a GPU.", "bytes",
                 sql("""
                     SELECT $__timeGroupAlias(started_at, $__interval),
                            component || ' ' || coalesce(device_used, 'cpu') AS metric,
                            max(peak_gpu_allocated_bytes) AS allocated_bytes,
                            max(peak_gpu_reserved_bytes) AS reserved_bytes
                     FROM component_runs
                     WHERE $__timeFilter(started_at)
                       AND (peak_gpu_allocated_bytes IS NOT NULL
                            OR peak_gpu_reserved_bytes IS NOT NULL)
                     GROUP BY 1, 2
                     ORDER BY 1
                 """)))
             .with_panel(data_table(
                 "Memory peaks by component and device",
                 "Over the time range: the largest and the 95th percentile peak of each "
                 "kind, per component and device used.", "bytes",
                 sql("""
                     SELECT component, coalesce(device_used, 'cpu') AS device,
                            max(peak_rss_bytes) AS max_peak_rss_bytes,
                            percentile_cont(0.95) WITHIN GROUP (ORDER BY peak_rss_bytes)
                              AS p95_peak_rss_bytes,
                            max(peak_gpu_allocated_bytes) AS max_peak_gpu_allocated_bytes,
                            max(peak_gpu_reserved_bytes) AS max_peak_gpu_reserved_bytes
                     FROM component_runs
                     WHERE $__timeFilter(started_at)
                     GROUP BY 1, 2
                     ORDER BY 3 DESC NULLS LAST
                 """, "table"), width=24))
             .with_row(row("OOM (warehouse)"))
             .with_panel(single_stat(
                 "OOM events", "Out-of-memory events inside components in the time range.",
                 "short",
                 sql("""
                     SELECT coalesce(sum(oom_count), 0) AS oom_events
                     FROM component_runs
                     WHERE $__timeFilter(started_at)
                 """, "table"),
                 thresholds=((None, "green"), (1, "orange"))))
             .with_panel(single_stat(
                 "Degraded invocations",
                 "Invocations that ran with a smaller batch than requested (OOM halving).",
                 "short",
                 sql("""
                     SELECT count(*) AS degraded_invocations
                     FROM component_runs
                     WHERE $__timeFilter(started_at) AND batch_size < batch_size_requested
                 """, "table"),
                 thresholds=((None, "green"), (1, "orange"))))
             .with_panel(time_series(
                 "OOM events by component", "OOM events per interval (0 when none).",
                 "short",
                 sql("""
                     SELECT $__timeGroupAlias(started_at, $__interval), component AS metric,
                            sum(oom_count) AS oom_events
                     FROM component_runs
                     WHERE $__timeFilter(started_at)
                     GROUP BY 1, 2
                     ORDER BY 1
                 """), width=12, bars=True))
             .with_panel(data_table(
                 "OOM events and batch-size degradations",
                 "Each OOM event: the component, the batch size that failed, the attempt, "
                 "and the batch size the invocation finished with.", "short",
                 sql("""
                     SELECT e.occurred_at AS "time", cr.component, cr.device_used,
                            e.attributes->>'attempt' AS attempt,
                            e.attributes->>'batch_size' AS failed_batch_size,
                            cr.batch_size AS final_batch_size,
                            cr.batch_size_requested, cr.status, cr.run_id
                     FROM events AS e
                     JOIN component_runs AS cr ON cr.component_run_id = e.component_run_id
                     WHERE e.kind = 'oom' AND $__timeFilter(e.occurred_at)
                     ORDER BY e.occurred_at DESC
                     LIMIT 200
                 """, "table"), width=24))
             .with_row(row("Prometheus"))
             .with_panel(time_series(
                 "OOM events by component and device (Prometheus)",
                 "OOM events in the trailing $__rate_interval at each point, as the "
                 "exporter counts them (neighbouring points overlap: do not add them up).",
                 "short",
                 promql("""
                     sum by (component, device) (
                       increase(mlobs_oom_total{component=~"$component"}[$__rate_interval]))
                 """, "{{component}} {{device}}")))
             .with_panel(time_series(
                 "Peak RSS p95 (Prometheus)",
                 "95th percentile of invocation RSS peaks, from the exporter's histogram "
                 "(bucket resolution).", "bytes",
                 promql("""
                     histogram_quantile(0.95, sum by (component, le) (rate(
                       mlobs_component_peak_memory_bytes_bucket{kind="rss",
                         component=~"$component"}[$__rate_interval])))
                 """, "{{component}}"))))
    return finish(board)
