"""A dataquery for Grafana's PostgreSQL datasource, which grafana-foundation-sdk lacks.

The JSON is what Grafana 11.6's SQL query editor saves in code mode: ``rawSql`` holds the
query with Grafana's macros (``$__timeFilter(...)``, ``$__timeGroupAlias(...)``) and
template variables; ``format`` is ``time_series`` (a ``time`` column plus value columns,
one series per value column or per text column's value) or ``table``.

:func:`register` makes ``Dashboard.from_json`` decode these queries into
:class:`PostgresQuery` rather than the SDK's untyped fallback.
"""

from __future__ import annotations

from typing import Any, Literal, Self

from grafana_foundation_sdk.cog import builder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models.dashboard import DataSourceRef

#: the plugin id of Grafana's bundled PostgreSQL datasource (since Grafana 10.3).
PLUGIN_ID = "grafana-postgresql-datasource"
Format = Literal["time_series", "table"]
FORMATS = ("time_series", "table")


class PostgresQuery(cogvariants.Dataquery):
    """One SQL query of a panel.

    Args:
        raw_sql: the query text, Grafana macros and template variables unexpanded.
        format: ``"time_series"`` or ``"table"``.
        ref_id: the query's id within its panel (``"A"``, ``"B"``, ...).
        datasource: the datasource it runs on (normally a ``${warehouse}`` reference).
        hide: leave the query out of the panel.

    Raises:
        ValueError: ``format`` is neither ``time_series`` nor ``table``.
    """

    def __init__(self, raw_sql: str = "", format: Format = "table",
                 ref_id: str | None = None, datasource: DataSourceRef | None = None,
                 hide: bool | None = None) -> None:
        if format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
        self.raw_sql = raw_sql
        self.format = format
        self.ref_id = ref_id
        self.datasource = datasource
        self.hide = hide

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {"editorMode": "code", "format": self.format,
                                      "rawQuery": True, "rawSql": self.raw_sql}
        if self.ref_id is not None:
            payload["refId"] = self.ref_id
        if self.datasource is not None:
            payload["datasource"] = self.datasource
        if self.hide is not None:
            payload["hide"] = self.hide
        return payload

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        datasource = data.get("datasource")
        return cls(raw_sql=data.get("rawSql", ""), format=data.get("format", "table"),
                   ref_id=data.get("refId"), hide=data.get("hide"),
                   datasource=None if datasource is None
                   else DataSourceRef.from_json(datasource))


class PostgresQueryBuilder(builder.Builder[PostgresQuery]):
    """Builder of :class:`PostgresQuery`, in the SDK's fluent style."""

    def __init__(self, raw_sql: str, format: Format = "table") -> None:
        self._query = PostgresQuery(raw_sql=raw_sql, format=format)

    def build(self) -> PostgresQuery:
        return self._query

    def ref_id(self, ref_id: str) -> Self:
        self._query.ref_id = ref_id
        return self

    def datasource(self, datasource: DataSourceRef) -> Self:
        self._query.datasource = datasource
        return self

    def hide(self, hide: bool) -> Self:
        self._query.hide = hide
        return self


def register() -> None:
    """Let ``Dashboard.from_json`` decode PostgreSQL queries as :class:`PostgresQuery`."""
    cogruntime.register_dataquery_variant(cogruntime.DataqueryConfig(
        identifier=PLUGIN_ID, from_json_hook=PostgresQuery.from_json))
