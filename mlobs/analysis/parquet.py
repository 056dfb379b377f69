"""Rollup rows exported to Parquet (``mlobs rollup --parquet DIR``): a hive-partitioned
dataset, readable by DuckDB (``read_parquet('DIR/**/*.parquet', hive_partitioning =
true)``) and pandas (``pandas.read_parquet('DIR')``, with pyarrow).

Layout: ``DIR/bucket_width=<width>/bucket_day=<YYYY-MM-DD>/data_0.parquet``, the day (UTC)
of ``bucket_start``; rows of bucket width ``all`` go to ``bucket_day=all``. An export
replaces the partitions its rows fall in, each as a whole: give it every row of those
days (``mlobs rollup`` exports an incremental rollup's days from the stored rows). With
``whole_width`` it also removes the other days of that width (a full rollup's export).
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from mlobs.analysis.duckdb_connect import connect_duckdb
from mlobs.analysis.rollup import FLOAT_FIELDS, INT_FIELDS, RollupRow
from mlobs.core.errors import ConfigError

#: DuckDB type of each RollupRow field; the Parquet columns follow the field order.
_PARQUET_TYPES: dict[str, str] = {
    "computed_at": "TIMESTAMPTZ", "bucket_width": "VARCHAR", "bucket_start": "TIMESTAMPTZ",
    "component": "VARCHAR", "model_signature": "VARCHAR", "pipeline_version": "VARCHAR",
    "profile": "VARCHAR", "device_kind": "VARCHAR", "items": "BIGINT",
    **dict.fromkeys(INT_FIELDS, "BIGINT"), **dict.fromkeys(FLOAT_FIELDS, "DOUBLE"),
    "cache_miss_reasons": "MAP(VARCHAR, BIGINT)",
    "metrics": "MAP(VARCHAR, STRUCT(count BIGINT, mean DOUBLE, p50 DOUBLE, p95 DOUBLE))",
}
#: Partition columns (hive keys), outermost first.
PARTITIONS = ("bucket_width", "bucket_day")


def export_parquet(rows: Sequence[RollupRow], directory: str | Path, *,
                   whole_width: str | None = None) -> Path:
    """Write rollup rows to a hive-partitioned Parquet dataset with DuckDB.

    Args:
        rows: rollup rows (any bucket widths): every row of each day they fall in.
        directory: the dataset's root; created when missing. It must not be a file.
        whole_width: the rows are all of this bucket width: days of it they do not fall
            in are removed from the dataset.

    Returns:
        The resolved root. Within a partition, columns are those of :class:`RollupRow`
        in field order (the partition keys are in the path, not the files; readers add
        them back as columns); timestamps are UTC-adjusted, ``cache_miss_reasons`` a
        ``MAP(VARCHAR, BIGINT)``, ``metrics`` a map of structs.

    Raises:
        ConfigError: ``directory`` is an existing file (the export used to write one
            file; it now writes a directory).
    """
    root = Path(directory).expanduser().resolve()
    if root.is_file():
        raise ConfigError(f"{root} is a file: --parquet takes a directory, the root of a "
                          "dataset partitioned by bucket_width and bucket_day")
    root.mkdir(parents=True, exist_ok=True)
    if whole_width is not None:
        days = {"all" if r.bucket_start is None else f"{r.bucket_start:%Y-%m-%d}"
                for r in rows}
        for stale in (root / f"bucket_width={whole_width}").glob("bucket_day=*"):
            if stale.name.split("=", 1)[1] not in days:
                shutil.rmtree(stale)
    if not rows:
        return root
    fields = [f.name for f in dataclasses.fields(RollupRow)]
    columns = ", ".join(f"{name} {_PARQUET_TYPES[name]}" for name in fields)
    # Written beside the dataset, then each partition swapped in: a reader sees a day's
    # old file or its new one, and the days this export has no rows for stay.
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=root))
    con = connect_duckdb()
    try:
        con.execute(f"CREATE TEMP TABLE rollup ({columns})")
        con.executemany(f"INSERT INTO rollup VALUES ({', '.join('?' * len(fields))})",
                        [[getattr(r, name) for name in fields] for r in rows])
        quoted = "'" + str(staging).replace("'", "''") + "'"
        con.execute(
            f"COPY (SELECT *, coalesce(strftime(bucket_start, '%Y-%m-%d'), 'all') "
            f"AS bucket_day FROM rollup) TO {quoted} "
            f"(FORMAT parquet, PARTITION_BY ({', '.join(PARTITIONS)}), "
            f"FILENAME_PATTERN 'data_{{i}}')")
        for written in sorted(staging.glob("*/*")):
            target = root / written.relative_to(staging)
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                old = target.with_name(f".old-{target.name}")
                target.rename(old)
                written.rename(target)
                shutil.rmtree(old)
            else:
                written.rename(target)
    finally:
        con.close()
        shutil.rmtree(staging, ignore_errors=True)
    return root
