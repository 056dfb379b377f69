"""``mlobs drift``: did a component drift between a baseline window and a current window?

Usage::

    mlobs drift --baseline-since ISO --baseline-until ISO --current-since ISO
                [--current-until ISO] [--baseline-version V] [--current-version V]
                [--baseline-runs ID,ID] [--current-runs ID,ID] [--component NAME]
                [--alpha A] [--tolerance T] [--rate-tolerance R] [--min-samples N]
                [--json] [--no-write] [--fail-on drift|insufficient_data|never] [--db-url URL]

Each window is any mix of a time range (``started_at``), a pipeline_version and run ids.
The table lists every check (:mod:`mlobs.analysis.drift` for the rules); the rows go to
``drift_checks`` unless ``--no-write``. Exit 0; 1 on an error, or when a check drifted
with ``--fail-on drift`` (the default), so a nightly job can alert; ``--fail-on
insufficient_data`` also fails on too few samples.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from typing import TYPE_CHECKING

from mlobs.cli.argtypes import iso_datetime, positive_int
from mlobs.cli.db import add_location_arguments, fail, resolve_db_url
from mlobs.cli.formatting import MISSING, tabulate
from mlobs.core.errors import MlobsError

if TYPE_CHECKING:
    from mlobs.analysis.drift import DriftReport, Window

SHORT_SIGNATURE = 12


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1, got {text!r}")
    return value


def _at_least_two(text: str) -> int:
    try:
        value = positive_int(text)
    except argparse.ArgumentTypeError:
        value = 0
    if value < 2:
        raise argparse.ArgumentTypeError(f"expected an integer >= 2, got {text!r}")
    return value


def _run_ids(text: str) -> tuple[str, ...]:
    ids = tuple(part.strip() for part in text.split(",") if part.strip())
    if not ids:
        raise argparse.ArgumentTypeError("must name at least one run id")
    return ids


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``drift`` command to the ``mlobs`` parser."""
    parser = subparsers.add_parser(
        "drift", help="compare a current window of runs with a baseline window",
        description="Per component x model_signature (durations and memory stratified by "
                    "cache hit / computed): two-sample tests (p = 2 x min(KS, Mann-Whitney U), "
                    "Benjamini-Hochberg across the checks) with the change of p95 or "
                    "median, and Fisher's test with the change of the error, empty, OOM "
                    "and cache hit rates. A check drifts when it is significant and its "
                    "change is beyond the tolerance; fewer than --min-samples invocations "
                    "a side is insufficient_data.")
    for side in ("baseline", "current"):
        parser.add_argument(f"--{side}-since", type=iso_datetime, metavar="ISO",
                            help=f"the {side} window starts here (started_at, naive = UTC)")
        parser.add_argument(f"--{side}-until", type=iso_datetime, metavar="ISO",
                            help=f"the {side} window ends before this")
        parser.add_argument(f"--{side}-version", metavar="V",
                            help=f"the {side} runs' pipeline_version")
        parser.add_argument(f"--{side}-runs", type=_run_ids, metavar="ID,ID",
                            help=f"the {side} runs, by run id (or a unique prefix "
                                 "of one)")
    parser.add_argument("--component", help="only this component")
    parser.add_argument("--alpha", type=_fraction, default=0.05,
                        help="significance of the adjusted p-value (default: 0.05)")
    parser.add_argument("--tolerance", type=_fraction, default=0.10,
                        help="relative change of p95 or median that counts (default: 0.10)")
    parser.add_argument("--rate-tolerance", type=_fraction, default=0.01,
                        help="absolute change of a rate that counts (default: 0.01, one "
                             "percentage point)")
    parser.add_argument("--min-samples", type=_at_least_two, default=30,
                        help="fewer invocations a side: insufficient_data (default: 30)")
    parser.add_argument("--fail-on", choices=("drift", "insufficient_data", "never"),
                        default="drift", help="exit 1 when a check has this verdict "
                        "(insufficient_data: on drift too; default: drift)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--no-write", action="store_true", help="do not store the checks")
    add_location_arguments(parser)
    parser.set_defaults(func=drift_command)


def _window(args: argparse.Namespace, side: str) -> Window:
    from mlobs.analysis.drift import Window

    return Window(since=getattr(args, f"{side}_since"), until=getattr(args, f"{side}_until"),
                  pipeline_version=getattr(args, f"{side}_version"),
                  run_ids=getattr(args, f"{side}_runs"))


def drift_command(args: argparse.Namespace) -> int:
    """``mlobs drift``: 0, or 1 on an error or a verdict ``--fail-on`` names."""
    from mlobs.analysis.drift import DriftPolicy, check_drift
    from mlobs.cli.run_ids import resolve_run_id_options

    try:
        resolve_run_id_options(args, "baseline_runs", "current_runs")
        baseline, current = _window(args, "baseline"), _window(args, "current")
        policy = DriftPolicy(alpha=args.alpha, tolerance=args.tolerance,
                             rate_tolerance=args.rate_tolerance,
                             min_samples=args.min_samples)
        report = check_drift(resolve_db_url(args), baseline, current, policy=policy,
                             component=args.component, write=not args.no_write)
    except MlobsError as exc:
        return fail(str(exc))
    print(json.dumps(report.to_dict(), indent=2) if args.json else format_report(report))
    counts = Counter(c.verdict for c in report.checks)
    if not report.checks:
        counts["insufficient_data"] = 0  # no data at all is the least evidence there is
    failing = {"drift": {"drift"}, "insufficient_data": {"drift", "insufficient_data"},
               "never": set()}[args.fail_on]
    if set(counts) & failing:
        found = ", ".join(f"{counts[v]} {v}" for v in ("drift", "insufficient_data")
                          if v in counts and v in failing)
        print(f"mlobs drift: failing on --fail-on {args.fail_on}: {found} "
              f"(of {len(report.checks)} check(s))", file=sys.stderr)
        return 1
    return 0


def _number(value: float | None) -> str:
    if value is None:
        return MISSING
    return f"{value:.4g}"


def _change(value: float | None, rate: bool) -> str:
    if value is None:
        return MISSING
    return f"{100 * value:+.1f} pt" if rate else f"{100 * value:+.1f}%"


def format_report(report: DriftReport) -> str:
    """The checks as a table: drift first, then by component and metric."""
    if not report.checks:
        return "(no component invocations in either window)"
    order = {"drift": 0, "insufficient_data": 1, "no_drift": 2}
    rows = []
    for c in sorted(report.checks, key=lambda c: (order[c.verdict], c.component, c.metric)):
        rate = c.stratum == "all"
        interval = MISSING if c.effect_low is None else (
            f"[{_change(c.effect_low, rate)}, {_change(c.effect_high, rate)}]")
        rows.append([c.verdict, c.component, (c.model_signature or MISSING)[:SHORT_SIGNATURE],
                     c.stratum, c.metric, c.n_baseline, c.n_current,
                     _number(c.baseline_value), _number(c.current_value),
                     _change(c.effect, rate), interval, _number(c.adjusted_p)])
    headers = ["verdict", "component", "model", "stratum", "metric", "n base", "n cur",
               "base (p95/rate)", "cur (p95/rate)", "change", "95% interval", "adj. p"]
    drifted = len(report.drifted)
    return (tabulate(rows, headers=headers, disable_numparse=True)
            + f"\n\n{drifted} of {len(report.checks)} check(s) drifted")
