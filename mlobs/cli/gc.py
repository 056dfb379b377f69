"""``mlobs gc``: delete superseded runs, old cached versions and expired intermediates.

Usage::

    mlobs gc [--dry-run] [--keep-previous N] [--hard-cap-days D]
             [--intermediate-ttl-days D] [--drop-warehouse-rows] [--now ISO]
             [--show-kept] [--json] [--root DIR] [--db-url URL]

The policy (per key: the latest ok run, the N runs before it, every run after it and the
runs ``artifact_index`` names; a hard cap; a TTL for intermediate directories) is
:mod:`mlobs.housekeeping.retention`'s. The plan is
printed first, the same with and without ``--dry-run``; a real run then deletes exactly
what it lists and prints what was deleted. Exit 0; 1 when the warehouse cannot be read
or something could not be deleted (the rest was; run it again).
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone

from mlobs.cli.db import DB_URL_HELP, fail
from mlobs.core.errors import MlobsError


def _iso_datetime(text: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"not an ISO 8601 date/time: {text!r} (e.g. 2026-05-01 or "
            "2026-05-01T12:00:00+00:00)") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _positive_days(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError("must be a number of days > 0")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``gc`` command to the ``mlobs`` parser."""
    from mlobs.housekeeping.retention import HARD_CAP_DAYS, INTERMEDIATE_TTL_DAYS, KEEP_PREVIOUS

    parser = subparsers.add_parser(
        "gc", help="retention: delete superseded runs, old cache versions, expired "
                   "intermediates",
        description="Per key (platform_id, video_id, config_hash, sampling_policy_version, "
                    "model_signature-set) keep the latest ok run, the N runs before it, "
                    "every run after it and the runs the warehouse's artifact_index names; "
                    "delete everything older than the hard cap; "
                    "delete registered intermediate directories older than their TTL. "
                    "Dropped runs lose their manifest directory and the cached versions only "
                    "they made (unless current); warehouse rows go past the hard cap (all "
                    "dropped runs' rows with --drop-warehouse-rows). The plan is "
                    "printed first; --dry-run stops there.")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the plan (what would go, files and bytes) and delete "
                             "nothing")
    parser.add_argument("--keep-previous", type=_non_negative_int, default=KEEP_PREVIOUS,
                        metavar="N", help="runs kept before the latest ok run of each key "
                                          f"(default: {KEEP_PREVIOUS})")
    parser.add_argument("--hard-cap-days", type=_positive_days, default=HARD_CAP_DAYS,
                        metavar="D", help="delete everything older than D days "
                                          f"(default: {HARD_CAP_DAYS:g})")
    parser.add_argument("--intermediate-ttl-days", type=_positive_days,
                        default=INTERMEDIATE_TTL_DAYS, metavar="D",
                        help="delete registered intermediate directories older than D days "
                             f"(default: {INTERMEDIATE_TTL_DAYS:g})")
    parser.add_argument("--drop-warehouse-rows", action="store_true",
                        help="also delete the warehouse rows of superseded runs (default: "
                             "only rows past the hard cap go, so rollups keep history)")
    parser.add_argument("--now", type=_iso_datetime, default=None, metavar="ISO",
                        help="judge ages as of this ISO 8601 time (naive = UTC; default: "
                             "now)")
    parser.add_argument("--show-kept", action="store_true",
                        help="also list the runs kept, with the rule that keeps each")
    parser.add_argument("--json", action="store_true",
                        help="print {plan, dry_run, deleted} as JSON instead of text")
    parser.add_argument("--root", default=None,
                        help="mlobs root (default: $MLOBS_ROOT or ./mlobs-data)")
    parser.add_argument("--db-url", default=None, metavar="URL", help=DB_URL_HELP)
    parser.set_defaults(func=gc_command)


def gc_command(args: argparse.Namespace) -> int:
    """``mlobs gc``: returns 0, or 1 on an error or when something could not be deleted."""
    from mlobs.core.config import resolve_settings
    from mlobs.housekeeping.retention import GcPolicy, apply_gc, collect_inventory, plan_gc

    try:
        settings = resolve_settings(root=args.root, db_url=args.db_url)
        policy = GcPolicy(keep_previous=args.keep_previous, hard_cap_days=args.hard_cap_days,
                          intermediate_ttl_days=args.intermediate_ttl_days,
                          warehouse="dropped" if args.drop_warehouse_rows else "cap")
        plan = plan_gc(collect_inventory(settings.root, settings.db_url), policy,
                       now=args.now)
    except MlobsError as exc:
        return fail(str(exc))
    if not args.json:
        print(plan.render(show_kept=args.show_kept), flush=True)
    result = None if args.dry_run else apply_gc(plan)
    if args.json:
        print(json.dumps({"plan": plan.to_dict(), "dry_run": args.dry_run,
                          "deleted": result.to_dict() if result else None}, indent=2))
    elif result is None:
        print("dry run: nothing was deleted")
    else:
        print(result.describe())
    if result is not None and result.problems:
        for problem in result.problems:
            fail(f"not deleted: {problem}")
        return 1
    return 0
