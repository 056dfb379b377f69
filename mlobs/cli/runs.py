"""``mlobs runs``: look at runs stored in the warehouse.

Subcommands::

    mlobs runs list [--limit N] [--platform-id P] [--video-id V] [--status S]
                    [--label KEY=VALUE ...] [--json]
    mlobs runs show RUN_ID [--json]
    mlobs runs manifest RUN_ID [--write] [--root DIR]

All take ``--db-url`` (default: the configured warehouse, see ``mlobs db``). They never
create or migrate the warehouse: a missing or out-of-date one is an error (exit 1, one
line on stderr saying what to run), as is an unknown run_id.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from mlobs.cli.argtypes import LabelsAction, label_pairs, positive_int, positive_seconds
from mlobs.cli.db import add_db_url_argument, fail, open_existing_store, resolve_db_url
from mlobs.cli.formatting import LABELS_CELL_MAX_CHARS, labels_text, mib, ms, tabulate, when
from mlobs.core.errors import MlobsError, WarehouseError
from mlobs.core.liveness import MISSED_BEATS, STALE_AFTER_S, shown_status
from mlobs.core.records import RUN_STATUSES

if TYPE_CHECKING:
    from mlobs.core.records import ComponentRecord, RunRecord

#: model_signature is shown shortened in tables (like a short git hash).
SHORT_SIGNATURE = 12


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``runs`` command and its subcommands to the ``mlobs`` parser."""
    runs = subparsers.add_parser("runs", help="list and show runs in the warehouse",
                                 description="List the runs in the warehouse, or show one run "
                                 "with its components.")
    commands = runs.add_subparsers(dest="runs_command", metavar="COMMAND", required=True)

    listing = commands.add_parser("list", help="recent runs, newest first")
    listing.add_argument("--limit", type=positive_int, default=50,
                         help="at most this many runs (default: 50)")
    listing.add_argument("--platform-id", default=None)
    listing.add_argument("--video-id", default=None)
    listing.add_argument("--status", choices=RUN_STATUSES, default=None,
                         help="only runs of this status; crashed includes the runs still "
                              "running whose heartbeat stopped (see --stale-after)")
    add_stale_after_argument(listing)
    listing.add_argument("--label", type=label_pairs, action=LabelsAction, default=None,
                         metavar="KEY=VALUE", dest="labels",
                         help="only runs carrying this label (repeatable: every one must "
                              "match)")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_db_url_argument(listing)
    listing.set_defaults(func=list_command)

    show = commands.add_parser("show", help="one run and its components")
    show.add_argument("run_id")
    show.add_argument("--json", action="store_true",
                      help="print the run and its components as JSON (manifest field names)")
    add_db_url_argument(show)
    show.set_defaults(func=show_command)

    manifest = commands.add_parser(
        "manifest", help="a run's manifest.json, exported from the warehouse",
        description="Print the run's mlobs.manifest/1 document as the warehouse holds it "
        "(components in finishing order), or write it where the manifest sink keeps it.")
    manifest.add_argument("run_id")
    manifest.add_argument("--write", action="store_true",
                          help="write <root>/runs/<platform>/<video>/<run_id>/manifest.json "
                          "(replacing the file there) instead of printing it")
    manifest.add_argument("--root", default=None,
                          help="the mlobs root for --write (default: MLOBS_ROOT, else "
                          "./mlobs-data)")
    add_db_url_argument(manifest)
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
    try:
        stale = stale_after_s(args)
        with open_existing_store(resolve_db_url(args)) as store:
            runs = store.list_runs(limit=args.limit, platform_id=args.platform_id,
                                   video_id=args.video_id, status=args.status,
                                   silent_since=now - timedelta(seconds=stale),
                                   labels=args.labels)
            counts = store.component_counts(run.run_id for run in runs)
    except MlobsError as exc:
        return fail(str(exc))
    if args.json:
        print(json.dumps([{**run.to_dict(), "n_components": counts.get(run.run_id, 0),
                           "status_shown": shown_status(run, now, stale)}
                          for run in runs], indent=2))
        return 0
    if not runs:
        print("no runs")
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
    return 0


def _stored_run(args: argparse.Namespace) -> tuple[RunRecord, list[ComponentRecord]]:
    """The run ``args.run_id`` and its components, from the warehouse.

    Raises:
        MlobsError: the warehouse cannot be used, or does not hold the run.
    """
    with open_existing_store(resolve_db_url(args)) as store:
        found = store.get_run(args.run_id)
    if found is None:
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
    print(_run_table(run))
    print()
    print(_components_table(components) if components else "no components")
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


def _run_table(run: RunRecord) -> str:
    data = run.to_dict()
    data["status"] = shown_status(run, datetime.now(timezone.utc))
    data["started_at"], data["finished_at"] = when(run.started_at), when(run.finished_at)
    data["labels"] = labels_text(run.labels)
    rows = [(name, _cell(value)) for name, value in data.items()]
    return tabulate(rows, tablefmt="plain", disable_numparse=True)


def _components_table(components: list[ComponentRecord]) -> str:
    """One row per invocation; GPU and prediction columns only when some row has them."""
    with_gpu = any(c.peak_gpu_allocated_bytes is not None or c.peak_gpu_reserved_bytes
                   is not None for c in components)
    with_prediction = any(c.prediction_status for c in components)
    headers = ["component", "attempt", "status", "empty/error", "duration_ms", "batch_size",
               "ooms", "retries", "peak_rss_mib"]
    headers += ["peak_gpu_alloc_mib", "peak_gpu_reserved_mib"] if with_gpu else []
    headers += ["prediction"] if with_prediction else []
    headers.append("model_signature")
    rows = []
    for c in components:
        row = [c.component, c.attempt, c.status, c.empty_reason or c.error_code or "",
               ms(c.duration_ms), _batch(c), c.oom_count, c.retry_count,
               mib(c.peak_rss_bytes)]
        if with_gpu:
            row += [mib(c.peak_gpu_allocated_bytes), mib(c.peak_gpu_reserved_bytes)]
        if with_prediction:
            row.append(c.prediction_status or "")
        row.append((c.model_signature or "")[:SHORT_SIGNATURE])
        rows.append(row)
    return tabulate(rows, headers=headers, disable_numparse=True)


def _batch(c: ComponentRecord) -> str:
    """``"8"``, or ``"8 of 32"`` when OOMs degraded the requested 32 to 8."""
    if c.batch_size is None:
        return ""
    if c.batch_size_requested not in (None, c.batch_size):
        return f"{c.batch_size} of {c.batch_size_requested}"
    return str(c.batch_size)








def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True) if value else ""
    return str(value)
