"""``mlobs gate``: gate a release on a candidate run set against a baseline, and budgets.

Usage::

    mlobs gate  [--baseline-version V] [--baseline-label K=V ...] [--baseline-since ISO]
                [--baseline-until ISO] [--baseline-runs ID,ID] [--baseline-json FILE]
                [--candidate-… the same] [--budgets FILE] [--markdown FILE]
                [--junit FILE] [--json] [--no-write] [--unknown-exit N] [--db-url URL]
    mlobs gate run --baseline-cmd CMD --candidate-cmd CMD [-n N] [--warmup N]
                [--until-decided] [--max-repeats N] [--timeout-s S] [report options]

Exit 0: every check passed; 1: a regression, a budget breach or an error; 2 (or
``--unknown-exit``): no regression, but a check could not decide. Rules:
:mod:`mlobs.analysis.gate`; the budgets file: :mod:`mlobs.analysis.budgets` and
``docs/gating.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

from mlobs.cli.argtypes import (
    LabelsAction,
    iso_datetime,
    label_pairs,
    non_negative_int,
    positive_int,
    positive_seconds,
)
from mlobs.cli.db import add_location_arguments, fail, resolve_db_url
from mlobs.cli.formatting import tabulate
from mlobs.core.errors import ConfigError, MlobsError

if TYPE_CHECKING:
    from mlobs.analysis.budgets import Budgets
    from mlobs.analysis.gate import GateInput, GateReport

DEFAULT_BUDGETS = "perf-budgets.toml"

EXAMPLES = """\
examples:
  mlobs gate --baseline-version 1.4.0 --candidate-version 1.5.0
  mlobs gate --baseline-label release=rc-1 --candidate-label release=rc-2 \\
             --markdown gate.md --junit gate.xml
  mlobs gate --baseline-json main.json --candidate-json pr.json     (pytest-benchmark)
  mlobs gate --candidate-json bench.json --budgets perf-budgets.toml (budgets only)
  mlobs gate run --baseline-cmd 'cd ../main-worktree && python pipeline.py' \\
             --candidate-cmd 'python pipeline.py' -n 10 --until-decided

exit codes: 0 pass, 1 regression / budget breach / error, 2 unknown (--unknown-exit)
"""


def _wrap(text: str) -> str:
    return textwrap.fill(text, 88)


def _run_ids(text: str) -> tuple[str, ...]:
    ids = tuple(part.strip() for part in text.split(",") if part.strip())
    if not ids:
        raise argparse.ArgumentTypeError("must name at least one run id")
    return ids


def _exit_code(text: str) -> int:
    value = non_negative_int(text)
    if value > 255:
        raise argparse.ArgumentTypeError(f"must be an exit code from 0 to 255, got {text!r}")
    return value


def _add_report_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--budgets", metavar="FILE",
                        help=f"budgets file (default: ./{DEFAULT_BUDGETS} when present; "
                             "its [gate] table sets the statistical policy)")
    parser.add_argument("--markdown", metavar="FILE",
                        help="write a Markdown summary (for a pull-request comment)")
    parser.add_argument("--junit", metavar="FILE",
                        help="write a JUnit XML report (one test case per component x check)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--no-write", action="store_true",
                        help="do not store the results in gate_results")
    parser.add_argument("--unknown-exit", type=_exit_code, default=2, metavar="N",
                        help="exit code when nothing regressed but a check is unknown "
                             "(default: 2; 0 lets unknown pass)")
    add_location_arguments(parser)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``gate`` command (and ``gate run``) to the ``mlobs`` parser."""
    parser = subparsers.add_parser(
        "gate", help="gate a release: candidate runs vs baseline runs, and budgets",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES,
        description=_wrap("Per component x model_signature, compare the candidate run set with "
                    "the baseline run set (one value per run: median duration, memory "
                    "peaks, items/s; and the error rate). A regression needs a "
                    "significant test (p = 2 x min(KS, Mann-Whitney U), Benjamini-Hochberg "
                    "across the checks) and a change beyond max(5%, 3 x the baseline's "
                    "coefficient of variation); pass needs the change's interval within "
                    "that tolerance; else unknown, with the runs it still needs. Budgets "
                    "(absolute limits) are checked on the candidate. Sides come from the "
                    "warehouse (any mix of --*-version, --*-label, --*-since/--*-until, "
                    "--*-runs) or from pytest-benchmark JSON files (--*-json)."))
    for side in ("baseline", "candidate"):
        group = parser.add_argument_group(f"{side} run set")
        group.add_argument(f"--{side}-version", metavar="V",
                           help=f"the {side} runs' pipeline_version")
        group.add_argument(f"--{side}-label", type=label_pairs, action=LabelsAction,
                           default={}, metavar="KEY=VALUE", help=f"a run label of the "
                           f"{side} runs (repeatable; all must match)")
        group.add_argument(f"--{side}-since", type=iso_datetime, metavar="ISO",
                           help=f"{side} runs started at or after this (naive = UTC)")
        group.add_argument(f"--{side}-until", type=iso_datetime, metavar="ISO",
                           help=f"{side} runs started before this")
        group.add_argument(f"--{side}-runs", type=_run_ids, metavar="ID,ID",
                           help=f"the {side} runs, by run id (or a unique prefix of "
                                "one)")
        group.add_argument(f"--{side}-json", metavar="FILE",
                           help=f"a pytest-benchmark JSON file as the {side}")
    _add_report_options(parser)
    parser.set_defaults(func=gate_command)
    sub = parser.add_subparsers(dest="gate_command", metavar="run")
    run = sub.add_parser(
        "run", help="run a baseline and a candidate command alternately, then gate them",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=_wrap("Runs --baseline-cmd and --candidate-cmd (with sh -c) alternately, A B "
                    "A B, after --warmup rounds; every run they open is labelled "
                    "(MLOBS_RUN_LABELS: mlobs.gate.session, mlobs.gate.side, "
                    "mlobs.gate.repeat) and recorded into the warehouse passed in "
                    "MLOBS_DB_URL. Then gates the two sides as `mlobs gate` does. With "
                    "--until-decided, adds rounds while a comparison is unknown."),
        epilog="exit codes: 0 pass, 1 regression / budget breach / a command failed, "
               "2 unknown (--unknown-exit)")
    run.add_argument("--baseline-cmd", required=True, metavar="CMD",
                     help="the baseline's command line (e.g. the main branch's pipeline)")
    run.add_argument("--candidate-cmd", required=True, metavar="CMD",
                     help="the candidate's command line")
    run.add_argument("-n", "--repeats", type=positive_int, default=10, metavar="N",
                     help="rounds of both commands before the first verdict (default: 10)")
    run.add_argument("--warmup", type=non_negative_int, default=1, metavar="N",
                     help="rounds first, left out of the gate (default: 1)")
    run.add_argument("--until-decided", action="store_true",
                     help="add rounds while a comparison is unknown, up to --max-repeats")
    run.add_argument("--max-repeats", type=positive_int, default=30, metavar="N",
                     help="the most rounds in all with --until-decided (default: 30)")
    run.add_argument("--timeout-s", type=positive_seconds, default=None, metavar="S",
                     help="stop when one command runs longer than this")
    _add_report_options(run)
    run.set_defaults(func=gate_run_command)


def _budgets(args: argparse.Namespace) -> Budgets:
    from mlobs.analysis.budgets import Budgets, load_budgets

    if args.budgets:
        return load_budgets(args.budgets)
    if Path(DEFAULT_BUDGETS).is_file():
        print(f"mlobs gate: budgets from ./{DEFAULT_BUDGETS}", file=sys.stderr)
        return load_budgets(DEFAULT_BUDGETS)
    return Budgets()


def _selectors(args: argparse.Namespace, side: str) -> dict[str, object]:
    return {"pipeline_version": getattr(args, f"{side}_version"),
            "labels": getattr(args, f"{side}_label"),
            "since": getattr(args, f"{side}_since"), "until": getattr(args, f"{side}_until"),
            "run_ids": getattr(args, f"{side}_runs")}


def _side(args: argparse.Namespace, side: str, db_url: str) -> GateInput | None:
    from mlobs.analysis.gate_inputs import RunSet, load_benchmark_json, load_run_set

    path = getattr(args, f"{side}_json")
    selectors = _selectors(args, side)
    chosen = any(selectors.values())
    if path and chosen:
        raise ConfigError(f"give the {side} as --{side}-json or as a run set, not both")
    if path:
        return load_benchmark_json(path)
    if not chosen:
        return None
    run_set = RunSet(**selectors)  # type: ignore[arg-type]
    found = load_run_set(db_url, run_set)
    if found.runs == 0:
        raise ConfigError(f"the {side} run set ({run_set.describe()}) matched no run with "
                          f"components in {db_url}")
    return found


def gate_command(args: argparse.Namespace) -> int:
    """``mlobs gate``: see the module docstring for the exit codes."""
    from mlobs.analysis.gate import evaluate_gate

    try:
        db_url = resolve_db_url(args)
        budgets = _budgets(args)
        named = {side: bool(getattr(args, f"{side}_json")
                            or any(_selectors(args, side).values()))
                 for side in ("baseline", "candidate")}
        if not named["candidate"]:
            raise ConfigError("name the candidate: --candidate-version, --candidate-label, "
                              "--candidate-since/--candidate-until, --candidate-runs or "
                              "--candidate-json (see mlobs gate --help)")
        if not named["baseline"] and not (budgets.components or budgets.figures):
            raise ConfigError("without a baseline there is only the budgets to check, and "
                              "none were given (--budgets FILE)")
        from mlobs.cli.run_ids import resolve_run_id_options

        resolve_run_id_options(args, "baseline_runs", "candidate_runs")
        baseline = _side(args, "baseline", db_url)
        candidate = _side(args, "candidate", db_url)
        assert candidate is not None
        files = args.baseline_json or args.candidate_json
        report = evaluate_gate(baseline, candidate, budgets=budgets,
                               source="pytest-benchmark" if files else "warehouse")
        # results of files go to a warehouse only when one was named
        store = not args.no_write and (not files or args.db_url or os.environ.get(
            "MLOBS_DB_URL"))
        return _finish(args, report, db_url if store else None)
    except MlobsError as exc:
        return fail(str(exc))


def gate_run_command(args: argparse.Namespace) -> int:
    """``mlobs gate run``: see the module docstring for the exit codes."""
    from mlobs.analysis.gate_session import SessionPlan, run_session

    try:
        db_url = resolve_db_url(args)
        plan = SessionPlan(args.baseline_cmd, args.candidate_cmd, repeats=args.repeats,
                           warmup=args.warmup, until_decided=args.until_decided,
                           max_repeats=max(args.max_repeats, args.repeats),
                           timeout_s=args.timeout_s)
        report = run_session(db_url, plan, budgets=_budgets(args),
                             progress=lambda line: print(f"mlobs gate run: {line}",
                                                         file=sys.stderr, flush=True))
        return _finish(args, report, None if args.no_write else db_url)
    except MlobsError as exc:
        return fail(str(exc))


def _finish(args: argparse.Namespace, report: GateReport, store_url: str | None) -> int:
    from mlobs.analysis.gate_reports import junit_cases, markdown_summary, store_report
    from mlobs.analysis.junit import write_junit
    from mlobs.core.atomic_file import write_atomically

    try:  # the reports first: a failed store must not cost them
        if args.markdown:
            write_atomically(Path(args.markdown), markdown_summary(
                report, unknown_exit=args.unknown_exit))
        if args.junit:
            write_junit(args.junit, "mlobs gate", junit_cases(report))
    except OSError as exc:
        raise ConfigError(f"cannot write a report: {exc}") from exc
    print(json.dumps(report.to_dict(args.unknown_exit), indent=2) if args.json
          else format_report(report))
    if store_url:
        store_report(store_url, report)
    code = report.exit_code(args.unknown_exit)
    counts = {v: len(report.having(v)) for v in ("regression", "breach", "unknown", "pass")}
    print("mlobs gate: " + ", ".join(f"{n} {v}" for v, n in counts.items())
          + f" (gate {report.gate_id}); exit {code}", file=sys.stderr)
    return code


def format_report(report: GateReport) -> str:
    """The comparisons (regressions first), then the budgets, as tables."""
    from mlobs.analysis.gate_reports import interval, number, percent, signature

    order = {"regression": 0, "breach": 0, "unknown": 1, "pass": 2}
    blocks = []
    compared = sorted((c for c in report.checks if c.kind == "comparison"),
                      key=lambda c: (order[c.verdict], c.component, c.check))
    if compared:
        rows = [[c.verdict, c.component, signature(c), c.stratum, c.check,
                 f"{c.n_baseline}/{c.n_candidate}", number(c.baseline_value),
                 number(c.candidate_value), percent(c.change), interval(c),
                 percent(c.tolerance), number(c.adjusted_p), c.message] for c in compared]
        blocks.append(tabulate(rows, headers=[
            "verdict", "component", "model", "stratum", "check", "runs b/c", "baseline",
            "candidate", "change", "interval", "tolerance", "adj. p", "note"],
            disable_numparse=True))
    limits = [c for c in report.checks if c.kind != "comparison"]
    if limits:
        rows = [[c.verdict, c.component, signature(c), c.check, number(c.limit),
                 number(c.candidate_value), c.message if c.verdict != "pass" else ""]
                for c in sorted(limits, key=lambda c: (order[c.verdict], c.component))]
        blocks.append(tabulate(rows, headers=["verdict", "component", "model", "budget",
                                              "limit", "candidate", "note"],
                               disable_numparse=True))
    return "\n\n".join(blocks) if blocks else \
        "(nothing to check: no run of either side recorded a component; exit as unknown)"
