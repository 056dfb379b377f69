"""Bulk insert-or-ignore on PostgreSQL with COPY (ARCHITECTURE §6: "PostgreSQL bulk
writes may use COPY").

:func:`copy_insert_or_ignore` is insert-or-ignore by primary key, like the
executemany path SQLite keeps: the first write of a record wins, so a batch written
twice (a retry, a replay from manifests) adds no rows.

* Fast path (new records, the common case): ``COPY <table> FROM STDIN`` straight into
  the table, inside a savepoint.
* A key already stored makes that COPY fail with a unique violation: the savepoint is
  rolled back and the rows are copied into a temporary staging table
  (``CREATE TEMP TABLE ... (LIKE <table>) ON COMMIT DROP``), then moved with
  ``INSERT ... SELECT ... ON CONFLICT (<primary key>) DO NOTHING``. Any other
  violation (a foreign key) is raised as with executemany.

Everything runs on the connection and in the transaction of
:meth:`~mlobs.warehouse.store.WarehouseStore.write`, so a failure anywhere rolls the
whole batch back and nothing is left behind on the session.

Values are written in COPY's text format: JSON columns are serialised here with the
engine's serializer (NaN and infinity refused, ``ValueError`` as with executemany; a
None in a JSON column that is not ``none_as_null`` becomes JSON ``null``, as SQLAlchemy
binds it); timestamps are sent with their offset to ``timestamptz`` columns, which store
the UTC instant (read back as UTC by ``UtcDateTime``).
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import JSON, Connection, Table
from sqlalchemy.exc import DBAPIError

from mlobs.warehouse.engine import json_dumps


def _json_converter(none_as_null: bool) -> Callable[[Any], Any]:
    null = None if none_as_null else "null"

    def convert(value: Any) -> Any:
        if value is None:
            return null
        if not value and type(value) in (list, dict):
            return "[]" if type(value) is list else "{}"
        return json_dumps(value)  # the engine's json_serializer: the same text

    return convert


class _CopyPlan:
    """Per table: column names, per-column converters and the SQL of one batch."""

    def __init__(self, table: Table) -> None:
        self.table = table
        # Columns the database fills (component_runs.ingested_at) take their default.
        written = [c for c in table.c if c.server_default is None]
        self.columns = [c.name for c in written]
        converters: list[tuple[int, Callable[[Any], Any]]] = []
        for index, column in enumerate(written):
            if isinstance(column.type, JSON):
                converters.append((index, _json_converter(bool(column.type.none_as_null))))
        self.converters = tuple(converters)
        self.getter = operator.itemgetter(*self.columns)
        key = ", ".join(f'"{c.name}"' for c in table.primary_key.columns)
        names = ", ".join(f'"{name}"' for name in self.columns)
        # {stage}: a name unique to each call, so two calls in one transaction are fine.
        self.create_sql = (f'CREATE TEMP TABLE "{{stage}}" (LIKE "{table.name}") '
                           "ON COMMIT DROP")
        self.copy_sql = f'COPY "{{stage}}" ({names}) FROM STDIN'
        self.direct_sql = f'COPY "{table.name}" ({names}) FROM STDIN'
        self.move_sql = (f'INSERT INTO "{table.name}" ({names}) SELECT {names} FROM '
                         f'"{{stage}}" ON CONFLICT ({key}) DO NOTHING')

    def tuples(self, rows: Sequence[dict[str, Any]]) -> list[list[Any]]:
        # Timestamps need no conversion: psycopg sends aware datetimes with their offset
        # and the columns are timestamptz (stored as UTC instants).
        getter, converters = self.getter, self.converters
        out = []
        for row in rows:
            values = list(getter(row))
            for index, convert in converters:
                values[index] = convert(values[index])
            out.append(values)
        return out


_PLANS: dict[str, _CopyPlan] = {}
_STAGE_NUMBERS = itertools.count()
_SAVEPOINT = "SAVEPOINT mlobs_copy"
_ROLLBACK_TO_SAVEPOINT = "ROLLBACK TO SAVEPOINT mlobs_copy"


def _plan(table: Table) -> _CopyPlan:
    plan = _PLANS.get(table.name)
    if plan is None or plan.table is not table:
        plan = _PLANS[table.name] = _CopyPlan(table)
    return plan


def _copy_rows(cursor: Any, statement: str, values: list[list[Any]]) -> None:
    with cursor.copy(statement) as copy:
        write_row = copy.write_row
        for row in values:
            write_row(row)


def copy_insert_or_ignore(conn: Connection, table: Table,
                          rows: Sequence[dict[str, Any]]) -> int:
    """Insert ``rows`` into ``table`` unless their primary key is already stored.

    Args:
        conn: a SQLAlchemy connection on PostgreSQL (psycopg 3) inside a transaction.
        table: the target table; each row has a value for every column.
        rows: the rows, as dicts keyed by column name.

    Returns:
        The number of rows actually inserted.

    Raises:
        ValueError, TypeError: a JSON value cannot be serialised.
        sqlalchemy.exc.DBAPIError: the database refused the rows (the driver's error
            wrapped as SQLAlchemy wraps it: IntegrityError, OperationalError, ...).
    """
    if not rows:
        return 0
    import psycopg  # only PostgreSQL warehouses need it

    plan = _plan(table)
    values = plan.tuples(rows)  # serialise before touching the database
    dbapi = conn.connection.driver_connection
    statement = _SAVEPOINT
    try:
        with dbapi.cursor() as cursor:  # type: ignore[union-attr]
            # Fast path: COPY straight into the table, inside a savepoint. A key already
            # stored (a retry, a replay, another writer's same record) makes it fail with
            # a unique violation; then the savepoint is rolled back and the rows go through
            # the staging table and insert-or-ignore.
            cursor.execute(statement)
            statement = plan.direct_sql
            try:
                _copy_rows(cursor, statement, values)
            except psycopg.errors.UniqueViolation:
                statement = _ROLLBACK_TO_SAVEPOINT
                cursor.execute(statement)
            else:
                return len(values)
            stage = f"mlobs_stage_{table.name}_{next(_STAGE_NUMBERS)}"
            statement = plan.create_sql.format(stage=stage)
            cursor.execute(statement)
            statement = plan.copy_sql.format(stage=stage)
            _copy_rows(cursor, statement, values)
            statement = plan.move_sql.format(stage=stage)
            cursor.execute(statement)
            return max(cursor.rowcount, 0)
    except psycopg.Error as exc:
        # Raised on the driver connection, outside SQLAlchemy: wrap it as SQLAlchemy would
        # (IntegrityError, OperationalError, ...) and invalidate a connection that is gone.
        invalidated = conn.dialect.is_disconnect(exc, dbapi, None)
        if invalidated:
            conn.invalidate(exc)
        raise DBAPIError.instance(statement, None, exc, psycopg.Error,
                                  hide_parameters=True,
                                  connection_invalidated=invalidated,
                                  dialect=conn.dialect) from exc
