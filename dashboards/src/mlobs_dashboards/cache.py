"""Cache: how often components reuse a cached result (a cache hit: same idempotency key,
model_signature included), why they missed, which cache versions are in use, how external
caches answer (hit / miss / stale) and how many runs resumed a failed one."""

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

UID = "mlobs-cache"


def build() -> Dashboard:
    board = (new_dashboard(UID, "mlobs / Cache",
                           "Component cache hit rates and miss reasons, cache versions, "
                           "external caches and resumed runs.")
             .with_variable(label_variable("component", "Component",
                                           "mlobs_cache_lookups_total",
                                           "Components of the Prometheus panel."))
             .with_row(row("Component cache (warehouse)"))
             .with_panel(single_stat(
                 "Cache hit rate", "Share of cache lookups (hit or miss; bypass excluded) "
                 "that were hits, over the time range.", "percentunit",
                 sql("""
                     SELECT avg(CASE WHEN cache_status = 'hit' THEN 1.0 ELSE 0.0 END)
                            AS hit_rate
                     FROM component_runs
                     WHERE $__timeFilter(started_at) AND cache_status IN ('hit', 'miss')
                 """, "table")))
             .with_panel(single_stat(
                 "Resumed runs", "Runs that reused results of a run that had not finished "
                 "ok (resumed_from_run_id set).", "short",
                 sql("""
                     SELECT count(*) AS resumed_runs
                     FROM runs
                     WHERE $__timeFilter(started_at) AND resumed_from_run_id IS NOT NULL
                 """, "table")))
             .with_panel(time_series(
                 "Cache hit rate by component",
                 "Share of each component's lookups that were hits, per interval.",
                 "percentunit",
                 sql("""
                     SELECT $__timeGroupAlias(started_at, $__interval), component AS metric,
                            avg(CASE WHEN cache_status = 'hit' THEN 1.0 ELSE 0.0 END)
                              AS hit_rate
                     FROM component_runs
                     WHERE $__timeFilter(started_at) AND cache_status IN ('hit', 'miss')
                     GROUP BY 1, 2
                     ORDER BY 1
                 """), width=12))
             .with_panel(data_table(
                 "Cache miss reasons",
                 "Misses by component and reason (which part of the idempotency key "
                 "changed, or no entry).", "short",
                 sql("""
                     SELECT component, coalesce(cache_miss_reason, 'unknown') AS reason,
                            count(*) AS misses, max(started_at) AS last_seen
                     FROM component_runs
                     WHERE $__timeFilter(started_at) AND cache_status = 'miss'
                     GROUP BY 1, 2
                     ORDER BY 3 DESC
                 """, "table")))
             .with_panel(data_table(
                 "Cache versions in use",
                 "Versions of cached results the invocations used or stored, per "
                 "component: how many invocations and when.", "short",
                 sql("""
                     SELECT component, cache_version, count(*) AS invocations,
                            count(*) FILTER (WHERE cache_status = 'hit') AS hits,
                            min(started_at) AS first_used, max(started_at) AS last_used
                     FROM component_runs
                     WHERE $__timeFilter(started_at) AND cache_version IS NOT NULL
                     GROUP BY 1, 2
                     ORDER BY 1, 2 DESC
                 """, "table")))
             .with_panel(time_series(
                 "Resumed runs per hour",
                 "Runs started per hour, and those that resumed an unfinished run.",
                 "short",
                 sql("""
                     SELECT $__timeGroupAlias(started_at, '1h'), count(*) AS runs,
                            count(*) FILTER (WHERE resumed_from_run_id IS NOT NULL)
                              AS resumed_runs
                     FROM runs
                     WHERE $__timeFilter(started_at)
                     GROUP BY 1
                     ORDER BY 1
                 """), bars=True))
             .with_row(row("External caches (warehouse)"))
             .with_panel(time_series(
                 "External cache lookups",
                 "Lookups of external caches (mlobs.record_cache_lookup) per interval, by "
                 "cache and result.", "short",
                 sql("""
                     SELECT $__timeGroupAlias(occurred_at, $__interval),
                            (attributes->>'cache') || ' ' || (attributes->>'status') AS metric,
                            count(*) AS lookups
                     FROM events
                     WHERE kind = 'external_cache' AND $__timeFilter(occurred_at)
                     GROUP BY 1, 2
                     ORDER BY 1
                 """), bars=True, stacked=True))
             .with_panel(data_table(
                 "External caches", "Per component and cache: lookups, hits, misses, stale "
                 "answers and the hit rate (in percent) over the time range.", "short",
                 sql("""
                     SELECT cr.component, e.attributes->>'cache' AS cache, count(*) AS lookups,
                            count(*) FILTER (WHERE e.attributes->>'status' = 'hit') AS hits,
                            count(*) FILTER (WHERE e.attributes->>'status' = 'miss') AS misses,
                            count(*) FILTER (WHERE e.attributes->>'status' = 'stale') AS stale,
                            round(100.0 * avg(CASE WHEN e.attributes->>'status' = 'hit'
                                                   THEN 1.0 ELSE 0.0 END), 1)
                              AS hit_rate_percent
                     FROM events AS e
                     JOIN component_runs AS cr ON cr.component_run_id = e.component_run_id
                     WHERE e.kind = 'external_cache' AND $__timeFilter(e.occurred_at)
                     GROUP BY 1, 2
                     ORDER BY 3 DESC
                 """, "table")))
             .with_row(row("Prometheus"))
             .with_panel(time_series(
                 "Cache lookups by result (Prometheus)",
                 "Component cache lookups per second by result (hit, miss, bypass).", "ops",
                 promql("""
                     sum by (component, result) (
                       rate(mlobs_cache_lookups_total{component=~"$component"}
                         [$__rate_interval]))
                 """, "{{component}} {{result}}"), width=24)))
    return finish(board)
