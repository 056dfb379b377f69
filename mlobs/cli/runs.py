"""``mlobs runs``: look at runs stored in the warehouse.

Subcommands::

    mlobs runs list [--limit N] [--platform-id P] [--video-id V] [--status S]
                    [--since WHEN] [--until WHEN] [--pipeline-version V] [--profile NAME]
                    [--label KEY=VALUE ...] [--json]
    mlobs runs show RUN_ID [--json]
    mlobs runs manifest RUN_ID [--write]

All take ``--root DIR`` and ``--db-url URL`` (default: the configured warehouse, see
``mlobs db``); a RUN_ID may be a unique prefix of the id (:mod:`mlobs.cli.run_ids`). They
never create or migrate the warehouse: a missing or out-of-date one is an error (exit 1,
one line on stderr saying what to run), as is an unknown or ambiguous run id.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from mlobs.cli.argtypes import (
    LabelsAction,
    label_pairs,
    positive_int,
    positive_seconds,
    time_or_ago,
)
from mlobs.cli.db import add_location_arguments, fail, open_existing_store, resolve_db_url
from mlobs.cli.formatting import LABELS_CELL_MAX_CHARS, labels_text, mib, ms, tabulate, when
from mlobs.cli.hints import command, rerun
from mlobs.cli.run_details import run_text
from mlobs.core.errors import ConfigError, MlobsError, WarehouseError
from mlobs.core.liveness import MISSED_BEATS, STALE_AFTER_S, shown_status
from mlobs.core.records import RUN_STATUSES

if TYPE_CHECKING:
    from mlobs.core.records import ComponentRecord, RunRecord

#: model_signature is shown shortened in tables (like a short git hash).
SHORT_SIGNATURE = 12
#: ``runs list`` shows at most this many runs unless ``--limit``.
DEFAULT_LIMIT = 50
WHEN_HELP = ("an ISO 8601 date or time (2026-05-01, 2026-05-01T12:00; naive = UTC) or a "
             "time before now: 30m, 2h, 7d, 2w")
RUN_ID_HELP = "the run's id, or a unique prefix of it (like git: 909ec1)"
#: the list filters, as (option dest, RunFilter field).
FILTERS = (("platform_id", "platform_id"), ("video_id", "video_id"), ("status", "status"),
           ("labels", "labels"), ("since", "since"), ("until", "until"),
           ("pipeline_version", "pipeline_version"), ("profile", "profile"))


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``runs`` command and its subcommands to the ``mlobs`` parser."""
    runs = subparsers.add_parser("runs", help="list and show runs in the warehouse",
                                 description="List the runs in the warehouse, or show one run "
                                 "with its components.")
    commands = runs.add_subparsers(dest="runs_command", metavar="COMMAND", required=True)

    listing = commands.add_parser(
        "list", help="recent runs, newest first",
        description="The runs in the warehouse, newest started_at first; every filter\n"
                    "given must match. When more runs match than --limit, the last line\n"
                    "says how many were not shown, and the command that lists them all.",
        epilog="examples:\n"
               "  mlobs runs list --since 2h                  runs of the last two hours\n"
               "  mlobs runs list --since 2026-05-01 --until 2026-05-08 --status error\n"
               "  mlobs runs list --pipeline-version 1.4.0 --label release=rc-2",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    listing.add_argument("--limit", type=positive_int, default=DEFAULT_LIMIT, metavar="N",
                         help=f"at most N runs, the newest (default: {DEFAULT_LIMIT})")
    listing.add_argument("--platform-id", default=None, metavar="P",
                         help="only runs of this platform_id")
    listing.add_argument("--video-id", default=None, metavar="V",
                         help="only runs of this video_id")
    listing.add_argument("--status", choices=RUN_STATUSES, default=None,
                         help="only runs of this status; crashed includes the runs still "
                              "running whose heartbeat stopped (see --stale-after)")
    add_stale_after_argument(listing)
    listing.add_argument("--since", type=time_or_ago, default=None, metavar="WHEN",
                         help=f"only runs started at or after WHEN: {WHEN_HELP}")
    listing.add_argument("--until", type=time_or_ago, default=None, metavar="WHEN",
                         help="only runs started before WHEN (the same forms)")
    listing.add_argument("--pipeline-version", default=None, metavar="V",
                         help="only runs of this pipeline_version")
    listing.add_argument("--profile", default=None, metavar="NAME",
                         help="only runs of this analysis profile")
    listing.add_argument("--label", type=label_pairs, action=LabelsAction, default=None,
                         metavar="KEY=VALUE", dest="labels",
                         help="only runs carrying this label (repeatable: every one must "
                              "match)")
    listing.add_argument("--json", action="store_true",
                         help="print JSON instead of a table (the note on runs not shown "
                              "goes to stderr)")
    add_location_arguments(listing)
    listing.set_defaults(func=list_command)

    show = commands.add_parser(
        "show", help="one run and its components",
        description="One run: its fields, its configuration, environment and resolved "
                    "models as key/value blocks, then a table of its components.")
    show.add_argument("run_id", metavar="RUN_ID", help=RUN_ID_HELP)
    show.add_argument("--json", action="store_true",
                      help="print the run and its components as JSON (manifest field names)")
    add_location_arguments(show)
    show.set_defaults(func=show_command)

    manifest = commands.add_parser(
        "manifest", help="a run's manifest.json, exported from the warehouse",
        description="Print the run's mlobs.manifest/1 document as the warehouse holds it "
        "(components in finishing order), or write it where the manifest sink keeps it.")
    manifest.add_argument("run_id", metavar="RUN_ID", help=RUN_ID_HELP)
    manifest.add_argument("--write", action="store_true",
                          help="write ROOT/runs/<platform>/<video>/<run_id>/manifest.json "
                          "(replacing the file there) instead of printing it")
    add_location_arguments(manifest, "--write writes under ROOT/runs")
    manifest.set_defaults(func=manifest_command)

def add_stale_after_argument(parser: argparse.ArgumentParser) -> None:
    """``--stale-after SECONDS``: when a silent ``running`` run is shown ``crashed``."""
    parser.add_argument("--stale-after", type=positive_seconds, default=None,
                        metavar="SECONDS",
                        help="a run still running with no heartbeat for this long is "
                             "shown crashed (default: four heartbeat intervals, "
                             f"{STALE_AFTER_S:g} with $MLOBS_HEARTBEAT_INTERVAL_S unset)")


def stale_after_s(args: argparse.Namespace) -> float:
    """``--stale-after``, else four of this environment's heartbeat intervals."""
    if args.stale_after is not None:
        return float(args.stale_after)
    from mlobs.core.config import settings_from_env

    return MISSED_BEATS * settings_from_env().heartbeat_interval_s


def list_command(args: argparse.Namespace) -> int:
    """``mlobs runs list``: returns 0, or 1 with a message on stderr."""
    now = datetime.now(timezone.utc)
    filters = {field: getattr(args, dest) for dest, field in FILTERS
               if getattr(args, dest) not in (None, {})}
    try:
        stale = stale_after_s(args)
        if args.since is not None and args.until is not None and args.since >= args.until:
            raise ConfigError(f"--since ({when(args.since)} UTC) must be before --until "
                             f"({when(args.until)} UTC)")
        with open_existing_store(resolve_db_url(args)) as store:
            runs = store.list_runs(limit=args.limit,
                                   silent_since=now - timedelta(seconds=stale), **filters)
            counts = store.component_counts(run.run_id for run in runs)
            matching = len(runs) if len(runs) < args.limit else store.count_runs(
                silent_since=now - timedelta(seconds=stale), **filters)
            stored = None if runs or not filters else store.count_runs()
    except MlobsError as exc:
        return fail(str(exc))
    note = _not_shown(args, len(runs), matching)
    if args.json:
        print(json.dumps([{**run.to_dict(), "n_components": counts.get(run.run_id, 0),
                           "status_shown": shown_status(run, now, stale)}
                          for run in runs], indent=2))
        if note:
            print(f"mlobs runs list: {note}", file=sys.stderr)
        return 0
    if not runs:
        print(f"no run matches these filters ({stored} run(s) in the warehouse; "
              f"`{command('runs', 'list', args=args)}` lists the latest)"
              if filters else "no runs in the warehouse")
        return 0
    rows = [(run.run_id, f"{run.platform_id}/{run.video_id}", run.profile or "",
             shown_status(run, now, stale),
             when(run.started_at), ms(run.duration_ms), counts.get(run.run_id, 0),
             len(run.warnings), labels_text(run.labels, LABELS_CELL_MAX_CHARS))
            for run in runs]
    print(tabulate(rows, headers=("run_id", "platform/video", "profile", "status",
                                  "started (UTC)", "duration_ms", "components", "warnings",
                                  "labels"),
                   disable_numparse=True))
    if note:
        print(note)
    return 0


def _not_shown(args: argparse.Namespace, shown: int, matching: int) -> str:
    """The line saying how many matching runs ``--limit`` left out, with the command
    that lists them all; empty when none were."""
    if matching <= shown:
        return ""
    return (f"{matching - shown} more run(s) match, not shown (the newest {shown} of "
            f"{matching}): `{rerun(args, drop=['--limit'], add=['--limit', str(matching)])}` "
            "lists them all")


def _stored_run(args: argparse.Namespace) -> tuple[RunRecord, list[ComponentRecord]]:
    """The run ``args.run_id`` and its components, from the warehouse.

    Raises:
        MlobsError: the warehouse cannot be used, or does not hold the run.
    """
    from mlobs.cli.run_ids import resolve_run_id

    usage = ("runs", args.runs_command)
    with open_existing_store(resolve_db_url(args)) as store:
        found = store.get_run(resolve_run_id(store, args.run_id, args, usage=usage))
    if found is None:  # deleted between the two queries
        raise WarehouseError(f"no run {args.run_id!r} in the warehouse")
    return found


def show_command(args: argparse.Namespace) -> int:
    """``mlobs runs show RUN_ID``: returns 0, or 1 when unknown or on error."""
    try:
        run, components = _stored_run(args)
    except MlobsError as exc:
        return fail(str(exc))
    if args.json:
        print(json.dumps({"run": run.to_dict(),
                          "components": [c.to_dict() for c in components]}, indent=2))
        return 0
    print(run_text(run))
    print()
    print(_components_table(components) if components else "no components")
    for text in _tracebacks(components):
        print()
        print(text)
    return 0


def manifest_command(args: argparse.Namespace) -> int:
    """``mlobs runs manifest RUN_ID``: returns 0, or 1 when unknown or on error."""
    from mlobs.core.config import resolve_settings
    from mlobs.core.manifest import in_finishing_order, manifest_document, write_manifest
    from mlobs.core.paths import manifest_path

    try:
        run, components = _stored_run(args)
        document = manifest_document(run, in_finishing_order(components))
        if not args.write:
            print(document)
            return 0
        path = manifest_path(resolve_settings(root=args.root).runs_dir, run.platform_id,
                             run.video_id, run.run_id)
        write_manifest(path, document, durable=True)
    except (MlobsError, OSError) as exc:
        return fail(str(exc))
    print(path)
    return 0


def _components_table(components: list[ComponentRecord]) -> str:
    """One row per invocation; GPU and prediction columns only when some row has them."""
    with_gpu = any(c.peak_gpu_allocated_bytes is not None or c.peak_gpu_reserved_bytes
                   is not None for c in components)
    with_prediction = any(c.prediction_status for c in components)
    headers = ["component", "attempt", "status", "empty/error", "duration_ms", "batch_size",
               "ooms", "retries", "peak_rss_mib", "rss_increase_mib"]
    headers += (["peak_gpu_alloc_mib", "gpu_alloc_increase_mib", "peak_gpu_reserved_mib"]
                if with_gpu else [])
    headers += ["prediction"] if with_prediction else []
    headers.append("model_signature")
    rows = []
    for c in components:
        row = [c.component, c.attempt, c.status, c.empty_reason or c.error_code or "",
               ms(c.duration_ms), _batch(c), c.oom_count, c.retry_count,
               mib(c.peak_rss_bytes), mib(c.peak_rss_increase_bytes)]
        if with_gpu:
            row += [mib(c.peak_gpu_allocated_bytes), mib(c.peak_gpu_allocated_increase_bytes),
                    mib(c.peak_gpu_reserved_bytes)]
        if with_prediction:
            row.append(c.prediction_status or "")
        row.append((c.model_signature or "")[:SHORT_SIGNATURE])
        rows.append(row)
    return tabulate(rows, headers=headers, disable_numparse=True)


def _tracebacks(components: list[ComponentRecord]) -> list[str]:
    """A block per failed invocation that kept its traceback, indented under a title."""
    return [f"traceback of {c.component} (attempt {c.attempt}, {c.error_code}):\n"
            + textwrap.indent(c.error_traceback.rstrip(), "  ")
            for c in components if c.error_traceback]


def _batch(c: ComponentRecord) -> str:
    """``"8"``, or ``"8 of 32"`` when OOMs degraded the requested 32 to 8."""
    if c.batch_size is None:
        return ""
    if c.batch_size_requested not in (None, c.batch_size):
        return f"{c.batch_size} of {c.batch_size_requested}"
    return str(c.batch_size)
