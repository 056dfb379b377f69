"""Rollup rows exported to Parquet (``mlobs rollup --parquet``), readable by DuckDB and
pandas."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from mlobs.analysis.duckdb_connect import connect_duckdb
from mlobs.analysis.rollup import FLOAT_FIELDS, INT_FIELDS, RollupRow

#: DuckDB type of each RollupRow field; the Parquet columns follow the field order.
_PARQUET_TYPES: dict[str, str] = {
    "computed_at": "TIMESTAMPTZ", "bucket_width": "VARCHAR", "bucket_start": "TIMESTAMPTZ",
    "component": "VARCHAR", "model_signature": "VARCHAR",
    **dict.fromkeys(INT_FIELDS, "BIGINT"), **dict.fromkeys(FLOAT_FIELDS, "DOUBLE"),
    "cache_miss_reasons": "MAP(VARCHAR, BIGINT)",
}


def export_parquet(rows: Sequence[RollupRow], path: str | Path) -> Path:
    """Write rollup rows to a Parquet file with DuckDB ``COPY ... (FORMAT parquet)``.

    Args:
        rows: rollup rows (any bucket widths).
        path: destination file; parent directories are created, an existing file replaced.

    Returns:
        The resolved destination path. Timestamps are stored as UTC-adjusted timestamps,
        ``cache_miss_reasons`` as a ``MAP(VARCHAR, BIGINT)``; column names and order are
        those of :class:`RollupRow`.
    """
    target = Path(path).expanduser().resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    fields = [f.name for f in dataclasses.fields(RollupRow)]
    columns = ", ".join(f"{name} {_PARQUET_TYPES[name]}" for name in fields)
    con = connect_duckdb()
    try:
        con.execute(f"CREATE TEMP TABLE rollup ({columns})")
        if rows:
            con.executemany(f"INSERT INTO rollup VALUES ({', '.join('?' * len(fields))})",
                            [[getattr(r, name) for name in fields] for r in rows])
        quoted = "'" + str(target).replace("'", "''") + "'"
        con.execute(f"COPY rollup TO {quoted} (FORMAT parquet)")
    finally:
        con.close()
    return target
