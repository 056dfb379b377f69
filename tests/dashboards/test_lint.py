"""Each lint rule finds what it is there to find: a committed dashboard made wrong in
one way gets exactly that problem reported."""

import copy

import pytest

pytest.importorskip("mlobs_dashboards")

from mlobs_dashboards import generate, lint  # noqa: E402
from mlobs_dashboards.__main__ import PROVISIONING, main  # noqa: E402
from mlobs_dashboards.queries import Query  # noqa: E402

PROVISIONED = lint.provisioned_datasources(PROVISIONING)


@pytest.fixture
def board():
    """A fresh copy of the overview dashboard (SQL and PromQL panels, rows, variables)."""
    return copy.deepcopy(generate.load(generate.GENERATED_DIR / "mlobs-overview.json"))


def panel(board, title):
    return next(p for p in lint.panels(board) if p.get("title") == title)


def promql(text, panel_type="timeseries"):
    return Query("d", 1, "p", panel_type, "A", "promql", text, None)


def sql(text, format="table"):
    return Query("d", 1, "p", "table", "A", "sql", text, format)


def test_provisioning_declares_both_datasources_with_fixed_uids():
    assert PROVISIONED == {"mlobs-warehouse": "grafana-postgresql-datasource",
                           "mlobs-prometheus": "prometheus"}


def test_repeated_panel_ids_and_ref_ids_are_found(board):
    runs, errors = panel(board, "Runs"), panel(board, "Run error rate")
    errors["id"] = runs["id"]
    errors["targets"].append(dict(errors["targets"][0]))
    problems = lint.check_ids(board)
    assert any(f"panel id {runs['id']}" in line for line in problems), problems
    assert any("refIds repeated: A" in line for line in problems), problems


@pytest.mark.parametrize("uid, expected", [
    ("some-uid-of-my-grafana", "not a provisioned"),
    ("${nope}", "no grafana-postgresql-datasource datasource variable"),
    ("${prometheus}", "no grafana-postgresql-datasource datasource variable"),
])
def test_a_datasource_that_is_neither_a_variable_nor_provisioned_is_found(board, uid,
                                                                          expected):
    target = panel(board, "Runs")["targets"][0]
    target["datasource"] = {"type": "grafana-postgresql-datasource", "uid": uid}
    problems = lint.check_datasources(board, PROVISIONED)
    assert len(problems) == 1 and expected in problems[0], problems
    del target["datasource"]["uid"]
    assert "names no uid" in lint.check_datasources(board, PROVISIONED)[0]


def test_the_provisioned_uid_itself_is_accepted(board):
    panel(board, "Runs")["datasource"]["uid"] = "mlobs-warehouse"
    assert lint.check_datasources(board, PROVISIONED) == []


def test_a_panel_without_description_or_unit_is_found(board):
    target = panel(board, "Runs")
    target["description"] = " "
    del target["fieldConfig"]["defaults"]["unit"]
    assert lint.check_descriptions_and_units(board) == [
        "mlobs-overview / Runs: no description", "mlobs-overview / Runs: no unit"]


def test_schema_violations_are_found_but_the_base_threshold_null_is_allowed(board):
    assert lint.check_schema(board) == []
    stat = panel(board, "Run error rate")
    stat["options"]["colorMode"] = "purple"
    stat["fieldConfig"]["defaults"]["thresholds"]["steps"][1]["value"] = None
    board["refresh"] = 60
    problems = lint.check_schema(board)
    assert any("stat schema: colorMode" in line for line in problems), problems
    assert any("steps/1/value: None is not of type 'number'" in line
               for line in problems), problems
    assert any("dashboard schema: refresh" in line for line in problems), problems
    assert len(problems) == 3, problems


def test_a_prometheus_query_that_breaks_its_schema_is_found(board):
    target = panel(board, "Invocation rate by component")["targets"][0]
    target["format"] = "csv"
    assert any("prometheus schema: format" in line for line in lint.check_schema(board))


@pytest.mark.parametrize("expr, expected", [
    ("sum(rate(mlobs_runs_total[5m]))", "rate() must use [$__rate_interval]"),
    ("sum(increase(mlobs_oom_total[$__interval]))", "increase() must use"),
    ("sum(mlobs_runs_total)", "counter 'mlobs_runs_total' outside rate()"),
    ("histogram_quantile(0.9, sum by (le) (mlobs_component_duration_seconds_bucket))",
     "counter 'mlobs_component_duration_seconds_bucket' outside"),
    ("sum(rate(mlobs_no_such_total[$__rate_interval]))", "'mlobs_no_such_total' is not one"),
    ("sum(rate(mlobs_runs_total[$__rate_interval])", "does not parse"),
    ("label_values(mlobs_nope_total, component)", "is not one"),
])
def test_promql_rules(expr, expected):
    kind = "variable" if expr.startswith("label_values") else "timeseries"
    problems = lint.check_promql(promql(expr, kind))
    assert len(problems) == 1 and expected in problems[0], problems


def test_promql_that_follows_the_rules_passes():
    assert lint.check_promql(promql(
        'sum by (status) (rate(mlobs_runs_total{job=~"$job"}[$__rate_interval])) '
        '/ on() group_left sum(up)')) == []
    assert lint.check_promql(promql("label_values(mlobs_runs_total, status)",
                                    "variable")) == []
    assert "must be label_values" in lint.check_promql(promql("up", "variable"))[0]


@pytest.mark.parametrize("text, format, expected", [
    ("SELECT nope FROM runs WHERE $__timeFilter(started_at)", "table", "'nope'"),
    ("SELECT count(*) FROM run_stats", "table", "no warehouse table run_stats"),
    ("SELECT r.status FROM runs AS r JOIN component_runs AS c ON c.run = r.run_id",
     "table", "Unknown column: run"),
    ("SELECT started_at, count(*) FROM runs GROUP BY 1", "time_series",
     "needs a column named time"),
    ("SELECT $__nosuch(started_at) FROM runs", "table", "MacroError"),
    ("SELECT FROM WHERE", "table", "Error"),
])
def test_sql_rules(text, format, expected):
    problems = lint.check_sql(sql(text, format))
    assert len(problems) == 1 and expected in problems[0], problems


def test_sql_that_names_warehouse_columns_passes():
    assert lint.check_sql(sql("""
        SELECT $__timeGroupAlias(cr.started_at, $__interval), cr.component AS metric,
               count(*) AS n
        FROM component_runs AS cr JOIN runs AS r ON r.run_id = cr.run_id
        WHERE $__timeFilter(cr.started_at) AND cr.component IN ($component)
        GROUP BY 1, 2""", "time_series")) == []


def test_lint_command_reports_problems_and_exits_1(tmp_path, board, capsys):
    panel(board, "Runs")["description"] = ""
    (tmp_path / "mlobs-overview.json").write_text(generate.json.dumps(board))
    assert main(["lint", "--dir", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "mlobs-overview / Runs: no description" in captured.err
    assert "1 dashboards, 1 problems" in captured.out
    assert main(["lint", "--dir", str(tmp_path / "empty")]) == 1


def test_a_variable_no_dashboard_defines_is_found(board):
    target = panel(board, "Invocation rate by component")["targets"][0]
    target["expr"] = target["expr"].replace("$component", "$compnent")
    assert lint.check_variables(board) == [
        "mlobs-overview / Invocation rate by component / A: $compnent is no variable of "
        "the dashboard"]


def test_an_sql_format_grafana_does_not_know_is_found():
    assert "format must be time_series or table" in lint.check_sql(
        sql("SELECT count(*) FROM runs", "timeseries"))[0]


def test_a_single_valued_variable_is_expanded_unquoted():
    text = "SELECT count(*) FROM component_rollups WHERE bucket_width = '$bucket'"
    assert lint.check_sql(sql(text), frozenset({"bucket"})) == []
    assert "ParseError" in lint.check_sql(sql(text))[0]
