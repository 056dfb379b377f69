"""``mlobs forget``: delete every manifest, cached file and warehouse row of a video.

Usage::

    mlobs forget --video-id V [--platform-id P] [--dry-run] [--root DIR] [--db-url URL ...]
                 [--json]

For privacy requests (:mod:`mlobs.housekeeping.forget`). Without ``--platform-id`` the video_id is
forgotten on every platform. ``--db-url`` may be repeated to clean several warehouses
(default: the configured one). Safe to repeat: a second run reports that nothing was
deleted and exits 0. ``--dry-run`` prints the same report for what would be deleted and
deletes nothing. Exit 1 when something could not be deleted (the rest was).
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from mlobs.cli.db import add_root_argument, fail
from mlobs.cli.formatting import size
from mlobs.core.errors import MlobsError

if TYPE_CHECKING:
    from mlobs.housekeeping.forget import ForgetReport


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``forget`` command to the ``mlobs`` parser."""
    parser = subparsers.add_parser(
        "forget", help="delete a video's manifests, cache and warehouse rows (privacy)",
        description="Delete everything mlobs holds about a video: its run manifests, its "
                    "cached results and intermediate directories, and its rows in the "
                    "warehouse(s). Reports what was deleted; safe to repeat.")
    parser.add_argument("--video-id", required=True)
    parser.add_argument("--platform-id", default=None,
                        help="only this platform's video (default: the video_id on every "
                             "platform)")
    add_root_argument(parser, "forget deletes under ROOT/runs and ROOT/cache")
    parser.add_argument("--db-url", action="append", default=None, metavar="URL",
                        help="a warehouse to delete rows from; repeat for several (default: "
                             "$MLOBS_DB_URL, else sqlite:///<root>/warehouse.db)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print what would be deleted (directories, files, bytes, rows "
                             "per table) and delete nothing")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=forget_command)


def forget_command(args: argparse.Namespace) -> int:
    """``mlobs forget``: returns 0, or 1 when something could not be deleted."""
    from mlobs.housekeeping.forget import forget_video

    try:
        report = forget_video(args.video_id, platform_id=args.platform_id, root=args.root,
                              db_urls=args.db_url, dry_run=args.dry_run)
    except MlobsError as exc:
        return fail(str(exc))
    print(json.dumps(report.to_dict(), indent=2) if args.json else render_report(report))
    if report.problems:
        for problem in report.problems:
            fail(f"not deleted: {problem}")
        return 1
    return 0


def render_report(report: ForgetReport) -> str:
    """The report as text (what ``mlobs forget`` prints)."""
    which = (f"{report.platform_id}/{report.video_id}" if report.platform_id is not None
             else f"{report.video_id} (every platform)")
    deleted = "would delete" if report.dry_run else "deleted"
    lines = [f"forget video {which}"]
    for tree in report.trees:
        lines.append(f"  {deleted} {tree.kind} {tree.path}: {tree.files} file(s), "
                     f"{size(tree.size_bytes)}")
    if not report.trees:
        lines.append("  no manifests or cached files")
    for url, counts in report.warehouses:
        lines.append(f"  warehouse {url}: {deleted} {counts.describe()} row(s)")
    for url in report.absent:
        lines.append(f"  warehouse {url}: no database there, nothing to delete")
    for problem in report.problems:
        lines.append(f"  FAILED: {problem}")
    if report.nothing_deleted and not report.problems:
        lines.append("nothing to delete (already forgotten)" if report.dry_run
                     else "nothing was deleted (already forgotten)")
    else:
        lines.append(f"{deleted} {report.files} file(s), {size(report.size_bytes)}, "
                     f"{report.rows.total} warehouse row(s)")
    if report.dry_run:
        lines.append("dry run: nothing was deleted")
    return "\n".join(lines)
