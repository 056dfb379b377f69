"""What a dashboard's queries are, and PromQL as Grafana sends it to Prometheus."""

import pytest

pytest.importorskip("mlobs_dashboards")

from mlobs_dashboards import generate  # noqa: E402
from mlobs_dashboards.queries import expand_promql, queries, variable_names  # noqa: E402

EXPR = ('sum by (component) (rate(mlobs_component_runs_total{component=~"$component"}'
        '[$__rate_interval])) > ${threshold} or vector($__interval_ms)')


def test_single_values_are_inserted_and_several_become_an_escaped_alternation():
    text = expand_promql(EXPR, {"component": ".*", "threshold": "1"}, interval_s=60,
                         scrape_interval_s=15)
    assert 'component=~".*"' in text and "[1m15s]" in text and "> 1 or vector(60000)" in text
    several = expand_promql(EXPR, {"component": ["asr", "ocr.v2"], "threshold": "1"},
                            interval_s=15, scrape_interval_s=15)
    assert 'component=~"(asr|ocr\\\\.v2)"' in several and "[1m0s]" in several
    with pytest.raises(KeyError):
        expand_promql(EXPR, {"component": ".*"}, interval_s=60, scrape_interval_s=15)


def test_variable_names_skip_grafanas_own():
    assert variable_names(EXPR) == ["component", "threshold"]
    assert variable_names("IN ($a) AND [[b]] AND ${c:csv} AND $__timeFilter(t) AND $a") \
        == ["a", "b", "c"]


def test_queries_lists_panel_queries_then_variable_queries():
    board = generate.load(generate.GENERATED_DIR / "mlobs-component.json")
    found = queries(board)
    assert {q.kind for q in found} == {"sql"}
    variables = [q for q in found if q.panel_type == "variable"]
    assert [q.panel_title for q in variables] == ["$component", "$model_signature",
                                                  "$pipeline_version"]
    assert found[-len(variables):] == variables
    assert all(q.format in ("table", "time_series") and q.ref_id for q in found)
