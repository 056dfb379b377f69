"""``mlobs licenses check``: does every model in use have a license row that clears it?

Usage::

    mlobs licenses check [--file MODEL_LICENSES.md] [--db-url URL] [--model NAME ...]
                         [--profile MODULE:ATTRIBUTE ...] [--deny PATTERN ...]
                         [--no-default-deny] [--junit FILE] [--json]

The models checked are those the warehouse has seen (``model_signatures``) plus those
declared with ``--model`` and by the ``AnalysisProfile`` objects ``--profile`` imports
(their ``models``); the rules are :mod:`mlobs.analysis.licenses`. Without ``--db-url``
(and ``$MLOBS_DB_URL``) the default warehouse is read when its SQLite file exists; when
it does not, only the declared models are checked, and a note on stderr says so.
Exit 0 when every model checked passes, 1 when one fails or on an error, 2 when nothing
could be checked.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import textwrap
from typing import TYPE_CHECKING

from mlobs.analysis.license_rules import DEFAULT_DENY
from mlobs.cli.db import DB_URL_HELP, add_root_argument, fail, resolve_db_url
from mlobs.cli.formatting import MISSING, tabulate
from mlobs.core.errors import ConfigError, MlobsError

if TYPE_CHECKING:
    from mlobs.analysis.junit import JUnitCase
    from mlobs.analysis.licenses import LicenseReport, LicenseResult

DEFAULT_FILE = "MODEL_LICENSES.md"
JUNIT_SUITE = "mlobs licenses check"
JUNIT_CLASSNAME = "mlobs.licenses"

EPILOG = """\
default deny patterns (fnmatch globs over the whole license cell, case-insensitive):
  {deny}

exit codes:
  0  every model checked has a row with an allowed license and an http(s) link
  1  a model failed (no row, license missing or denied, link missing or not http(s)),
     or an error (missing or malformed inventory, unreadable warehouse, bad --profile)
  2  nothing could be checked: no model seen in the warehouse nor declared
     (or invalid arguments)

Rows of models neither seen nor declared are listed as "unused" (informational).
"""

DESCRIPTION = """\
Check every model the warehouse has seen, and every model declared with --model or
by a --profile, against the inventory: each needs a row (model_name exactly as
ModelRef.name) whose license is filled in and matches no deny pattern, and whose link
is an http(s) URL. Prints a table (model, license, verdict, reason) and a summary.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``licenses`` command and its ``check`` subcommand to the ``mlobs`` parser."""
    licenses = subparsers.add_parser(
        "licenses", help="check the model license inventory (MODEL_LICENSES.md)",
        description="The model license inventory: a Markdown table with the columns "
                    "model_name, source, license, link, restrictions.")
    commands = licenses.add_subparsers(dest="licenses_command", metavar="COMMAND",
                                       required=True)
    check = commands.add_parser(
        "check", help="check every model in use against the inventory",
        description=DESCRIPTION, epilog=EPILOG.format(deny=textwrap.fill(
            "  ".join(DEFAULT_DENY), 84, subsequent_indent="  ", break_on_hyphens=False)),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    check.add_argument("--file", default=DEFAULT_FILE, metavar="PATH",
                       help=f"the inventory (default: ./{DEFAULT_FILE})")
    check.add_argument("--db-url", default=None, metavar="URL",
                       help=DB_URL_HELP + "; when the default SQLite file does not exist, "
                            "only declared models are checked")
    check.add_argument("--model", action="append", default=[], metavar="NAME",
                       help="also check this model name (repeatable)")
    check.add_argument("--profile", action="append", default=[], metavar="MODULE:ATTRIBUTE",
                       help="also check the models an AnalysisProfile declares, e.g. "
                            "mypipeline.profiles:BASELINE (imported; the working directory "
                            "is on the import path; repeatable)")
    check.add_argument("--deny", action="append", default=[], metavar="PATTERN",
                       help="also fail licenses matching this glob, case-insensitive "
                            "(repeatable; added to the default patterns below)")
    check.add_argument("--no-default-deny", action="store_true",
                       help="do not apply the default deny patterns (only --deny ones)")
    check.add_argument("--junit", metavar="FILE",
                       help="also write a JUnit XML report (one test case per model)")
    check.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_root_argument(check)
    check.set_defaults(func=check_command)


def load_profile_models(spec: str) -> frozenset[str]:
    """The ``models`` of the :class:`~mlobs.hooks.profile.AnalysisProfile` that ``spec``
    (``"package.module:ATTRIBUTE"``, the attribute maybe dotted) names.

    The working directory is put on ``sys.path`` for the import (as ``python -m`` does).

    Raises:
        ConfigError: ``spec`` is not ``MODULE:ATTRIBUTE``, the module cannot be imported,
            it has no such attribute, or the object is not an AnalysisProfile.
    """
    from mlobs.hooks.profile import AnalysisProfile

    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"--profile {spec!r}: expected MODULE:ATTRIBUTE, e.g. "
                          f"mypipeline.profiles:BASELINE")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        target: object = importlib.import_module(module_name)
    except Exception as exc:  # the user's module may raise anything while importing
        raise ConfigError(f"--profile {spec!r}: cannot import {module_name}: "
                          f"{type(exc).__name__}: {exc}") from exc
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigError(f"--profile {spec!r}: {module_name} has no attribute "
                              f"{attribute}") from None
    if not isinstance(target, AnalysisProfile):
        raise ConfigError(f"--profile {spec!r}: expected an AnalysisProfile, got "
                          f"{type(target).__name__}")
    return target.models


def _warehouse_url(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """The warehouse to read and a note for stderr: None with a note when only the
    default warehouse was asked for and its SQLite file does not exist."""
    from mlobs.warehouse.engine import missing_sqlite_file

    db_url = resolve_db_url(args)
    if args.db_url or os.environ.get("MLOBS_DB_URL"):
        return db_url, None  # asked for by name: a missing file is an error
    missing = missing_sqlite_file(db_url)
    if missing is None:
        return db_url, None
    return None, (f"no warehouse at {missing} (the default): checking only the declared "
                  f"models (--model, --profile)")


def check_command(args: argparse.Namespace) -> int:
    """``mlobs licenses check``: 0 all pass, 1 a failure or an error, 2 nothing checked."""
    from mlobs.analysis.licenses import check_licenses

    notes: list[str] = []
    try:
        declared = list(args.model)
        for spec in args.profile:
            models = load_profile_models(spec)
            if not models:
                notes.append(f"profile {spec} declares no models")
            declared.extend(sorted(models))
        db_url, note = _warehouse_url(args)
        if note:
            notes.append(note)
        deny = (() if args.no_default_deny else DEFAULT_DENY) + tuple(args.deny)
        report = check_licenses(args.file, db_url=db_url, models=declared, deny=deny)
        if args.junit:
            write_report_junit(args.junit, report)
    except MlobsError as exc:
        return fail(str(exc))
    except OSError as exc:  # the JUnit file
        return fail(f"cannot write {args.junit}: {exc}")
    for line in notes:
        print(f"mlobs licenses: {line}", file=sys.stderr)
    if args.json:
        print(json.dumps({**report.to_dict(), "notes": notes}, indent=2))
    else:
        print(format_report(report))
    if not report.results:
        print("mlobs licenses: nothing to check: no model seen in the warehouse nor "
              "declared (--model, --profile)", file=sys.stderr)
        return 2
    return 1 if report.failed else 0


def format_report(report: LicenseReport) -> str:
    """The models as a table (failures first, then passes, then unused rows) and a
    one-line summary."""
    order = {"fail": 0, "ok": 1}
    results = sorted(report.results, key=lambda r: (order[r.verdict], r.model))
    rows = [[r.model, _license(r), r.verdict, r.reason or MISSING]
            for r in [*results, *report.unused]]
    failed = len(report.failed)
    summary = (f"{len(report.results)} model(s) checked against {report.table_path}: "
               f"{len(report.results) - failed} ok, {failed} failed")
    if report.unused:
        summary += f"; {len(report.unused)} row(s) of models not in use (informational)"
    summary += f"; warehouse: {report.warehouse or 'none read'}"
    if not rows:
        return f"(the inventory has no rows)\n\n{summary}"
    return (tabulate(rows, headers=["model", "license", "verdict", "reason"],
                     disable_numparse=True) + f"\n\n{summary}")


def _license(result: LicenseResult) -> str:
    return result.row.license if result.row and result.row.license else MISSING


def junit_cases(report: LicenseReport) -> list[JUnitCase]:
    """One case per model checked (passed or failure), and a skipped case per unused row;
    classname :data:`JUNIT_CLASSNAME`, name the model."""
    from mlobs.analysis.junit import JUnitCase

    cases = []
    for result in [*report.results, *report.unused]:
        outcome = {"ok": "passed", "fail": "failure"}.get(result.verdict, "skipped")
        row = result.row
        details = "\n".join([
            f"model: {result.model}",
            f"found in: {', '.join(result.sources) or 'the inventory only'}",
            f"inventory: {report.table_path}" + (f" line {row.line}" if row else " (no row)"),
            *([f"license: {row.license or MISSING}", f"link: {row.link or MISSING}",
               f"restrictions: {row.restrictions or MISSING}"] if row else []),
            *([f"reason: {result.reason}"] if result.reason else [])])
        cases.append(JUnitCase(JUNIT_CLASSNAME, result.model, outcome,
                               "" if outcome == "passed" else result.reason, details))
    return cases


def write_report_junit(path: str, report: LicenseReport) -> None:
    """Write :func:`junit_cases` to ``path`` (suite :data:`JUNIT_SUITE`)."""
    from mlobs.analysis.junit import write_junit

    write_junit(path, JUNIT_SUITE, junit_cases(report))
