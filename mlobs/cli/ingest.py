"""``mlobs ingest PATH...``: load manifests (files or directories) into the warehouse.

``mlobs ingest --spool [--root DIR]``: write the records the warehouse sink spooled under
``<root>/spool`` while the database was away (see :mod:`mlobs.sinks.spool`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mlobs.cli.db import add_location_arguments, fail, open_existing_store, resolve_db_url
from mlobs.cli.hints import command
from mlobs.core.errors import MlobsError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ingest", help="load manifest.json files into the warehouse (idempotent)",
        description="Load manifests into the warehouse. Directories are searched for "
                    "manifest.json files. Records already there are not duplicated, so "
                    "this is safe to repeat (e.g. after the database was away).")
    parser.add_argument("paths", nargs="*", metavar="PATH",
                        help="manifest.json files or directories holding them")
    parser.add_argument("--spool", action="store_true",
                        help="also write the records spooled under <root>/spool while the "
                             "database was away (removed once written)")
    add_location_arguments(parser, "--spool reads ROOT/spool")
    parser.set_defaults(func=ingest_command)


def ingest_command(args: argparse.Namespace) -> int:
    # The sinks, the settings and the warehouse: imported when the command runs.
    from mlobs.core.config import resolve_settings
    from mlobs.sinks.ingest import find_manifests, ingest_manifests
    from mlobs.warehouse.engine import display_url

    if not args.paths and not args.spool:
        runs_dir = resolve_settings(root=args.root).runs_dir
        return fail(f"give manifest files or directories, e.g. "
                    f"`{command('ingest', runs_dir, args=args)}`, or replay the spool: "
                    f"`{command('ingest', '--spool', args=args)}`")
    if args.spool:
        code = spool_command(args)
        if code or not args.paths:
            return code
    db_url = resolve_db_url(args)
    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        return fail(f"no such file or directory: {', '.join(missing)}")
    paths = list(find_manifests(args.paths))
    if not paths:
        return fail(f"no manifest.json found under {', '.join(args.paths)}")
    try:
        store = open_existing_store(db_url)
    except MlobsError as exc:
        return fail(str(exc))
    tty = sys.stderr.isatty()

    def progress(done: int) -> None:  # manifests read so far, loaded or skipped
        if tty:
            print(f"\rread {done}/{len(paths)} manifests", end="", file=sys.stderr,
                  flush=True)
        elif done % 100 == 0 and done < len(paths):
            print(f"read {done}/{len(paths)} manifests", file=sys.stderr, flush=True)

    try:
        report = ingest_manifests(store, paths, on_progress=progress)
    finally:
        store.close()
    if tty:
        print(file=sys.stderr)
    print(ingest_summary(len(paths), report.manifests, report.components,
                         display_url(db_url)))
    for problem in report.problems:
        print(f"skipped: {problem}", file=sys.stderr)
    return 1 if report.problems else 0


def ingest_summary(found: int, loaded: int, components: int, where: str) -> str:
    """``ingested 3 of 4 manifest(s) (12 component record(s)) into URL; skipped 1`` (the
    reasons go to stderr, a ``skipped: PATH: reason`` line each)."""
    line = (f"ingested {loaded} of {found} manifest(s) ({components} component record(s)) "
            f"into {where}")
    return line + (f"; skipped {found - loaded}" if loaded < found else "")


def spool_command(args: argparse.Namespace) -> int:
    """``--spool``: replay ``<root>/spool``. Exit 0 when everything was written (or there
    was nothing), 1 when the warehouse is still away or refused records."""
    from mlobs.core.config import resolve_settings
    from mlobs.sinks.ingest import replay_spool
    from mlobs.sinks.spool import REJECTED_NAME, has_spooled
    from mlobs.warehouse.engine import display_url

    settings = resolve_settings(root=args.root, db_url=args.db_url)
    spool_dir = settings.spool_dir
    db_url = settings.db_url
    if not has_spooled(spool_dir):
        print(f"nothing spooled under {spool_dir}")
        return 0
    try:
        store = open_existing_store(db_url)
    except MlobsError as exc:
        return fail(f"the warehouse is still unusable, the spool at {spool_dir} is kept "
                    f"(`{_replay_command(args)}` again when it answers): {exc}")
    try:
        report = replay_spool(spool_dir, store)
    finally:
        store.close()
    for problem in report.problems:
        print(f"skipped: {problem}", file=sys.stderr)
    print(f"{report.runs} run record(s), {report.components} component record(s) from "
          f"{report.files} spool file(s) written to {display_url(db_url)}")
    if report.error is not None:
        return fail(f"the warehouse went away during the replay: {report.error}; "
                    f"{report.pending} record(s) stay in the spool at {spool_dir} "
                    f"(`{_replay_command(args)}` again when it answers)")
    if report.rejected:
        return fail(f"{report.rejected} record(s) refused by the warehouse, kept in "
                    f"{spool_dir / REJECTED_NAME}")
    return 0


def _replay_command(args: argparse.Namespace) -> str:
    return command("ingest", "--spool", args=args)
