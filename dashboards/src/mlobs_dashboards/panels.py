"""What every mlobs dashboard shares: datasources, template variables, panels, queries.

Datasources are never hard-coded into a panel: every panel and query names
``${warehouse}`` (Grafana's PostgreSQL datasource on the mlobs warehouse) or
``${prometheus}``, two datasource variables whose defaults are the uids that
``dashboards/provisioning/datasources.yaml`` provisions. A Grafana whose datasources
have other uids picks them in the variables' drop-downs.

Panel helpers take a title, a description and a unit (Grafana unit ids: ``ms``, ``s``,
``bytes``, ``percentunit``, ``short``, ``ops``) because the lint rules require all three;
queries get their refIds (A, B, ...) and panels their ids when the dashboard is built
(:func:`finish`).
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Sequence

from grafana_foundation_sdk.builders import common as common_builder
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.builders import stat, table, timeseries
from grafana_foundation_sdk.cog import builder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import prometheus as prom_model

from mlobs_dashboards import postgres
from mlobs_dashboards.queries import PROMETHEUS as PROMETHEUS_PLUGIN_ID

#: uids of the provisioned datasources (provisioning/datasources.yaml).
WAREHOUSE_UID = "mlobs-warehouse"
PROMETHEUS_UID = "mlobs-prometheus"
#: what an SQL variable's "All" expands to (inserted as-is): filters are written
#: ``('__all' IN ($v) OR column IN ($v))`` so "All" keeps every row, NULLs and values
#: outside the drop-down's list included, and never becomes an empty ``IN ()``.
SQL_ALL = "'__all'"

WAREHOUSE = model.DataSourceRef(type_val=postgres.PLUGIN_ID, uid="${warehouse}")
PROMETHEUS = model.DataSourceRef(type_val=PROMETHEUS_PLUGIN_ID, uid="${prometheus}")

#: the tag every mlobs dashboard carries (dashboard links list them by it).
TAG = "mlobs"

Query = builder.Builder  # a PostgresQueryBuilder or a prometheus Dataquery builder


# -- dashboard ------------------------------------------------------------------------

def new_dashboard(uid: str, title: str, description: str,
                  time_from: str = "now-24h") -> dash.Dashboard:
    """A dashboard with mlobs's defaults: UTC, 1 min refresh, the two datasource
    variables, links to the other mlobs dashboards (by tag)."""
    return (dash.Dashboard(title).uid(uid).description(description)
            .tags([TAG]).timezone("utc").refresh("1m").time(time_from, "now")
            .tooltip(model.DashboardCursorSync.CROSSHAIR)
            .link(dash.DashboardLink("mlobs dashboards")
                  .type(model.DashboardLinkType.DASHBOARDS).tags([TAG])
                  .as_dropdown(True).include_vars(True).keep_time(True))
            .with_variable(datasource_variable("warehouse", "Warehouse", postgres.PLUGIN_ID,
                                               WAREHOUSE_UID))
            .with_variable(datasource_variable("prometheus", "Prometheus",
                                               PROMETHEUS_PLUGIN_ID, PROMETHEUS_UID)))


def datasource_variable(name: str, label: str, plugin_id: str,
                        default_uid: str) -> dash.DatasourceVariable:
    """A drop-down of the datasources of ``plugin_id``, the provisioned one by default."""
    return (dash.DatasourceVariable(name).label(label).type(plugin_id)
            .current(model.VariableOption(selected=True, text=default_uid,
                                          value=default_uid)))


def sql_variable(name: str, label: str, sql: str, description: str) -> dash.QueryVariable:
    """A multi-value drop-down filled by ``sql`` (one text column) on the warehouse, "All"
    selected by default. Queries filter with :func:`sql_filter`: Grafana quotes and
    comma-joins the selected values, and inserts :data:`SQL_ALL` for "All"."""
    return (dash.QueryVariable(name).label(label).description(description)
            .datasource(WAREHOUSE).query(_dedent(sql))
            .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(model.VariableSort.ALPHABETICAL_ASC).multi(True).include_all(True)
            .all_value(SQL_ALL)
            .current(model.VariableOption(selected=True, text=["All"], value=["$__all"])))


def sql_filter(column: str, variable: str) -> str:
    """The condition of an :func:`sql_variable` on ``column`` (an SQL expression)."""
    return f"({SQL_ALL} IN (${variable}) OR {column} IN (${variable}))"


def label_variable(name: str, label: str, metric: str, description: str) -> dash.QueryVariable:
    """A multi-value drop-down of the values of label ``name`` on ``metric`` in
    Prometheus; "All" is the regex ``.*``, so queries use ``name=~"$name"``."""
    return (dash.QueryVariable(name).label(label).description(description)
            .datasource(PROMETHEUS)
            .query(f"label_values({metric}, {name})")
            .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(model.VariableSort.ALPHABETICAL_ASC).multi(True).include_all(True)
            .all_value(".*")
            .current(model.VariableOption(selected=True, text=["All"], value=["$__all"])))


def custom_variable(name: str, label: str, values: Sequence[str],
                    description: str) -> dash.CustomVariable:
    """A single-value drop-down of fixed ``values``, the first one selected."""
    return (dash.CustomVariable(name).label(label).description(description)
            .values(",".join(values))
            .current(model.VariableOption(selected=True, text=values[0], value=values[0])))


def finish(board: dash.Dashboard) -> model.Dashboard:
    """Build ``board``: panels numbered 1, 2, ... in layout order (rows included) and the
    queries of each panel lettered A, B, ..."""
    built = board.build()
    number = 0
    for panel in _all_panels(built.panels or []):
        number += 1
        panel.id_val = number
        targets = getattr(panel, "targets", None) or []
        for letter, target in zip(string.ascii_uppercase, targets):
            target.ref_id = letter
    return built


def _all_panels(panels: Iterable[object]) -> Iterable[object]:
    for panel in panels:
        yield panel
        yield from getattr(panel, "panels", None) or []


def row(title: str) -> dash.Row:
    return dash.Row(title)


# -- queries --------------------------------------------------------------------------

def _dedent(text: str) -> str:
    """``text`` with each line's indentation removed: queries are assembled from
    fragments written at different indentations."""
    return "\n".join(line.strip() for line in text.strip().splitlines() if line.strip())


def sql(query: str, format: postgres.Format = "time_series") -> postgres.PostgresQueryBuilder:
    """A warehouse query (Grafana macros and ``$variables`` allowed). ``time_series``
    needs a ``time`` column; a text column named ``metric`` names the series."""
    return postgres.PostgresQueryBuilder(_dedent(query), format).datasource(WAREHOUSE)


def promql(expr: str, legend: str) -> prom.Dataquery:
    """A Prometheus range query; ``legend`` is its legend format (``{{component}}``)."""
    return (prom.Dataquery().expr(_dedent(expr)).legend_format(legend).range()
            .editor_mode(prom_model.QueryEditorMode.CODE)
            .datasource(PROMETHEUS))


# -- panels ---------------------------------------------------------------------------

def _common(panel, title: str, description: str, unit: str, datasource: model.DataSourceRef,
            targets: Sequence[Query], width: int, height: int):
    panel = (panel.title(title).description(description).unit(unit)
             .datasource(datasource).span(width).height(height))
    for target in targets:
        panel = panel.with_target(target)
    return panel


def _datasource_of(targets: Sequence[Query]) -> model.DataSourceRef:
    kinds = {isinstance(t, postgres.PostgresQueryBuilder) for t in targets}
    if len(kinds) != 1:
        raise ValueError("a panel's queries must all use one datasource")
    return WAREHOUSE if kinds.pop() else PROMETHEUS


def time_series(title: str, description: str, unit: str, *targets: Query,
                width: int = 12, height: int = 8, bars: bool = False,
                stacked: bool = False) -> timeseries.Panel:
    """A time series panel (lines, or stacked bars for counts per bucket)."""
    panel = (timeseries.Panel().line_width(1).fill_opacity(10 if not bars else 80)
             .show_points(common.VisibilityMode.NEVER)
             .legend(common_builder.VizLegendOptions()
                     .display_mode(common.LegendDisplayMode.TABLE)
                     .placement(common.LegendPlacement.BOTTOM).show_legend(True)
                     .calcs(["mean", "max"]))
             .tooltip(common_builder.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI)
                      .sort(common.SortOrder.DESCENDING)))
    if bars:
        panel = panel.draw_style(common.GraphDrawStyle.BARS)
    if stacked:
        panel = panel.stacking(common_builder.StackingConfig()
                               .mode(common.StackingMode.NORMAL))
    return _common(panel, title, description, unit, _datasource_of(targets), targets,
                   width, height)


def single_stat(title: str, description: str, unit: str, *targets: Query,
                width: int = 6, height: int = 5,
                thresholds: Sequence[tuple[float | None, str]] = ((None, "green"),)
                ) -> stat.Panel:
    """A big number (the last value of each series, or the one cell of a table query)."""
    steps = [model.Threshold(value=value, color=color) for value, color in thresholds]
    panel = (stat.Panel().graph_mode(common.BigValueGraphMode.NONE)
             .color_mode(common.BigValueColorMode.VALUE)
             .reduce_options(common_builder.ReduceDataOptions().calcs(["lastNotNull"])
                             .values(False))
             .thresholds(dash.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE)
                         .steps(steps)))
    return _common(panel, title, description, unit, _datasource_of(targets), targets,
                   width, height)


def data_table(title: str, description: str, unit: str, *targets: Query,
               width: int = 12, height: int = 8) -> table.Panel:
    """A table of a ``table``-format query; ``unit`` applies to all its number columns
    (a column in another unit says so in its name, e.g. ``hit_rate_percent``)."""
    panel = table.Panel().show_header(True).filterable(True)
    return _common(panel, title, description, unit, _datasource_of(targets), targets,
                   width, height)
