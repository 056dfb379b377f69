"""``mlobs ingest PATH...``: load manifests (files or directories) into the warehouse."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mlobs.cli.db import add_db_url_argument, fail, resolve_db_url
from mlobs.warehouse.engine import missing_sqlite_file
from mlobs.errors import MlobsError
from mlobs.ingest import find_manifests, ingest_manifests
from mlobs.warehouse.engine import display_url
from mlobs.warehouse.store import WarehouseStore


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ingest", help="load manifest.json files into the warehouse (idempotent)",
        description="Load manifests into the warehouse. Directories are searched for "
                    "manifest.json files. Records already there are not duplicated, so "
                    "this is safe to repeat (e.g. after the database was away).")
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="manifest.json files or directories holding them")
    add_db_url_argument(parser)
    parser.set_defaults(func=ingest_command)


def ingest_command(args: argparse.Namespace) -> int:
    db_url = resolve_db_url(args)
    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        return fail(f"no such file or directory: {', '.join(missing)}")
    paths = list(find_manifests(args.paths))
    if not paths:
        return fail(f"no manifest.json found under {', '.join(args.paths)}")
    absent_db = missing_sqlite_file(db_url)
    if absent_db is not None:
        return fail(f"no warehouse at {absent_db}: run `mlobs db upgrade --db-url {db_url}`")
    try:
        store = WarehouseStore(db_url)
    except MlobsError as exc:
        return fail(str(exc))
    tty = sys.stderr.isatty()

    def progress(done: int) -> None:
        if tty:
            print(f"\ringested {done}/{len(paths)} manifests", end="", file=sys.stderr,
                  flush=True)
        elif done == len(paths) or done % 100 == 0:
            print(f"ingested {done}/{len(paths)} manifests", file=sys.stderr, flush=True)

    try:
        report = ingest_manifests(store, paths, on_progress=progress)
    finally:
        store.close()
    if tty:
        print(file=sys.stderr)
    print(f"{report.manifests} manifest(s), {report.components} component record(s) "
          f"written to {display_url(db_url)}")
    for problem in report.problems:
        print(f"skipped: {problem}", file=sys.stderr)
    return 1 if report.problems else 0
