"""Every query of every committed dashboard runs and returns data: the SQL, expanded as
Grafana expands it (template variables, then macros), on the local PostgreSQL holding
demo data; the PromQL, expanded likewise, on a real Prometheus that scraped the process
which produced that data. Variables take the values their own queries return ("All")."""

from __future__ import annotations

import json
import math
import time
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

pytest.importorskip("mlobs_dashboards")
pytest.importorskip("sklearn")

from sqlalchemy import create_engine  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402

from mlobs_dashboards import generate, macros  # noqa: E402
from mlobs_dashboards.queries import expand_promql, queries, variables  # noqa: E402
from support.ci import unavailable  # noqa: E402

BOARDS = {path.stem: generate.load(path)
          for path in sorted(generate.GENERATED_DIR.glob("*.json"))}
SQL = [(uid, q) for uid, board in BOARDS.items() for q in queries(board) if q.kind == "sql"]
PROMQL = [(uid, q) for uid, board in BOARDS.items() for q in queries(board)
          if q.kind == "promql"]
#: Grafana's $__interval for these ranges (the provisioned datasource's minimum).
SQL_INTERVAL_S = 60.0
#: Prometheus's scrape interval in conftest.py (also the panels' $__interval here).
SCRAPE_INTERVAL_S = 1
#: panels that only GPU records feed.
GPU_ONLY = {"mlobs-memory / Peak GPU memory by component and device / A"}
#: how long Prometheus gets to scrape the final counts after the data is ready.
SCRAPE_TIMEOUT_S = 60


def sql_time_range(data) -> macros.TimeRange:
    return macros.TimeRange(data.started_at - timedelta(hours=1),
                            datetime.now(timezone.utc) + timedelta(hours=1))


@pytest.fixture(scope="module")
def engine(dashboard_data):
    engine = create_engine(dashboard_data.db_url, poolclass=NullPool)
    yield engine
    engine.dispose()


def fetch(engine, sql: str) -> tuple[list[str], list[tuple]]:
    with engine.connect() as conn:
        result = conn.exec_driver_sql(sql)
        return list(result.keys()), [tuple(row) for row in result]


def sql_values(engine, board, time_range, *, pick_first: bool = False
               ) -> dict[str, str | list[str]]:
    """The values Grafana inserts for the SQL variables, resolved in dashboard order as
    Grafana resolves them: "All" (the variable's all-value) or, with ``pick_first``, the
    first option its own query returns; a custom variable's current value."""
    values: dict[str, str | list[str]] = {}
    for variable in variables(board):
        name = variable["name"]
        if variable["type"] == "custom":
            values[name] = variable["current"]["value"]
        elif variable["type"] == "query" and \
                variable["datasource"]["type"] == "grafana-postgresql-datasource":
            _, rows = fetch(engine, macros.interpolate(variable["query"], time_range,
                                                       SQL_INTERVAL_S, values))
            assert rows, f"variable ${name} has no options"
            values[name] = [str(rows[0][0])] if pick_first \
                else macros.AllValue(variable["allValue"])
    return values


def is_number(value) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def no_gpu_recorded(engine) -> bool:
    _, [(count,)] = fetch(engine, "SELECT count(*) FROM component_runs "
                                  "WHERE peak_gpu_allocated_bytes IS NOT NULL")
    return count == 0


@pytest.mark.postgres
@pytest.mark.parametrize("uid, query", SQL, ids=[q.where for _, q in SQL])
def test_sql_query_returns_data_on_demo_data(dashboard_data, engine, uid, query):
    time_range = sql_time_range(dashboard_data)
    columns, rows = fetch(engine, macros.interpolate(
        query.text, time_range, SQL_INTERVAL_S, sql_values(engine, BOARDS[uid], time_range)))
    if query.where in GPU_ONLY and no_gpu_recorded(engine):
        assert rows == [], query.where  # the filter holds: no CPU rows as empty series
        pytest.skip("no component ran on a GPU here (CPU-only machine)")
    assert rows, f"{query.where} returned no rows"
    if query.panel_type == "timeseries":
        assert query.format == "time_series", query.where
    if query.format == "time_series":
        assert "time" in columns, (query.where, columns)
        times = [row[columns.index("time")] for row in rows]
        # Grafana turns long rows into series only when time ascends
        assert None not in times and times == sorted(times), query.where
    values = [v for row in rows for name, v in zip(columns, row) if name != "time"]
    assert any(v is not None for v in values), f"{query.where}: only NULLs"
    if query.panel_type == "stat":  # one figure: the demo data makes it non-zero
        assert any(is_number(v) and v != 0 for v in values), (query.where, rows)
    # a narrower selection runs too (it may match nothing: no assertion on rows)
    fetch(engine, macros.interpolate(query.text, time_range, SQL_INTERVAL_S,
                                     sql_values(engine, BOARDS[uid], time_range,
                                                pick_first=True)))


def prometheus(data, path: str, **params) -> dict:
    url = f"{data.prometheus_url}{path}?{urllib.parse.urlencode(params, doseq=True)}"
    with urllib.request.urlopen(url, timeout=10) as answer:
        body = json.load(answer)
    assert body["status"] == "success", body
    return body["data"]


@pytest.fixture(scope="module")
def scraped(dashboard_data):
    """Waits until Prometheus holds the filler's final run count; the range queried."""
    if dashboard_data.prometheus_url is None:
        unavailable("prometheus is missing: install Debian's prometheus package "
                    "(`make test` does it as root)")
    expected = dashboard_data.summary["runs"]
    deadline, seen = time.monotonic() + SCRAPE_TIMEOUT_S, None
    while time.monotonic() < deadline:
        try:
            result = prometheus(dashboard_data, "/api/v1/query",
                                query="sum(mlobs_runs_total)")["result"]
            seen = float(result[0]["value"][1]) if result else None
        except OSError:
            seen = None  # the server is still starting
        if seen == expected:
            break
        time.sleep(1)
    log = dashboard_data.prometheus_log.read_text(errors="replace")[-3000:]
    assert seen == expected, f"Prometheus saw {seen} runs, the warehouse {expected}:\n{log}"
    time.sleep(4 * SCRAPE_INTERVAL_S)  # a full $__rate_interval past the last change
    return dashboard_data.started_at, datetime.now(timezone.utc)


@pytest.mark.parametrize("uid, query", PROMQL, ids=[q.where for _, q in PROMQL])
def test_promql_query_returns_series_from_the_demo(dashboard_data, scraped, uid, query):
    start, end = scraped
    if query.panel_type == "variable":
        metric, label = query.text[len("label_values("):-1].split(", ")
        values = prometheus(dashboard_data, f"/api/v1/label/{label}/values",
                            **{"match[]": metric})
        assert values, query.where
        return
    expr = expand_promql(query.text, {"component": ".*"}, interval_s=SCRAPE_INTERVAL_S,
                         scrape_interval_s=SCRAPE_INTERVAL_S)
    result = prometheus(dashboard_data, "/api/v1/query_range", query=expr,
                        start=start.timestamp(), end=end.timestamp(),
                        step=SCRAPE_INTERVAL_S)["result"]
    assert result, f"{query.where}: no series for {expr}"
    finite = [float(v) for series in result for _, v in series["values"]
              if math.isfinite(float(v))]
    assert finite, f"{query.where}: only NaN/Inf values for {expr}"
