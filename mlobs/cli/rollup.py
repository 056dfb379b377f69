"""``mlobs rollup``: compute component rollups in DuckDB and write them back.

Usage::

    mlobs rollup [--db-url URL] [--bucket all|hour|day] [--since ISO] [--parquet PATH]
                 [--json] [--no-write]

The component table goes to stdout, followed, when some component recorded lookups of
external caches (:mod:`mlobs.hooks.external_cache`), by a second table of their hit rates per
component × cache name. With ``--json`` stdout holds one JSON object instead:
``{"component_rollups": [every column of RollupRow ...], "external_caches":
[ExternalCacheRow ...]}``. Progress and errors go to stderr so that stdout stays
machine-readable. The component table shows the cache miss reasons only when some row
has a miss, the GPU peak columns only when some row has one, and degraded % only when
some component used a model fallback chain. Only the component rows are written to
``component_rollups`` and exported to Parquet; the external cache rows are computed
each time from ``events``.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone

from mlobs.core.config import settings_from_env
from mlobs.core.errors import MlobsError

# mlobs.analysis.rollup (DuckDB, SQLAlchemy, Alembic: ~0.4 s) is imported when the command runs,
# not when the CLI starts, like the other subcommands.
#: Same values as mlobs.analysis.rollup.BUCKETS (a test keeps them equal).
BUCKETS = ("all", "hour", "day")
ROLLUP_TABLE = "component_rollups"


def _iso_datetime(text: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"not an ISO 8601 date/time: {text!r} (e.g. 2024-05-01 or "
            f"2024-05-01T12:00:00+00:00)") from exc
    # Naive input is taken as UTC, like mlobs.core.records.parse_utc.
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``rollup`` subcommand to the ``mlobs`` parser.

    Args:
        subparsers: the object returned by ``ArgumentParser.add_subparsers()``.

    Returns:
        The new subparser; its ``func`` default is :func:`run_rollup`, which takes the
        parsed namespace and returns the process exit code.
    """
    parser = subparsers.add_parser(
        "rollup", help="compute per-component rollups (DuckDB) and store them",
        description="Compute per component x model_signature (x time bucket) counts, "
                    "duration percentiles, error/empty/cache-hit/OOM/degraded rates, "
                    "cache miss reasons, OOMs per run, retries and RSS/GPU memory peaks "
                    "from the warehouse, print them, and replace the rows of that bucket "
                    f"width in {ROLLUP_TABLE}. Hit rates of external caches (recorded "
                    "with mlobs.hooks.external_cache.record_cache_lookup) are printed below, "
                    "per component x cache name, and not stored.")
    parser.add_argument("--db-url", default=None, metavar="URL",
                        help="warehouse URL (default: $MLOBS_DB_URL, else the embedded "
                             "SQLite warehouse under $MLOBS_ROOT)")
    parser.add_argument("--bucket", choices=BUCKETS, default="all",
                        help="time bucket of started_at, in UTC (default: all)")
    parser.add_argument("--since", type=_iso_datetime, default=None, metavar="ISO",
                        help="only invocations started at or after this ISO 8601 time "
                             "(naive = UTC); hour/day buckets start at its bucket boundary "
                             "and earlier stored buckets are kept")
    parser.add_argument("--parquet", default=None, metavar="PATH",
                        help="also export the rollup rows to this Parquet file")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON object instead of the tables: "
                             "{\"component_rollups\": [...], \"external_caches\": [...]}")
    parser.add_argument("--no-write", action="store_true",
                        help=f"do not write {ROLLUP_TABLE}")
    parser.set_defaults(func=run_rollup)
    return parser


def run_rollup(args: argparse.Namespace) -> int:
    """Run ``mlobs rollup`` with parsed arguments (see :func:`register`).

    Returns:
        0 on success; 1 when the warehouse is missing, not upgraded, unreachable or the
        configuration is invalid (the reason is printed to stderr).
    """
    from mlobs.analysis.rollup import (
        compute_external_cache_rollup,
        compute_rollup,
        export_parquet,
        format_external_cache_rollup,
        format_rollup,
        rollup_json,
        write_rollup,
    )

    try:
        db_url = args.db_url or settings_from_env().db_url
        rows = compute_rollup(db_url, bucket=args.bucket, since=args.since)
        external = compute_external_cache_rollup(db_url, bucket=args.bucket,
                                                 since=args.since)
        if args.json:
            print(rollup_json(rows, external))
        else:
            print(format_rollup(rows))
            if external:
                print()
                print("external caches")
                print(format_external_cache_rollup(external))
        if args.parquet:
            path = export_parquet(rows, args.parquet)
            print(f"wrote {len(rows)} rollup rows to {path}", file=sys.stderr)
        if not args.no_write:
            written = write_rollup(db_url, rows, args.bucket, since=args.since)
            print(f"replaced {ROLLUP_TABLE} rows of bucket width {args.bucket!r} "
                  f"with {written} rows", file=sys.stderr)
    except MlobsError as exc:
        print(f"mlobs rollup: error: {exc}", file=sys.stderr)
        return 1
    return 0
