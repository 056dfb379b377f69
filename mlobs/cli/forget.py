"""``mlobs forget``: delete every manifest, cached file and warehouse row of a video.

Usage::

    mlobs forget --video-id V [--platform-id P] [--root DIR] [--db-url URL ...] [--json]

For privacy requests (:mod:`mlobs.housekeeping.forget`). Without ``--platform-id`` the video_id is
forgotten on every platform. ``--db-url`` may be repeated to clean several warehouses
(default: the configured one). Safe to repeat: a second run reports that nothing was
deleted and exits 0. Exit 1 when something could not be deleted (the rest was).
"""

from __future__ import annotations

import argparse
import json

from mlobs.cli.db import fail
from mlobs.core.errors import MlobsError


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
    parser.add_argument("--root", default=None,
                        help="mlobs root (default: $MLOBS_ROOT or ./mlobs-data)")
    parser.add_argument("--db-url", action="append", default=None, metavar="URL",
                        help="a warehouse to delete rows from; repeat for several (default: "
                             "$MLOBS_DB_URL, else sqlite:///<root>/warehouse.db)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=forget_command)


def forget_command(args: argparse.Namespace) -> int:
    """``mlobs forget``: returns 0, or 1 when something could not be deleted."""
    from mlobs.housekeeping.forget import forget_video

    try:
        report = forget_video(args.video_id, platform_id=args.platform_id, root=args.root,
                              db_urls=args.db_url)
    except MlobsError as exc:
        return fail(str(exc))
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.render())
    if report.problems:
        for problem in report.problems:
            fail(f"not deleted: {problem}")
        return 1
    return 0
