"""Run labels in the warehouse: table ``run_labels`` (revision 0008).

A run's labels (``RunRecord.labels``, :mod:`mlobs.core.labels`) are one row each, keyed by
(run_id, key). :class:`~mlobs.warehouse.store.WarehouseStore` replaces a run's set in the
transaction that writes its record (:func:`replace_labels`), so writing a record again —
a retry, a replay, ``mlobs ingest`` of its manifest — leaves the same rows; reads attach
them to the run records (:func:`labels_of`) and select runs by them
(:func:`label_conditions`). Deleting runs deletes their labels
(:mod:`mlobs.warehouse.deletion`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, and_, delete, exists, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import ColumnElement

from mlobs.warehouse.rows import LABELS

#: run_ids per ``IN (...)`` list: below every backend's bind-parameter limit.
_CHUNK = 500


def label_upsert(dialect: str) -> Any:
    """The statement :func:`replace_labels` inserts with: insert, or on (run_id, key)
    take the new value (a concurrent writer of the same run may have inserted it)."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(LABELS)
    return statement.on_conflict_do_update(
        index_elements=[LABELS.c.run_id, LABELS.c.key],
        set_={"value": statement.excluded.value})


def replace_labels(conn: Connection, upsert: Any, run_ids: Sequence[str],
                   rows: Sequence[dict[str, Any]]) -> None:
    """Make ``rows`` (run_id, key, value) the only labels of ``run_ids``, inside the
    caller's transaction (after the runs' own rows: the labels reference them).

    Args:
        conn: a connection inside the write's transaction.
        upsert: :func:`label_upsert` of the connection's dialect.
        run_ids: the runs written (each of the rows' run_ids among them).
        rows: their labels, one row per (run_id, key).
    """
    for start in range(0, len(run_ids), _CHUNK):
        conn.execute(delete(LABELS).where(LABELS.c.run_id.in_(run_ids[start:start + _CHUNK])))
    if rows:
        conn.execute(upsert, list(rows))


def labels_of(conn: Connection, run_ids: Iterable[str]) -> dict[str, dict[str, str]]:
    """``{run_id: {key: value}}`` (keys sorted) of the runs that have labels."""
    ids = list(run_ids)
    found: dict[str, dict[str, str]] = {}
    for start in range(0, len(ids), _CHUNK):
        query = (select(LABELS.c.run_id, LABELS.c.key, LABELS.c.value)
                 .where(LABELS.c.run_id.in_(ids[start:start + _CHUNK]))
                 .order_by(LABELS.c.run_id, LABELS.c.key))
        for run_id, key, value in conn.execute(query):
            found.setdefault(run_id, {})[key] = value
    return found


def label_conditions(labels: Mapping[str, str],
                     run_id: ColumnElement[Any]) -> list[ColumnElement[bool]]:
    """One ``EXISTS`` per (key, value): the run ``run_id`` names carries every label."""
    return [exists().where(and_(LABELS.c.run_id == run_id, LABELS.c.key == key,
                                LABELS.c.value == value))
            for key, value in sorted(labels.items())]
