"""What a release gate leaves behind: rows in ``gate_results``, a Markdown summary for a
pull-request comment, and JUnit cases (one per component × check) for CI systems."""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import Table
from sqlalchemy.exc import SQLAlchemyError

from mlobs.analysis.gate import GateCheck, GateReport, percent
from mlobs.analysis.junit import JUnitCase
from mlobs.core.errors import WarehouseError
from mlobs.core.limits import NAME_MAX_CHARS
from mlobs.warehouse.engine import create_warehouse_engine, display_url, require_sqlite_file
from mlobs.warehouse.migrate import check_schema
from mlobs.warehouse.models import GateResult

RESULTS: Table = GateResult.__table__  # type: ignore[assignment]
SHORT_SIGNATURE = 12
_MARKS = {"pass": "✅ pass", "regression": "❌ regression", "breach": "❌ breach",
          "unknown": "❔ unknown"}
_HEADLINES = {0: "pass", 1: "failed", 2: "unknown"}


def store_report(db_url: str, report: GateReport) -> int:
    """Insert every check of ``report`` into ``gate_results``; returns the row count.

    Raises:
        WarehouseError: the warehouse is missing, not at the current schema, or the
            write failed (nothing is written then).
    """
    require_sqlite_file(db_url)
    engine = create_warehouse_engine(db_url)
    rows = [_row(report, check) for check in report.checks]
    try:
        check_schema(engine)
        if rows:
            with engine.begin() as conn:
                conn.execute(RESULTS.insert(), rows)
    except SQLAlchemyError as exc:
        raise WarehouseError(f"storing the gate's results failed on {display_url(engine)}: "
                             f"{exc}") from exc
    finally:
        engine.dispose()
    return len(rows)


def _row(report: GateReport, check: GateCheck) -> dict[str, Any]:
    data = check.to_dict()
    data.pop("larger_is_worse")
    data.pop("log_sd")
    data["limit_value"] = data.pop("limit")
    data["component"] = data["component"][:NAME_MAX_CHARS]  # a long benchmark fullname
    data["check"] = data["check"][:NAME_MAX_CHARS]
    return {**data, "gate_id": report.gate_id, "checked_at": report.checked_at,
            "source": report.source, "baseline": report.baseline,
            "candidate": report.candidate}


def number(value: float | None) -> str:
    """A value for a report cell: 4 significant digits, ``-`` when missing."""
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf"
    return f"{value:.4g}"


def interval(check: GateCheck) -> str:
    if check.change_low is None or check.change_high is None:
        return "-"
    return f"[{percent(check.change_low)}, {percent(check.change_high)}]"


def signature(check: GateCheck) -> str:
    return (check.model_signature or "-")[:SHORT_SIGNATURE]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def markdown_summary(report: GateReport, *, unknown_exit: int = 2) -> str:
    """A Markdown summary: the verdict per component × model_signature, the checks that
    did not pass, the budgets; GitHub-flavoured tables."""
    code = report.exit_code(unknown_exit)
    policy = report.policy
    lines = [f"## mlobs gate: {_HEADLINES.get(code, 'unknown')}", ""]
    if report.baseline:
        lines.append(f"Baseline: {report.baseline}  ")
    lines += [f"Candidate: {report.candidate}  ",
              f"Rules: regression when adjusted p ≤ {policy.alpha} and the change is beyond "
              f"max({policy.min_tolerance:.0%}, {policy.cv_factor:g} × the baseline's CV); "
              f"at least {policy.min_runs} runs a side.", ""]
    verdicts = report.component_verdicts()
    for check in report.having("breach"):  # a breached budget fails its component too
        key = (check.component, check.model_signature)
        if verdicts.get(key, "pass") == "pass":
            verdicts[key] = "breach"
    if verdicts:
        rows = []
        for (component, sig), verdict in sorted(verdicts.items(),
                                                key=lambda kv: (kv[0][0], kv[0][1] or "")):
            worst = _worst(report, component, sig)
            rows.append([component, (sig or "-")[:SHORT_SIGNATURE], _MARKS[verdict],
                         worst.check if worst else "-",
                         percent(worst.change) if worst else "-",
                         worst.message if worst else ""])
        lines += _table(["component", "model_signature", "verdict", "largest change",
                         "change", "note"], rows) + [""]
    open_checks = [c for c in report.checks
                   if c.kind == "comparison" and c.verdict != "pass"]
    if open_checks:
        lines += ["### Checks not passed", ""]
        lines += _table(["component", "stratum", "check", "verdict", "baseline",
                         "candidate", "change", "interval", "tolerance", "adjusted p",
                         "runs a side", "note"],
                        [[c.component, c.stratum or "-", c.check, _MARKS[c.verdict],
                          number(c.baseline_value), number(c.candidate_value),
                          percent(c.change), interval(c), percent(c.tolerance),
                          number(c.adjusted_p), f"{c.n_baseline} / {c.n_candidate}",
                          c.message] for c in open_checks]) + [""]
    limits = [c for c in report.checks if c.kind in ("budget", "figure")]
    if limits:
        lines += ["### Budgets", ""]
        lines += _table(["component", "budget", "limit", "candidate", "verdict", "note"],
                        [[c.component, c.check, number(c.limit), number(c.candidate_value),
                          _MARKS[c.verdict], c.message if c.verdict != "pass" else ""]
                         for c in limits]) + [""]
    return "\n".join(lines)


def _worst(report: GateReport, component: str, sig: str | None) -> GateCheck | None:
    """The comparison with the worst verdict, then the largest change."""
    rank = {"regression": 0, "unknown": 1, "pass": 2}
    mine = [c for c in report.checks if c.kind == "comparison" and c.component == component
            and c.model_signature == sig]
    mine.sort(key=lambda c: (rank[c.verdict], -abs(c.change or 0)
                             if c.change is not None and math.isfinite(c.change) else 0))
    return mine[0] if mine else None


def junit_cases(report: GateReport) -> list[JUnitCase]:
    """One case per component × check: regression and breach fail, unknown is skipped."""
    cases = []
    for check in report.checks:
        group = check.component + (f" [{signature(check)}]" if check.model_signature else "")
        name = check.check if check.kind != "comparison" or not check.stratum \
            else f"{check.check} ({check.stratum})"
        if check.kind != "comparison":
            name = f"{check.kind}: {name}"
        outcome = {"regression": "failure", "breach": "failure", "unknown": "skipped"}.get(
            check.verdict, "passed")
        details = (f"baseline {number(check.baseline_value)}, candidate "
                   f"{number(check.candidate_value)}, change {percent(check.change)} "
                   f"{interval(check)}, tolerance {percent(check.tolerance)}, limit "
                   f"{number(check.limit)}, adjusted p {number(check.adjusted_p)}, runs "
                   f"{check.n_baseline} / {check.n_candidate}")
        cases.append(JUnitCase(f"mlobs.gate.{group}", name, outcome,
                               check.message or check.verdict, details))
    return cases
