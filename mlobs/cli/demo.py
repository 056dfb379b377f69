"""``mlobs demo``: run the bundled demo pipelines and show what was recorded.

    mlobs demo [--root DIR] [--max-videos N] [--quiet]

Runs the text pipeline over CPython's pydoc topics and the visual pipeline over
scikit-learn's digits (no network), then prints where the manifests and the warehouse are,
and the component rollup computed from the warehouse.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mlobs.cli.argtypes import positive_int

if TYPE_CHECKING:
    from mlobs.demo.runner import DemoSummary

# The demo's imports (scikit-learn, numpy, DuckDB) happen when the command runs, not when
# the CLI starts: the demo's libraries are an optional extra.

#: what installs them, in the hint the command prints when one is missing.
INSTALL_HINT = "pip install 'mlobs[demo]'"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand to the ``mlobs`` parser."""
    parser = subparsers.add_parser(
        "demo", help="run the bundled demo pipelines (text + visual, no network)",
        description="Run the text pipeline over CPython's pydoc topics and the visual "
                    "pipeline over scikit-learn's digits (no network), then print where the "
                    "manifests and the warehouse are and the component rollup.")
    parser.add_argument("--root", type=Path, default=None, metavar="DIR",
                        help="directory for manifests and the SQLite warehouse "
                             "(default: $MLOBS_ROOT or ./mlobs-data)")
    parser.add_argument("--max-videos", type=positive_int, default=None, metavar="N",
                        help="at most N videos per pipeline (default: all)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress lines; only the final report")
    parser.add_argument("--no-cache", action="store_true",
                        help="recompute every cached text component and store the results "
                             "as new versions (default: reuse results cached under "
                             "<root>/cache)")
    parser.add_argument("--embedding-dimensions", type=positive_int, default=None,
                        metavar="N",
                        help="dimensions of the tfidf-svd embedding model (default: 64); "
                             "another value is another model, so its cache misses with "
                             "model_signature_changed")
    parser.add_argument("--slow", type=_slowdown, action="append", default=[],
                        metavar="COMPONENT=FACTOR",
                        help="make COMPONENT take FACTOR times as long (repeatable), e.g. "
                             "to see `mlobs drift` find it: embedding=2")
    parser.add_argument("--pipeline-version", default=None, metavar="V",
                        help="the runs' pipeline_version (default: 1.0.0); `mlobs drift "
                             "--baseline-version A --current-version B` compares two demos")
    parser.set_defaults(func=main)


def _slowdown(text: str) -> tuple[str, float]:
    name, _, factor = text.partition("=")
    try:
        value = float(factor)
    except ValueError:
        value = 0.0
    if not name or not 1 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be COMPONENT=FACTOR with a factor >= 1, "
                                         f"got {text!r}")
    return name, value




def main(args: argparse.Namespace) -> int:
    """Run the demo; exit code 0 when every run ended ok, 1 otherwise, 2 when a library of
    the demo extra (scikit-learn, numpy, or one of theirs) is missing."""
    try:
        from mlobs.demo.runner import run_demo
    except ModuleNotFoundError as exc:
        # Any third-party module: scikit-learn's own dependencies (scipy, joblib, ...) are
        # missing just as well from an install without the extra. A missing mlobs module
        # is a bug, not a set-up step.
        missing = (exc.name or "").partition(".")[0]
        if not missing or missing == "mlobs":
            raise
        print(f"mlobs demo needs the module {missing!r} (the demo extra: scikit-learn and "
              f"what it needs); install it with: {INSTALL_HINT}", file=sys.stderr)
        return 2
    progress = (lambda line: None) if args.quiet else print
    summary = run_demo(root=args.root, max_videos=args.max_videos, progress=progress,
                       cache="bypass" if args.no_cache else True,
                       embedding_dimensions=args.embedding_dimensions,
                       slow=dict(args.slow), pipeline_version=args.pipeline_version)
    print(f"\n{summary.runs} runs in {summary.duration_s:.1f} s: {summary.ok_runs} ok "
          f"({summary.partial_runs} with an optional component empty or failed), "
          f"{summary.error_runs} failed")
    print(f"manifests: {summary.manifests_dir}")
    print(f"warehouse: {summary.warehouse_url or '(warehouse sink off)'}")
    if summary.warehouse_url:
        print()
        print(rollup_report(summary))
    return 0 if summary.error_runs == 0 else 1


def rollup_report(summary: DemoSummary) -> str:
    """The per-component rollup of the warehouse as a text table (the one rollup call site),
    the model column naming the models as ``mlobs rollup`` does."""
    from mlobs.analysis.rollup import compute_rollup
    from mlobs.cli.rollup import format_rollup, model_labels
    rows = compute_rollup(summary.warehouse_url)
    return format_rollup(rows, model_labels(summary.warehouse_url, rows))
