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
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tabulate import tabulate

from mlobs.cli.argtypes import iso_datetime
from mlobs.cli.formatting import MISSING, mib, ms, pct, when
from mlobs.core.config import settings_from_env
from mlobs.core.errors import MlobsError

if TYPE_CHECKING:
    from mlobs.analysis.rollup import ExternalCacheRow, RollupRow

# mlobs.analysis.rollup (DuckDB, SQLAlchemy, Alembic: ~0.4 s) is imported when the command runs,
# not when the CLI starts, like the other subcommands.
#: Same values as mlobs.analysis.rollup.BUCKETS (a test keeps them equal).
BUCKETS = ("all", "hour", "day")
ROLLUP_TABLE = "component_rollups"


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
    parser.add_argument("--since", type=iso_datetime, default=None, metavar="ISO",
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
    from mlobs.analysis.parquet import export_parquet
    from mlobs.analysis.rollup import (
        compute_external_cache_rollup,
        compute_rollup,
        write_rollup,
    )

    if args.since is not None and args.bucket == "all" and not args.no_write:
        return _fail("--since with --bucket all covers part of the history and would "
                     "replace the stored rollup of all of it: add --no-write, or use "
                     "--bucket hour or day")
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
                  f"with {written} rows" if written else
                  f"computed nothing: the stored {ROLLUP_TABLE} rows are kept",
                  file=sys.stderr)
    except MlobsError as exc:
        return _fail(str(exc))
    return 0


def _fail(message: str) -> int:
    print(f"mlobs rollup: error: {message}", file=sys.stderr)
    return 1


# -- text and JSON output -------------------------------------------------------------

def format_rollup(rows: Sequence[RollupRow]) -> str:
    """A plain-text table of rollup rows, for terminals and logs.

    Columns: bucket start (only when some row has one, as ``YYYY-MM-DD HH:MM`` UTC),
    component, model_signature's first 12 characters (``-`` when none), invocations, runs,
    p50/p95/p99 duration in ms, error %, empty %, cache hit %, then the cache miss reasons
    (``model_signature_changed:3, input_changed:5``; ``-`` for none) only when some row
    has a miss, OOM % (of invocations), retries and p95 peak RSS in MiB; then p95 GPU
    allocated / reserved peaks in MiB only when some row has one, and degraded % only when
    some row set a prediction_status. ``-`` means not measured.
    """
    if not rows:
        return "(no component runs to roll up)"
    bucketed = any(r.bucket_start is not None for r in rows)
    # Optional columns keep the usual table (CPU-only, no fallback chains) narrow.
    gpu = any(r.p95_peak_gpu_allocated_bytes is not None
              or r.p95_peak_gpu_reserved_bytes is not None for r in rows)
    degraded = any(r.degraded_rate is not None for r in rows)
    misses = any(r.cache_miss_reasons for r in rows)
    headers = ["component", "model", "invocations", "runs", "p50 ms", "p95 ms", "p99 ms",
               "error %", "empty %", "cache hit %", "OOM %", "retries", "p95 RSS MiB"]
    if misses:
        headers.insert(headers.index("cache hit %") + 1, "miss reasons")
    if gpu:
        headers += ["p95 GPU alloc MiB", "p95 GPU rsvd MiB"]
    if degraded:
        headers.append("degraded %")
    if bucketed:
        headers.insert(0, "bucket (UTC)")
    table = []
    for r in rows:
        line = [r.component, r.model_signature[:12] if r.model_signature else MISSING,
                r.invocations, r.runs, ms(r.p50_duration_ms), ms(r.p95_duration_ms),
                ms(r.p99_duration_ms), pct(r.error_rate), pct(r.empty_rate),
                pct(r.cache_hit_rate), pct(r.oom_rate),
                r.retries, mib(r.p95_peak_rss_bytes)]
        if misses:  # right after cache hit %
            line.insert(10, format_miss_reasons(r.cache_miss_reasons))
        if gpu:
            line += [mib(r.p95_peak_gpu_allocated_bytes), mib(r.p95_peak_gpu_reserved_bytes)]
        if degraded:
            line.append(pct(r.degraded_rate))
        if bucketed:
            line.insert(0, when(r.bucket_start, minutes=True))
        table.append(line)
    left = 3 if bucketed else 2
    align = ["left"] * left + ["right"] * (len(headers) - left)
    if misses:
        align[headers.index("miss reasons")] = "left"
    # disable_numparse keeps MISSING and the pre-formatted numbers exactly as written.
    return tabulate(table, headers=headers, tablefmt="simple", disable_numparse=True,
                    colalign=align)


def format_miss_reasons(reasons: dict[str, int]) -> str:
    """``model_signature_changed:3, input_changed:5`` (in the dict's order); ``-`` if empty."""
    return ", ".join(f"{reason}:{n}" for reason, n in reasons.items()) or MISSING


def format_external_cache_rollup(rows: Sequence[ExternalCacheRow]) -> str:
    """A plain-text table of external cache rows: [bucket (UTC),] component, cache,
    lookups, hits, misses, stale, hit %, stale %."""
    if not rows:
        return "(no external cache lookups)"
    bucketed = any(r.bucket_start is not None for r in rows)
    headers = ["component", "external cache", "lookups", "hits", "misses", "stale",
               "hit %", "stale %"]
    table = []
    for r in rows:
        line = [r.component, r.cache, r.lookups, r.hits, r.misses, r.stale,
                pct(r.hit_rate), pct(r.stale_rate)]
        if bucketed:
            line.insert(0, when(r.bucket_start, minutes=True))
        table.append(line)
    if bucketed:
        headers.insert(0, "bucket (UTC)")
    left = 3 if bucketed else 2
    return tabulate(table, headers=headers, tablefmt="simple", disable_numparse=True,
                    colalign=["left"] * left + ["right"] * (len(headers) - left))


def rollup_json(rows: Sequence[RollupRow],
                external_caches: Sequence[ExternalCacheRow] | None = None) -> str:
    """Rollup rows as JSON.

    Without ``external_caches``: an array of :meth:`RollupRow.to_dict` objects. With it
    (``mlobs rollup --json``): an object ``{"component_rollups": [...],
    "external_caches": [...]}`` of :meth:`RollupRow.to_dict` and
    :meth:`ExternalCacheRow.to_dict` objects.
    """
    components = [r.to_dict() for r in rows]
    if external_caches is None:
        return json.dumps(components, indent=2)
    return json.dumps({"component_rollups": components,
                       "external_caches": [r.to_dict() for r in external_caches]},
                      indent=2)
