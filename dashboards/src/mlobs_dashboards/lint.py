"""Lint rules for the generated dashboards, beyond what Grafana itself checks.

Each rule takes a dashboard's JSON and returns problems, one line each
(``<uid> / <panel> / <refId>: what is wrong``); :func:`lint` runs them all.

* the JSON validates against Grafana 11.6's schemas (dashboard, each panel type's
  options and custom field config, Prometheus queries), except the base threshold step's
  ``value: null`` (Grafana's JSON for -Infinity, typed number in the schema);
* panel ids are unique in the dashboard, refIds unique in their panel;
* every datasource is a datasource variable of the dashboard or a provisioned uid;
* every panel but a row has a description and a unit;
* every template variable a query names is defined in the dashboard;
* every ``rate``/``increase``/``irate`` range is ``$__rate_interval``, and counters (and
  histogram buckets, counts and sums) appear only inside those functions;
* every metric a PromQL names is one the mlobs-prometheus exporter defines;
* every table and column an SQL names exists in mlobs's warehouse models (the SQL is
  expanded as Grafana would first, then resolved with sqlglot); its format is
  ``time_series`` (with a ``time`` column) or ``table``.

Needs the ``lint`` extra (jsonschema, promql-parser, sqlglot, PyYAML, mlobs,
mlobs-prometheus).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import promql_parser
import sqlglot
import yaml
from prometheus_client import CollectorRegistry
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.qualify import qualify

from mlobs.warehouse.models import Base
from mlobs_dashboards import macros
from mlobs_dashboards.queries import (
    PROMETHEUS,
    Query,
    panels,
    queries,
    variable_names,
    variables,
)
from mlobs_prometheus.metrics import MlobsMetrics

SCHEMA_DIR = Path(__file__).parent / "schemas"
RATE_FUNCTIONS = frozenset({"rate", "increase", "irate"})
#: series Prometheus itself adds to every scrape.
PROMETHEUS_OWN = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})
#: placeholder durations: what the PromQL parser sees in place of Grafana's variables.
_SENTINELS = {"$__rate_interval": "7919s", "$__interval": "7907s", "$__range": "7901s"}
_RATE_SENTINEL = timedelta(seconds=7919)
#: a Prometheus variable's query: Grafana's label_values(selector, label), not PromQL.
LABEL_VALUES = re.compile(r"label_values\((.+),\s*(\w+)\)")


# -- schemas ---------------------------------------------------------------------------

@lru_cache(maxsize=None)
def _schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMA_DIR / f"{name}.jsonschema.json").read_text(encoding="utf-8"))


def _base_thresholds_as_minus_infinity(value: Any) -> Any:
    """``value`` with each thresholds' base step ``value: null`` read as -Infinity, which
    is what Grafana's null there means (the schema's one known gap)."""
    if isinstance(value, list):
        return [_base_thresholds_as_minus_infinity(item) for item in value]
    if not isinstance(value, dict):
        return value
    copy = {key: _base_thresholds_as_minus_infinity(item) for key, item in value.items()}
    steps = (copy.get("thresholds") or {}).get("steps") if isinstance(
        copy.get("thresholds"), dict) else None
    if steps and isinstance(steps[0], dict) and "value" in steps[0] \
            and steps[0]["value"] is None:
        steps[0] = {**steps[0], "value": float("-inf")}
    return copy


def _validate(instance: Any, schema_name: str, definition: str | None, where: str) -> list[str]:
    schema = _schema(schema_name)
    if definition is not None:
        schema = {**schema, "$ref": f"#/definitions/{definition}"}
    problems = []
    validator = jsonschema.Draft7Validator(schema)
    for error in validator.iter_errors(_base_thresholds_as_minus_infinity(instance)):
        location = "/".join(str(part) for part in error.absolute_path) or "(top)"
        problems.append(f"{where}: {schema_name} schema: {location}: {error.message}")
    return problems


def check_schema(board: Mapping[str, Any]) -> list[str]:
    """The dashboard, each panel's options and custom field config, and each Prometheus
    query validate against the Grafana 11.6 schemas (rows and PostgreSQL queries have
    none but the dashboard's own)."""
    uid = board.get("uid", "?")
    # panels one by one, against Panel or RowPanel: the dashboard's oneOf of the two
    # would only say that a panel matches neither
    problems = _validate({k: v for k, v in board.items() if k != "panels"}, "dashboard",
                         None, uid)
    for panel in panels(board):
        kind, where = panel.get("type"), f"{uid} / {panel.get('title', '?')}"
        problems += _validate(panel, "dashboard", "RowPanel" if kind == "row" else "Panel",
                              where)
        if kind == "row":
            continue
        if not (SCHEMA_DIR / f"{kind}.jsonschema.json").exists():
            problems.append(f"{where}: panel type {kind!r} has no Grafana 11.6 schema here")
            continue
        if "options" in panel:
            problems += _validate(panel["options"], kind, "Options", where)
        custom = (panel.get("fieldConfig") or {}).get("defaults", {}).get("custom")
        if custom is not None and "FieldConfig" in _schema(kind)["definitions"]:
            problems += _validate(custom, kind, "FieldConfig", where)
        for target in panel.get("targets") or []:
            if (target.get("datasource") or {}).get("type") == PROMETHEUS:
                problems += _validate(target, "prometheus", "dataquery",
                                      f"{where} / {target.get('refId', '?')}")
    return problems


# -- structure ------------------------------------------------------------------------

def check_ids(board: Mapping[str, Any]) -> list[str]:
    """Panel ids unique in the dashboard; refIds present and unique in each panel."""
    uid, problems, seen = board.get("uid", "?"), [], {}
    for panel in panels(board):
        title = panel.get("title", "?")
        if panel.get("id") is None:
            problems.append(f"{uid} / {title}: panel has no id")
        elif panel["id"] in seen:
            problems.append(f"{uid} / {title}: panel id {panel['id']} is also "
                            f"{seen[panel['id']]!r}'s")
        else:
            seen[panel["id"]] = title
        ref_ids = [target.get("refId") for target in panel.get("targets") or []]
        if None in ref_ids:
            problems.append(f"{uid} / {title}: a query has no refId")
        duplicates = sorted({r for r in ref_ids if r is not None and ref_ids.count(r) > 1})
        if duplicates:
            problems.append(f"{uid} / {title}: refIds repeated: {', '.join(duplicates)}")
    return problems


def check_datasources(board: Mapping[str, Any],
                      provisioned_uids: Mapping[str, str]) -> list[str]:
    """Every panel, query and variable names its datasource through a datasource
    variable of this dashboard (``${name}`` of the same plugin type) or a provisioned
    uid (``provisioned_uids``: uid → plugin type)."""
    uid = board.get("uid", "?")
    ds_variables = {v["name"]: v.get("query") for v in variables(board)
                    if v.get("type") == "datasource"}

    def check(ref: Any, where: str) -> list[str]:
        if not isinstance(ref, Mapping) or not ref.get("uid") or not ref.get("type"):
            return [f"{where}: datasource {ref!r} names no uid and type"]
        name, kind = ref["uid"], ref["type"]
        if name.startswith("${") and name.endswith("}"):
            if ds_variables.get(name[2:-1]) != kind:
                return [f"{where}: {name} is no {kind} datasource variable of the dashboard"]
            return []
        if provisioned_uids.get(name) != kind:
            return [f"{where}: datasource uid {name!r} is not a provisioned {kind} datasource"]
        return []

    problems = []
    for panel in panels(board):
        if panel.get("type") == "row":
            continue
        where = f"{uid} / {panel.get('title', '?')}"
        problems += check(panel.get("datasource"), where)
        for target in panel.get("targets") or []:
            problems += check(target.get("datasource", panel.get("datasource")),
                              f"{where} / {target.get('refId', '?')}")
    for variable in variables(board):
        if variable.get("type") == "query":
            problems += check(variable.get("datasource"), f"{uid} / ${variable['name']}")
    return problems


def check_descriptions_and_units(board: Mapping[str, Any]) -> list[str]:
    """Every panel but a row has a non-empty description and a unit."""
    uid, problems = board.get("uid", "?"), []
    for panel in panels(board):
        if panel.get("type") == "row":
            continue
        where = f"{uid} / {panel.get('title', '?')}"
        if not (panel.get("description") or "").strip():
            problems.append(f"{where}: no description")
        if not ((panel.get("fieldConfig") or {}).get("defaults") or {}).get("unit"):
            problems.append(f"{where}: no unit")
    return problems


# -- PromQL ---------------------------------------------------------------------------

@lru_cache(maxsize=1)
def exporter_series() -> dict[str, bool]:
    """Series names the mlobs-prometheus exporter can expose → whether each is a counter
    (counters' ``_total``; histograms' ``_bucket``, ``_count`` and ``_sum``)."""
    registry = CollectorRegistry()
    MlobsMetrics(registry)
    series = {}
    for family in registry.collect():
        if family.type == "counter":
            series[f"{family.name}_total"] = True
        elif family.type == "histogram":
            series.update({f"{family.name}{suffix}": True
                           for suffix in ("_bucket", "_count", "_sum")})
        else:
            series[family.name] = False
        series[f"{family.name}_created"] = False
    return series


def check_promql(query: Query) -> list[str]:
    """``$__rate_interval`` in every rate/increase/irate; counters only inside them;
    only the exporter's metrics (and Prometheus's own ``up``). A variable's
    ``label_values(selector, label)`` is checked for its metric only."""
    text, in_variable = query.text.strip(), query.panel_type == "variable"
    if in_variable:
        match = LABEL_VALUES.fullmatch(text)
        if match is None:
            return [f"{query.where}: a Prometheus variable must be label_values(metric, "
                    f"label)"]
        text = match.group(1)
    for variable, sentinel in _SENTINELS.items():
        text = text.replace(variable, sentinel)
    try:
        expr = promql_parser.parse(text)
    except Exception as exc:  # the parser raises plain ValueError-like errors
        return [f"{query.where}: PromQL does not parse: {exc}"]
    known, problems = exporter_series(), []
    calls: list[str] = []

    def enter(node: Any) -> None:
        kind = type(node).__name__
        if kind == "Call":
            calls.append(node.func.name)
            if node.func.name in RATE_FUNCTIONS:
                ranges = [arg.range for arg in node.args if type(arg).__name__ ==
                          "MatrixSelector"]
                if ranges != [_RATE_SENTINEL]:
                    problems.append(f"{query.where}: {node.func.name}() must use "
                                    f"[$__rate_interval]")
        elif kind == "VectorSelector":
            name = node.name
            if name not in known and name not in PROMETHEUS_OWN:
                problems.append(f"{query.where}: metric {name!r} is not one the "
                                f"mlobs-prometheus exporter defines")
            elif known.get(name) and not in_variable and \
                    not (calls and calls[-1] in RATE_FUNCTIONS):
                problems.append(f"{query.where}: counter {name!r} outside rate()/increase()")

    def leave(node: Any) -> None:
        if type(node).__name__ == "Call":
            calls.pop()

    promql_parser.walk(expr, enter, leave)
    return problems


# -- SQL ------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def warehouse_schema() -> dict[str, dict[str, str]]:
    """Table → column → type of mlobs's warehouse models (types left generic: the check
    is about names)."""
    return {table.name: {column.name: "TEXT" for column in table.columns}
            for table in Base.metadata.tables.values()}


#: a fixed range and interval the lint expands the macros with.
LINT_RANGE = macros.TimeRange(datetime(2026, 1, 1, tzinfo=timezone.utc),
                              datetime(2026, 1, 2, tzinfo=timezone.utc))


def check_sql(query: Query, single_valued: frozenset[str] = frozenset()) -> list[str]:
    """The SQL, its macros and variables expanded, parses as PostgreSQL and names only
    tables and columns of the warehouse models; a time series query returns ``time``.
    Variables named in ``single_valued`` are expanded unquoted, the others as a quoted
    list, as Grafana does."""
    if query.format not in ("time_series", "table"):
        return [f"{query.where}: format must be time_series or table, got {query.format!r}"]
    values = {name: "lint" if name in single_valued else ["lint"]
              for name in variable_names(query.text)}
    try:
        text = macros.interpolate(query.text, LINT_RANGE, 60.0, values)
        tree = sqlglot.parse_one(text, read="postgres")
        schema = warehouse_schema()
        ctes = {cte.alias for cte in tree.find_all(sqlglot.exp.CTE)}
        missing = sorted({table.name for table in tree.find_all(sqlglot.exp.Table)
                          if table.name and table.name not in schema
                          and table.name not in ctes})
        if missing:
            return [f"{query.where}: no warehouse table {', '.join(missing)}"]
        qualify(tree, schema=schema, dialect="postgres", validate_qualify_columns=True)
    except (SqlglotError, ValueError) as exc:
        return [f"{query.where}: {type(exc).__name__}: {exc}"]
    if query.format == "time_series" and "time" not in tree.named_selects:
        return [f"{query.where}: a time_series query needs a column named time"]
    return []


def check_variables(board: Mapping[str, Any]) -> list[str]:
    """Every template variable a query names is a variable of the dashboard (Grafana
    would send an unknown ``$name`` as it stands)."""
    defined = {variable["name"] for variable in variables(board)}
    return [f"{query.where}: ${name} is no variable of the dashboard"
            for query in queries(board) for name in variable_names(query.text)
            if name not in defined]


# -- all ------------------------------------------------------------------------------

def provisioned_datasources(path: Path) -> dict[str, str]:
    """uid → plugin type of the datasources a Grafana provisioning file declares."""
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return {ds["uid"]: ds["type"] for ds in document.get("datasources") or []
            if "uid" in ds and "type" in ds}


def lint(board: Mapping[str, Any], provisioned_uids: Mapping[str, str]) -> list[str]:
    """Every rule of the module docstring on one dashboard's JSON; [] when clean."""
    problems = (check_schema(board) + check_ids(board)
                + check_datasources(board, provisioned_uids)
                + check_descriptions_and_units(board) + check_variables(board))
    # Grafana quotes a variable's values for SQL when it is multi-value or has "All"
    single = frozenset(v["name"] for v in variables(board)
                       if not v.get("multi") and not v.get("includeAll"))
    for query in queries(board):
        problems += check_sql(query, single) if query.kind == "sql" else check_promql(query)
    return problems
