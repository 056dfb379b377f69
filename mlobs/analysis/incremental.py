"""Incremental rollups: recompute only the buckets that new records touched.

Every ``component_runs`` row carries ``ingested_at``, the database clock when the
warehouse stored it (:func:`mlobs.warehouse.engine.ingestion_clock`; a record replayed
late from a spool or a manifest gets the time it arrived, not the time it ran). Each
bucket width keeps a watermark in ``rollup_watermarks``: the database clock read just
before its last full or incremental rollup started reading. The next rollup of that width

1. finds the buckets of the rows stored since ``watermark - grace_s`` (through the
   index on ``ingested_at``);
2. recomputes those buckets whole, from every invocation that started inside them (a
   percentile cannot be updated from the new rows alone);
3. in one transaction, replaces the stored rows of those buckets and moves the watermark.

So the stored rows after any sequence of incremental rollups are the rows a full
recompute gives (the property tests check it on SQLite and PostgreSQL). What it relies
on:

* ``grace_s`` exceeds the longest write transaction (a row stamped before the watermark
  but committed after the rollup read is still picked up next time). The default, 300 s,
  is far above a batch of the warehouse sink; recomputing a few recent buckets twice is
  the only cost.
* Deleting runs (``mlobs gc``, ``mlobs forget``) clears the watermarks, so the rollup
  after a deletion is full: deleted rows leave no trace in ``ingested_at``.
* Rows stored before revision 0007 have no ``ingested_at``: the first rollup of each
  bucket width after the upgrade is full.
* A run's pipeline_version and profile are read at rollup time and assumed fixed once
  its components are stored (the run record sets them when it starts); a run record
  that changed them later would not be seen by an incremental rollup.
* A deletion committing while a rollup computes (its mark in ``rollup_watermarks``
  changed) keeps that rollup from moving its watermark.

A bucket width of ``all`` has one bucket, which every new row touches: its rollups are
always full. More than :data:`MAX_RANGES` separate runs of touched buckets (records
replayed from all over the history) fall back to a full rollup too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from mlobs.analysis.rollup import (
    BUCKET_LENGTHS,
    ROLLUP_TABLE,
    RollupRow,
    WarehouseReader,
    _check_bucket,
    bucket_floor,
)
from mlobs.analysis.rollup_sql import TimeRange, ingested_since_sql
from mlobs.analysis.rollup_store import replace_rows
from mlobs.core.errors import ConfigError, WarehouseError
from mlobs.warehouse.engine import display_url, ingestion_clock
from mlobs.warehouse.models import DELETION_MARK, RollupWatermark

#: Seconds before the watermark that an incremental rollup looks back (module docstring).
DEFAULT_GRACE_S = 300.0
#: Above this many separate runs of touched buckets, a full rollup is cheaper and simpler.
MAX_RANGES = 256
WATERMARKS = RollupWatermark.__table__


@dataclass(frozen=True)
class RefreshResult:
    """What :func:`refresh_rollup` did.

    ``mode``: ``"full"`` (every bucket), ``"incremental"`` (the touched buckets) or
    ``"since"`` (the buckets from ``since`` on). ``rows``: the rows computed (for an
    incremental rollup, those of the touched buckets only). ``buckets``: how many buckets
    were recomputed (None for full and since). ``reason``: why a full rollup was full.
    ``written``: rows stored (0 with ``write=False``, or when nothing was computed: the
    stored rows are then kept). ``ingested_through``: the new watermark (None when it did
    not move).
    """

    mode: str
    rows: list[RollupRow]
    buckets: int | None
    reason: str | None
    written: int
    ingested_through: datetime | None


def merged_ranges(starts: Sequence[datetime], bucket: str) -> list[TimeRange]:
    """Bucket starts (aware UTC) as the fewest ``(start, end)`` ranges: adjacent buckets
    join into one range. Raises ConfigError for ``all`` (it has no length)."""
    if bucket not in BUCKET_LENGTHS:
        raise ConfigError(f"bucket {bucket!r} has no length to merge ranges by")
    length = BUCKET_LENGTHS[bucket]
    ranges: list[list[datetime]] = []
    for start in sorted(set(starts)):
        if ranges and ranges[-1][1] == start:
            ranges[-1][1] = start + length
        else:
            ranges.append([start, start + length])
    return [(start, end) for start, end in ranges]


def _database_now(conn: sa.Connection) -> datetime:
    value = conn.execute(sa.select(ingestion_clock(conn.dialect.name))).scalar_one()
    if isinstance(value, str):  # SQLite: the text form of UtcDateTime
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None \
        else value.astimezone(timezone.utc)


def _watermark(conn: sa.Connection, bucket: str) -> datetime | None:
    return conn.execute(sa.select(WATERMARKS.c.ingested_through).where(
        WATERMARKS.c.bucket_width == bucket)).scalar_one_or_none()


def _set_watermark(conn: sa.Connection, bucket: str, through: datetime) -> None:
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(
        WATERMARKS)
    values = {"bucket_width": bucket, "ingested_through": through,
              "computed_at": datetime.now(timezone.utc)}
    conn.execute(insert.values(values).on_conflict_do_update(
        index_elements=[WATERMARKS.c.bucket_width],
        set_={"ingested_through": through, "computed_at": values["computed_at"]}))


def refresh_rollup(db_url: str, bucket: str = "hour", *, full: bool = False,
                   since: datetime | None = None, grace_s: float = DEFAULT_GRACE_S,
                   write: bool = True) -> RefreshResult:
    """Bring the stored rollup of ``bucket`` up to date (``mlobs rollup``).

    Incremental when a watermark exists (module docstring), else full.

    Args:
        db_url: warehouse SQLAlchemy URL.
        bucket: ``"all"``, ``"minute"``, ``"hour"`` or ``"day"``.
        full: recompute every bucket even when an incremental rollup is possible.
        since: recompute the buckets from ``bucket_floor(since)`` on and replace only
            those; the watermark does not move (other buckets may have new rows).
            Refused with ``all`` when writing (it would replace the all-time rollup).
        grace_s: seconds before the watermark to look back (>= 0).
        write: store the rows and move the watermark; False computes a full (or since)
            rollup and changes nothing.

    Returns:
        A :class:`RefreshResult`.

    Raises:
        ConfigError: unknown bucket, negative or non-finite ``grace_s``, ``since`` with
            ``all`` while writing.
        WarehouseError, SchemaOutOfDateError: as
            :func:`mlobs.analysis.rollup.compute_rollup`; a failed write keeps nothing.
    """
    _check_bucket(bucket)
    if not isinstance(grace_s, (int, float)) or not 0 <= grace_s < float("inf"):
        raise ConfigError(f"grace_s must be a finite number of seconds >= 0, got {grace_s!r}")
    if since is not None and bucket == "all" and write:
        raise ConfigError("a rollup of bucket 'all' since a time covers part of the "
                          "history and is not stored (it would replace the rollup of all "
                          "of it): use a minute, hour or day bucket, or do not write it")
    with WarehouseReader(db_url) as reader:
        try:
            with reader.engine.connect() as conn:
                # Read before the data: rows stored from now on are the next rollup's.
                now = _database_now(conn)
                watermark = _watermark(conn, bucket)
                deleted = _watermark(conn, DELETION_MARK)
        except sa.exc.SQLAlchemyError as exc:
            raise WarehouseError(f"cannot read the rollup watermark of "
                                 f"{display_url(db_url)}: {exc}") from exc
        if since is not None:
            rows = reader.rollup(bucket, since=since)
            return _store(reader, bucket, rows, "since", None, None,
                          [(bucket_floor(since, bucket), None)], None, write, deleted)
        reason = ("asked for" if full else "not writing" if not write
                  else "bucket all has one bucket" if bucket == "all"
                  else f"no {ROLLUP_TABLE} watermark yet" if watermark is None else None)
        ranges: list[TimeRange] | None = None
        if reason is None:
            assert watermark is not None
            touched = reader.fetch(ingested_since_sql(
                reader.backend, reader.alias, reader.schema, bucket,
                watermark - timedelta(seconds=grace_s)))
            ranges = merged_ranges([r["bucket_start"].replace(tzinfo=timezone.utc)
                                    for r in touched], bucket)
            if len(ranges) > MAX_RANGES:
                reason, ranges = f"new rows in {len(ranges)} separate time ranges", None
            elif not ranges:
                return _store(reader, bucket, [], "incremental", 0, None, [], now, write,
                              deleted)
        if ranges is None:
            return _store(reader, bucket, reader.rollup(bucket), "full", None, reason,
                          None, now, write, deleted)
        rows = reader.rollup(bucket, ranges=ranges)
        buckets = sum((end - start) // BUCKET_LENGTHS[bucket] for start, end in ranges)
        return _store(reader, bucket, rows, "incremental", buckets, None, ranges, now,
                      write, deleted)


def _store(reader: WarehouseReader, bucket: str, rows: list[RollupRow], mode: str,
           buckets: int | None, reason: str | None, ranges: list[TimeRange] | None,
           now: datetime | None, write: bool, deleted: datetime | None) -> RefreshResult:
    """Replace the rows of ``ranges`` (all of ``bucket`` when None) and move the
    watermark to ``now`` (when not None), in one transaction. Nothing computed by a full
    or since rollup: the stored rows are kept. Runs deleted since ``deleted`` (the
    deletion mark read before the data): the rows are written but the watermark is
    dropped, so the next rollup is full."""
    if not write or (not rows and mode != "incremental"):
        return RefreshResult(mode, rows, buckets, reason, 0, None)
    try:
        with reader.engine.begin() as conn:
            # FOR UPDATE (PostgreSQL): a deletion committing now waits for this commit.
            mark = conn.execute(sa.select(WATERMARKS.c.ingested_through).where(
                WATERMARKS.c.bucket_width == DELETION_MARK).with_for_update()
            ).scalar_one_or_none()
            if rows or ranges:
                replace_rows(conn, rows, bucket, ranges)
            if mark != deleted:
                conn.execute(WATERMARKS.delete().where(WATERMARKS.c.bucket_width == bucket))
                now = None
            elif now is not None:
                _set_watermark(conn, bucket, now)
    except sa.exc.SQLAlchemyError as exc:
        raise WarehouseError(f"cannot write {ROLLUP_TABLE} to "
                             f"{display_url(reader.db_url)}: {exc}") from exc
    return RefreshResult(mode, rows, buckets, reason, len(rows), now)
