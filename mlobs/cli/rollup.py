"""``mlobs rollup``: compute component rollups in DuckDB and write them back.

Usage::

    mlobs rollup [--bucket all|minute|hour|day] [--since ISO] [--full] [--grace-s S]
                 [--parquet DIR] [--json] [--no-write] [--root DIR] [--db-url URL]

By default a rollup is incremental: it recomputes only the buckets of the rows stored
since the last rollup of that bucket width (:mod:`mlobs.analysis.incremental`) and prints
those; ``--full`` recomputes every bucket.

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
import textwrap
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from mlobs.cli.argtypes import iso_datetime, non_negative_seconds
from mlobs.cli.db import add_location_arguments, resolve_db_url
from mlobs.cli.formatting import MISSING, mib, ms, pct, tabulate, when
from mlobs.cli.hints import rerun
from mlobs.core.errors import MlobsError

if TYPE_CHECKING:
    from mlobs.analysis.incremental import RefreshResult
    from mlobs.analysis.rollup import ExternalCacheRow, RollupRow

# mlobs.analysis.rollup (DuckDB, SQLAlchemy, Alembic: ~0.4 s) is imported when the command runs,
# not when the CLI starts, like the other subcommands.
#: Same values as mlobs.analysis.rollup.BUCKETS (a test keeps them equal).
BUCKETS = ("all", "minute", "hour", "day")
#: Same value as mlobs.analysis.incremental.DEFAULT_GRACE_S (a test keeps them equal).
DEFAULT_GRACE_S = 300.0
ROLLUP_TABLE = "component_rollups"
#: a bare model_signature is shown by its first 12 characters, after model names by 8.
SHORT_SIGNATURE = 12
LABEL_SIGNATURE = 8


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
        # Filled here: the raw formatter (for the examples) keeps lines as given.
        description=textwrap.fill(
                    "Compute per component x model_signature x pipeline_version x "
                    "profile x device kind (x time bucket) counts, duration percentiles "
                    "(pooled, and of cache hits and misses apart), error/empty/cache-hit/"
                    "OOM/degraded rates, cache miss reasons, OOMs per run, retries, "
                    "RSS/GPU memory peaks, throughput (items/s) and the user metrics "
                    "(count, mean, p50, p95) from the warehouse, print them, and store "
                    f"them in {ROLLUP_TABLE}. Incremental by default: only the buckets "
                    "that rows stored since the last rollup of the bucket width fall in "
                    "are recomputed and replaced (the first rollup of a width, and any "
                    "after `mlobs gc` or `mlobs forget`, is full). Hit rates of external "
                    "caches (recorded with mlobs.hooks.external_cache.record_cache_lookup) "
                    "are printed below, per component x cache name, and not stored.",
                    width=88),
        epilog="examples:\n"
               "  mlobs rollup --bucket hour            # what changed since the last one\n"
               "  mlobs rollup --bucket day --full --parquet rollups/\n"
               "  mlobs rollup --since 2026-12-01 --bucket hour --no-write --json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bucket", choices=BUCKETS, default="all",
                        help="time bucket of started_at, in UTC (default: all)")
    parser.add_argument("--since", type=iso_datetime, default=None, metavar="ISO",
                        help="only invocations started at or after this ISO 8601 time "
                             "(naive = UTC); minute/hour/day buckets start at its bucket "
                             "boundary and earlier stored buckets are kept")
    parser.add_argument("--full", action="store_true",
                        help="recompute every bucket, not only those new rows fall in")
    parser.add_argument("--grace-s", type=non_negative_seconds, default=DEFAULT_GRACE_S,
                        metavar="S",
                        help="an incremental rollup also takes the rows stored up to S "
                             "seconds before the last one started (covers write "
                             f"transactions still open then; default: {DEFAULT_GRACE_S:g})")
    parser.add_argument("--parquet", default=None, metavar="DIR",
                        help="also export the computed rows to this Parquet dataset, "
                             "partitioned by bucket_width and bucket_day (hive layout; "
                             "each day computed is rewritten whole)")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON object instead of the tables: "
                             "{\"component_rollups\": [...], \"external_caches\": [...]}")
    parser.add_argument("--no-write", action="store_true",
                        help=f"compute every bucket (or those from --since) and do not "
                             f"write {ROLLUP_TABLE}")
    add_location_arguments(parser)
    parser.set_defaults(func=run_rollup)
    return parser


def run_rollup(args: argparse.Namespace) -> int:
    """Run ``mlobs rollup`` with parsed arguments (see :func:`register`).

    Returns:
        0 on success; 1 when the warehouse is missing, not upgraded, unreachable or the
        configuration is invalid (the reason is printed to stderr).
    """
    from mlobs.analysis.incremental import refresh_rollup
    from mlobs.analysis.parquet import export_parquet
    from mlobs.analysis.rollup import compute_external_cache_rollup
    from mlobs.analysis.rollup_store import stored_rows

    if args.since is not None and args.bucket == "all" and not args.no_write:
        return _fail("--since with --bucket all covers part of the history and would "
                     "replace the stored rollup of all of it: add --no-write "
                     f"(`{rerun(args, add=['--no-write'])}`), or use --bucket minute, "
                     "hour or day")
    try:
        db_url = resolve_db_url(args)
        result = refresh_rollup(db_url, args.bucket, full=args.full, since=args.since,
                                grace_s=args.grace_s, write=not args.no_write)
        rows = result.rows
        external = compute_external_cache_rollup(db_url, bucket=args.bucket,
                                                 since=args.since)
        if args.json:
            print(rollup_json(rows, external))
        else:
            print(format_rollup(rows, model_labels(db_url, rows)))
            if external:
                print()
                print("external caches")
                print(format_external_cache_rollup(external))
        if args.parquet:
            if result.mode == "full":
                exported = rows
                path = export_parquet(rows, args.parquet, whole_width=args.bucket)
            else:
                # Whole days: the stored rows of the days recomputed (an hour of a day
                # was recomputed, the day's partition holds all its hours).
                exported = stored_rows(db_url, args.bucket, sorted({
                    r.bucket_start.replace(hour=0, minute=0) for r in rows})) \
                    if result.written else rows
                path = export_parquet(exported, args.parquet)
            print(f"wrote {len(exported)} rollup rows to {path}", file=sys.stderr)
        print(describe(result, args.bucket), file=sys.stderr)
    except MlobsError as exc:
        return _fail(str(exc))
    return 0


def describe(result: RefreshResult, bucket: str) -> str:
    """One line for stderr: what was computed and what was stored."""
    if result.mode == "incremental":
        if not result.buckets:
            return (f"incremental: no rows stored since the last {bucket!r} rollup; "
                    f"{ROLLUP_TABLE} is up to date")
        done = (f"incremental: recomputed {result.buckets} {bucket} bucket(s) that new rows "
                f"fall in")
    elif result.mode == "since":
        done = "recomputed the buckets from --since on"
    else:
        done = f"full rollup ({result.reason})" if result.reason else "full rollup"
    if result.written:
        return f"{done}; stored {result.written} {ROLLUP_TABLE} rows of bucket width {bucket!r}"
    if result.reason == "not writing":
        return f"{done}; nothing stored (--no-write)"
    return f"{done}; computed nothing: the stored {ROLLUP_TABLE} rows are kept"


def _fail(message: str) -> int:
    print(f"mlobs rollup: error: {message}", file=sys.stderr)
    return 1


# -- text and JSON output -------------------------------------------------------------

def model_labels(db_url: str, rows: Sequence[RollupRow]) -> dict[str, str]:
    """``{model_signature: "name@short"}`` for the model column, the names from the
    warehouse's ``model_signatures`` (``openai/whisper-small@3f2a9c1d``; several models
    joined with ``+``). Signatures it does not hold are left out (shown as a bare hash).

    Raises:
        WarehouseError: the warehouse cannot be read.
    """
    from mlobs.warehouse.engine import ReadingConnection, engine_for
    from mlobs.warehouse.reading import model_names

    signatures = {r.model_signature for r in rows if r.model_signature}
    if not signatures:
        return {}
    with engine_for(db_url) as engine, ReadingConnection(engine) as conn:
        names = model_names(conn, signatures)
    return {signature: f"{'+'.join(found)}@{signature[:LABEL_SIGNATURE]}"
            for signature, found in names.items() if found}


def format_rollup(rows: Sequence[RollupRow],
                  model_labels: Mapping[str, str] | None = None) -> str:
    """A plain-text table of rollup rows, for terminals and logs.

    Columns: bucket start (only when some row has one, as ``YYYY-MM-DD HH:MM`` UTC),
    component, the model: its ``model_labels`` entry (:func:`model_labels`: names and
    the signature's first 8 characters), else model_signature's first 12 characters
    (``-`` when none), then
    pipeline_version, profile and device kind, each only when some row has one (device:
    when some row is not ``cpu``), invocations, runs, p50/p95/p99 duration in ms, p95 of
    cache hits and of misses in ms (only when some row has a hit), error %, empty %, cache
    hit %, the cache miss reasons (``model_signature_changed:3, input_changed:5``; only
    when some row has a miss), OOM % (of invocations), retries, p95 peak RSS in MiB; then
    p95 GPU allocated / reserved peaks in MiB, degraded % and items/s, each only when some
    row has one. ``-`` means not measured. User metrics are in ``--json``.
    """
    if not rows:
        return "(no component runs to roll up)"
    # (header, value of a row, shown, left-aligned): optional columns keep the usual
    # table (one version, CPU only, no fallback chains) narrow.
    columns: list[tuple[str, Callable[[RollupRow], object], bool, bool]] = [
        ("bucket (UTC)", lambda r: when(r.bucket_start, minutes=True),
         any(r.bucket_start is not None for r in rows), True),
        ("component", lambda r: r.component, True, True),
        ("model", lambda r: _model_cell(r.model_signature, model_labels or {}), True, True),
        ("version", lambda r: r.pipeline_version or MISSING,
         any(r.pipeline_version for r in rows), True),
        ("profile", lambda r: r.profile or MISSING, any(r.profile for r in rows), True),
        ("device", lambda r: r.device_kind, any(r.device_kind != "cpu" for r in rows),
         True),
        ("invocations", lambda r: r.invocations, True, False),
        ("runs", lambda r: r.runs, True, False),
        ("p50 ms", lambda r: ms(r.p50_duration_ms), True, False),
        ("p95 ms", lambda r: ms(r.p95_duration_ms), True, False),
        ("p99 ms", lambda r: ms(r.p99_duration_ms), True, False),
        ("p95 hit ms", lambda r: ms(r.p95_hit_duration_ms),
         any(r.p95_hit_duration_ms is not None for r in rows), False),
        ("p95 miss ms", lambda r: ms(r.p95_miss_duration_ms),
         any(r.p95_hit_duration_ms is not None for r in rows), False),
        ("error %", lambda r: pct(r.error_rate), True, False),
        ("empty %", lambda r: pct(r.empty_rate), True, False),
        ("cache hit %", lambda r: pct(r.cache_hit_rate), True, False),
        ("miss reasons", lambda r: format_miss_reasons(r.cache_miss_reasons),
         any(r.cache_miss_reasons for r in rows), True),
        ("OOM %", lambda r: pct(r.oom_rate), True, False),
        ("retries", lambda r: r.retries, True, False),
        ("p95 RSS MiB", lambda r: mib(r.p95_peak_rss_bytes), True, False),
        ("p95 added RSS MiB", lambda r: mib(r.p95_peak_rss_increase_bytes),
         any(r.p95_peak_rss_increase_bytes is not None for r in rows), False),
        ("p95 GPU alloc MiB", lambda r: mib(r.p95_peak_gpu_allocated_bytes),
         any(r.p95_peak_gpu_allocated_bytes is not None
             or r.p95_peak_gpu_reserved_bytes is not None for r in rows), False),
        ("p95 GPU rsvd MiB", lambda r: mib(r.p95_peak_gpu_reserved_bytes),
         any(r.p95_peak_gpu_allocated_bytes is not None
             or r.p95_peak_gpu_reserved_bytes is not None for r in rows), False),
        ("degraded %", lambda r: pct(r.degraded_rate),
         any(r.degraded_rate is not None for r in rows), False),
        ("items/s", lambda r: MISSING if r.items_per_s is None else f"{r.items_per_s:.1f}",
         any(r.items_per_s is not None for r in rows), False),
    ]
    shown = [c for c in columns if c[2]]
    table = [[value(r) for _, value, _, _ in shown] for r in rows]
    # disable_numparse keeps MISSING and the pre-formatted numbers exactly as written.
    return tabulate(table, headers=[c[0] for c in shown], tablefmt="simple",
                    disable_numparse=True,
                    colalign=["left" if c[3] else "right" for c in shown])


def _model_cell(signature: str | None, labels: Mapping[str, str]) -> str:
    if not signature:
        return MISSING
    return labels.get(signature) or signature[:SHORT_SIGNATURE]


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
