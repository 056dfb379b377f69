"""The ``mlobs`` command line: one subcommand per module of this package.

    mlobs demo | db | ingest | runs | rollup | drift | gate | licenses | doctor | cache | gc | forget
    (``mlobs COMMAND --help`` for each)

Every command's module is imported to build the parser, for every command (``--help`` and
``--version`` too), so at module level they import only argparse helpers and light parts
of ``mlobs.core``; a command's implementation (the warehouse with SQLAlchemy and Alembic,
DuckDB, the sinks, tabulate) is imported by its handler when it runs
(tests/cli/test_cli_imports.py checks it).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mlobs import __version__
from mlobs.cli import (
    cache,
    db,
    demo,
    doctor,
    drift,
    forget,
    gate,
    gc,
    ingest,
    licenses,
    rollup,
    runs,
    ui,
)
from mlobs.core.errors import MlobsError

DESCRIPTION = """\
mlobs records timings, memory peaks, statuses and model signatures of ML pipeline
components into a manifest.json per run and a SQL warehouse, and rolls them up with DuckDB.

Everything lives under one root, the data directory: --root DIR after every command's
last word (mlobs runs list --root DIR), else $MLOBS_ROOT, else ./mlobs-data. The warehouse is --db-url URL, else $MLOBS_DB_URL, else
sqlite:///ROOT/warehouse.db. A RUN_ID may be abbreviated to a unique prefix (like git).
"""

EPILOG = """\
first steps:
  mlobs demo                 run the bundled text + visual pipelines and print a rollup
  mlobs runs list            the latest runs in the warehouse
  mlobs runs show RUN_ID     one run and its components (a unique prefix of the id will do)
  mlobs rollup               p50/p95/p99 durations, error/empty/cache rates per component
  mlobs drift ...            did a component drift between a baseline and a current window
  mlobs gate ...             gate a release: candidate runs vs baseline runs, and budgets
  mlobs licenses check       every model in use has a row in MODEL_LICENSES.md that clears it
  mlobs doctor               check the set-up and find records missing from the warehouse
  mlobs ui                   the admin views in a browser (http://127.0.0.1:8765)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlobs", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"mlobs {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (demo, db, ingest, runs, rollup, drift, gate, licenses, doctor, cache, gc,
                   forget, ui):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mlobs`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # what the user typed, for hints that repeat the command (mlobs.cli.hints.rerun)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    import logging  # after parsing: `--version` and `--help` exit without it

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except MlobsError as exc:  # expected failures: one line, no traceback
        print(f"mlobs: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `mlobs runs list | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
