"""``mlobs doctor``: check the set-up and find records that did not reach the warehouse."""

from __future__ import annotations

import argparse

from mlobs.cli.db import add_location_arguments
from mlobs.cli.runs import add_stale_after_argument, stale_after_s


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "doctor", help="check the set-up; find runs missing from the warehouse and spooled records",
        description="Checks that the root is writable, the warehouse is reachable and "
                    "upgraded, DuckDB's scanner extension is installed, that every "
                    "manifest under the root is in the warehouse (sink failures or a dead "
                    "database leave runs only in their manifests), and that no records "
                    "wait in the root's spool (written while the database was away), and "
                    "that no run is still running with its heartbeat stopped (crashed; "
                    "--fix marks them). Exit 1 if a check fails.")
    add_location_arguments(parser)
    parser.add_argument("--fix", action="store_true",
                        help="mark the runs taken for crashed as crashed, in the warehouse "
                             "and in their manifests")
    add_stale_after_argument(parser)
    parser.set_defaults(func=doctor_command)


def doctor_command(args: argparse.Namespace) -> int:
    """``mlobs doctor``: 0 when every check passes, else 1."""
    from mlobs.cli.doctor_checks import run_checks  # the warehouse's imports, when it runs
    from mlobs.core.config import resolve_settings

    settings = resolve_settings(root=args.root, db_url=args.db_url)
    checks = run_checks(settings, stale_after_s=stale_after_s(args), fix=args.fix)
    for check in checks:
        mark = "ok  " if check.ok else "FAIL"
        print(f"[{mark}] {check.name:<10} {check.detail}")
        if check.hint:
            print(f"       {'':<10} fix: {check.hint}")
    return 0 if all(c.ok for c in checks) else 1
