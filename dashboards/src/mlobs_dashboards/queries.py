"""The queries a generated dashboard holds, and how Grafana would send them.

Works on the dashboard JSON (what Grafana loads), not on the builders, so the lint and
the tests check exactly what is committed. :func:`queries` lists every panel query and
template-variable query; :func:`expand_promql` substitutes what Grafana substitutes
before a Prometheus query leaves it (template variables, ``$__interval``,
``$__interval_ms``, ``$__rate_interval``); SQL goes through
:func:`mlobs_dashboards.macros.interpolate`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mlobs_dashboards import macros
from mlobs_dashboards.postgres import PLUGIN_ID as POSTGRES

#: the plugin id of Grafana's Prometheus datasource.
PROMETHEUS = "prometheus"
#: regex metacharacters; escaped with a doubled backslash inside a PromQL string.
_REGEX_SPECIAL = re.compile(r"([\\^$.|?*+()\[\]{}])")


@dataclass(frozen=True)
class Query:
    """One query of a dashboard.

    ``kind`` is ``"sql"`` or ``"promql"``; ``text`` the rawSql or expr as stored;
    ``format`` the SQL result format (``time_series`` / ``table``) or ``None``;
    ``panel_type`` the panel's type (``"variable"`` for a variable's query); ``where``
    names it for messages: ``<dashboard uid> / <panel title> / <refId>``.
    """

    dashboard: str
    panel_id: int | None
    panel_title: str
    panel_type: str
    ref_id: str
    kind: str
    text: str
    format: str | None

    @property
    def where(self) -> str:
        return f"{self.dashboard} / {self.panel_title} / {self.ref_id}"


def panels(board: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel of ``board``, rows and the panels of collapsed rows included."""
    for panel in board.get("panels") or []:
        yield panel
        yield from panel.get("panels") or []


def variables(board: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list((board.get("templating") or {}).get("list") or [])


def _kind(datasource: Mapping[str, Any] | None) -> str | None:
    plugin = (datasource or {}).get("type")
    return {POSTGRES: "sql", PROMETHEUS: "promql"}.get(plugin)


def queries(board: Mapping[str, Any]) -> list[Query]:
    """The panel queries, then the query variables' queries, of ``board``."""
    uid = board.get("uid", "?")
    found = []
    for panel in panels(board):
        for target in panel.get("targets") or []:
            kind = _kind(target.get("datasource") or panel.get("datasource"))
            text = target.get("rawSql") if kind == "sql" else target.get("expr")
            if kind is None or text is None:
                continue
            found.append(Query(uid, panel.get("id"), panel.get("title", "?"),
                               panel.get("type", "?"), target.get("refId", "?"), kind,
                               text, target.get("format") if kind == "sql" else None))
    for variable in variables(board):
        kind = _kind(variable.get("datasource"))
        if variable.get("type") == "query" and kind is not None:
            found.append(Query(uid, None, f"${variable['name']}", "variable", "query",
                               kind, variable["query"], "table" if kind == "sql" else None))
    return found


def variable_names(text: str) -> list[str]:
    """The template variables ``text`` uses, in order, Grafana's ``$__`` names excluded."""
    names = [macros.variable_name(match) for match in macros.VARIABLE.finditer(text)]
    return [name for name in dict.fromkeys(names) if not name.startswith("__")]


def expand_promql(expr: str, values: Mapping[str, str | Sequence[str]], *,
                  interval_s: float, scrape_interval_s: float) -> str:
    """``expr`` as Grafana sends it to Prometheus.

    Args:
        expr: the stored expression.
        values: variable name → a single value (inserted as-is, e.g. ``.*`` for "All"
            with that all-value) or several (a regex alternation ``(a|b)``, as Grafana
            formats multi-value variables for Prometheus, each value regex-escaped
            inside the PromQL string).
        interval_s: the panel's ``$__interval`` in seconds.
        scrape_interval_s: the datasource's scrape interval in seconds (for
            ``$__rate_interval``: max(interval + scrape interval, 4 × scrape interval)).

    Raises:
        KeyError: ``expr`` uses a variable ``values`` lacks.
    """
    rate_s = macros.rate_interval(interval_s, scrape_interval_s)
    # Grafana's Prometheus backend prints these two differently (Go's Duration.String
    # for the rate interval, gtime.FormatInterval for the interval)
    expr = (expr.replace("$__rate_interval", macros.format_duration(rate_s))
            .replace("$__interval_ms", str(int(interval_s * 1000)))
            .replace("$__interval", macros.format_interval(interval_s)))

    def value(match: re.Match[str]) -> str:
        name = macros.variable_name(match)
        if name.startswith("__"):
            return match.group(0)
        chosen = values[name]
        if isinstance(chosen, str):
            return chosen
        return "(" + "|".join(_REGEX_SPECIAL.sub(r"\\\\\1", item) for item in chosen) + ")"

    return macros.VARIABLE.sub(value, expr)
