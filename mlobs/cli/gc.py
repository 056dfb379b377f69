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
from typing import TYPE_CHECKING

from mlobs.cli.argtypes import iso_datetime, non_negative_int, positive_days
from mlobs.cli.db import add_location_arguments, fail
from mlobs.cli.formatting import MISSING, size, when
from mlobs.core.errors import MlobsError
from mlobs.housekeeping.policy_defaults import (  # the planner waits for the command
    HARD_CAP_DAYS,
    INTERMEDIATE_TTL_DAYS,
    KEEP_PREVIOUS,
)

if TYPE_CHECKING:
    from mlobs.housekeeping.retention import GcPlan, GcResult, RunDecision








def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``gc`` command to the ``mlobs`` parser."""
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
    parser.add_argument("--keep-previous", type=non_negative_int, default=KEEP_PREVIOUS,
                        metavar="N", help="runs kept before the latest ok run of each key "
                                          f"(default: {KEEP_PREVIOUS})")
    parser.add_argument("--hard-cap-days", type=positive_days, default=HARD_CAP_DAYS,
                        metavar="D", help="delete everything older than D days "
                                          f"(default: {HARD_CAP_DAYS:g})")
    parser.add_argument("--intermediate-ttl-days", type=positive_days,
                        default=INTERMEDIATE_TTL_DAYS, metavar="D",
                        help="delete registered intermediate directories older than D days "
                             f"(default: {INTERMEDIATE_TTL_DAYS:g})")
    parser.add_argument("--drop-warehouse-rows", action="store_true",
                        help="also delete the warehouse rows of superseded runs (default: "
                             "only rows past the hard cap go, so rollups keep history)")
    parser.add_argument("--now", type=iso_datetime, default=None, metavar="ISO",
                        help="judge ages as of this ISO 8601 time (naive = UTC; default: "
                             "now)")
    parser.add_argument("--show-kept", action="store_true",
                        help="also list the runs kept, with the rule that keeps each")
    parser.add_argument("--json", action="store_true",
                        help="print {plan, dry_run, deleted} as JSON instead of text")
    add_location_arguments(parser, "gc deletes under ROOT/runs and ROOT/cache")
    parser.set_defaults(func=gc_command)


def gc_command(args: argparse.Namespace) -> int:
    """``mlobs gc``: returns 0, or 1 on an error or when something could not be deleted."""
    from mlobs.core.config import resolve_settings
    from mlobs.housekeeping.gc import apply_gc
    from mlobs.housekeeping.inventory import collect_inventory
    from mlobs.housekeeping.retention import GcPolicy, plan_gc

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
        print(render_plan(plan, show_kept=args.show_kept), flush=True)
    result = None if args.dry_run else apply_gc(plan)
    if args.json:
        print(json.dumps({"plan": plan.to_dict(), "dry_run": args.dry_run,
                          "deleted": result.to_dict() if result else None}, indent=2))
    elif result is None:
        print("dry run: nothing was deleted")
    else:
        print(describe_result(result))
    if result is not None and result.problems:
        for problem in result.problems:
            fail(f"not deleted: {problem}")
        return 1
    return 0


# -- text output ---------------------------------------------------------------------

def render_plan(plan: GcPlan, *, show_kept: bool = False) -> str:
    """The plan as text (what ``mlobs gc`` and ``mlobs gc --dry-run`` print)."""
    from mlobs.core.records import iso_utc
    from mlobs.housekeeping.retention import DROP_REASONS, run_order, version_order
    from mlobs.warehouse.engine import display_url

    policy = plan.policy
    lines = [
        f"gc plan at {iso_utc(plan.now)}",
        f"policy: per key, keep the latest ok run, the {policy.keep_previous} run(s) "
        f"before it, every run after it and the runs artifact_index names; hard cap "
        f"{policy.hard_cap_days:g} days "
        f"(everything before {iso_utc(plan.cutoff)}); intermediate directories "
        f"{policy.intermediate_ttl_days:g} days (before "
        f"{iso_utc(plan.intermediate_cutoff)}); warehouse rows of "
        + ("every dropped run" if policy.warehouse == "dropped"
           else "runs past the hard cap"),
    ]
    dropped = plan.dropped_runs
    by_reason = {r: sum(1 for d in dropped if d.reason == r) for r in DROP_REASONS}
    lines.append(f"runs: {len(plan.kept_runs)} kept, {len(dropped)} to delete ("
                 + ", ".join(f"{n} {r}" for r, n in by_reason.items()) + ")")
    for d in sorted(plan.runs, key=run_order):
        if d.actionable or (show_kept and d.keep):
            lines.append("  " + _describe_run(d))
    versions = sorted(plan.cache_versions, key=version_order)
    lines.append(f"cache versions: {len(versions)} to delete, "
                 f"{size(sum(d.version.size_bytes for d in versions))}")
    for d in versions:
        v, e = d.version, d.version.entry
        lines.append(f"  delete {v.platform_id}/{v.video_id} {e.component} v{e.version} "
                     f"(run {e.run_id or MISSING}, created {when(e.created_at)}"
                     f"{', current' if e.is_current else ''}) "
                     f"{size(v.size_bytes)}: {d.reason}")
    lines.append(f"intermediate directories: {len(plan.intermediates)} to delete, "
                 f"{sum(i.files for i in plan.intermediates)} file(s), "
                 f"{size(sum(i.size_bytes for i in plan.intermediates))}")
    for i in sorted(plan.intermediates, key=lambda i: str(i.path)):
        lines.append(f"  delete {i.platform_id}/{i.video_id} {i.name} (created "
                     f"{when(i.created_at)}) {i.files} file(s) {size(i.size_bytes)}: "
                     "expired")
    if plan.db_url is not None:
        lines.append(f"warehouse {display_url(plan.db_url)}: "
                     f"{plan.warehouse_rows.describe()} row(s) to delete")
    else:
        lines.append("warehouse: none")
    for problem in plan.problems:
        lines.append(f"left alone: {problem}")
    lines.append("total: nothing to delete" if plan.empty else
                 f"total: {plan.files} file(s), {size(plan.bytes)}, "
                 f"{plan.warehouse_rows.total} warehouse row(s)")
    return "\n".join(lines)


def describe_result(result: GcResult) -> str:
    """What ``mlobs gc`` prints after deleting."""
    rows = result.warehouse_rows.describe() if result.warehouse_rows is not None else "no"
    return (f"deleted {result.manifest_dirs} run manifest dir(s), {result.cache_versions} "
            f"cache version(s), {result.intermediates} intermediate dir(s): "
            f"{result.files} file(s), {size(result.bytes)}; warehouse: {rows} row(s)")


def _describe_run(d: RunDecision) -> str:
    r = d.run
    parts = []
    if not d.keep:
        if r.manifest_dir is not None:
            parts.append(f"manifest dir {r.manifest_files} file(s) {size(r.manifest_bytes)}")
        if d.delete_rows:
            parts.append(f"warehouse {r.warehouse_rows.describe()}")
    action = "keep  " if d.keep else "delete"
    detail = f": {'; '.join(parts)}" if parts else ""
    return (f"{action} run {r.run_id} {r.platform_id}/{r.video_id} started "
            f"{when(r.started_at)} {r.status} [{d.reason}]{detail}")
