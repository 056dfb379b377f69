"""``mlobs gate run``: run a baseline and a candidate command alternately, then gate them.

A session runs ``warmup`` unlabelled-for-the-gate rounds, then ``repeats`` rounds of
baseline then candidate (A B A B …: the machine's slow drift, e.g. a neighbour's load or
a warming disk cache, falls on both sides alike). Each command gets the warehouse in
``MLOBS_DB_URL`` and its runs' labels in ``MLOBS_RUN_LABELS`` (appended to any the
caller set): ``mlobs.gate.session`` (the session id), ``mlobs.gate.side`` (``baseline``,
``candidate`` or ``warmup``) and ``mlobs.gate.repeat``. The gate then compares the two
sides' runs by those labels. With ``until_decided`` the session adds rounds while a
comparison is ``unknown``, as many as the checks say they need, up to ``max_repeats``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import and_, func, select
from sqlalchemy.exc import SQLAlchemyError

from mlobs.analysis.budgets import Budgets
from mlobs.analysis.gate import GateReport, evaluate_gate
from mlobs.analysis.gate_inputs import RUNS, RunSet, load_run_set
from mlobs.core.errors import ConfigError, MlobsError, WarehouseError
from mlobs.warehouse.engine import create_warehouse_engine, display_url
from mlobs.warehouse.labels import label_conditions

SESSION_LABEL, SIDE_LABEL, REPEAT_LABEL = ("mlobs.gate.session", "mlobs.gate.side",
                                           "mlobs.gate.repeat")
_OUTPUT_TAIL_CHARS = 4000


class CommandFailed(MlobsError):
    """A baseline or candidate command exited non-zero, timed out, or recorded no run."""


@dataclass(frozen=True)
class SessionPlan:
    """What a session runs.

    Args:
        baseline_cmd, candidate_cmd: shell command lines (run with ``sh -c``).
        repeats: rounds of baseline + candidate before the first verdict (>= 2).
        warmup: rounds of both commands first, left out of the gate (>= 0).
        until_decided: add rounds while a comparison is ``unknown``.
        max_repeats: the most rounds in all (>= repeats).
        timeout_s: the longest one command may take (None: no limit).

    Raises:
        ConfigError: a bound out of range or an empty command.
    """

    baseline_cmd: str
    candidate_cmd: str
    repeats: int = 10
    warmup: int = 1
    until_decided: bool = False
    max_repeats: int = 30
    timeout_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("baseline_cmd", "candidate_cmd"):
            if not getattr(self, name).strip():
                raise ConfigError(f"{name} must be a command line, got an empty one")
        if self.repeats < 2:
            raise ConfigError(f"repeats must be at least 2, got {self.repeats}")
        if self.warmup < 0:
            raise ConfigError(f"warmup must be at least 0, got {self.warmup}")
        if self.max_repeats < self.repeats:
            raise ConfigError(f"max_repeats ({self.max_repeats}) must be at least repeats "
                              f"({self.repeats})")
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise ConfigError(f"timeout_s must be > 0, got {self.timeout_s}")


def _count_runs(db_url: str, labels: dict[str, str]) -> int:
    engine = create_warehouse_engine(db_url)
    where = label_conditions(labels, RUNS.c.run_id)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(RUNS)
                                    .where(and_(*where))).scalar_one())
    except SQLAlchemyError as exc:
        raise WarehouseError(f"counting the gate's runs failed on {display_url(engine)}: "
                             f"{exc}") from exc
    finally:
        engine.dispose()


def _run_command(command: str, env: dict[str, str], timeout_s: float | None) -> float:
    """Run one command; returns its wall time in seconds.

    Raises:
        CommandFailed: a non-zero exit or a timeout (with the output's tail).
    """
    started = time.perf_counter()
    try:  # its own process group, so a timeout stops the command's children too
        process = subprocess.Popen(["sh", "-c", command], env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as exc:
        raise CommandFailed(f"{command!r} could not start: {exc}") from exc
    try:
        output, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise CommandFailed(f"{command!r} ran past {timeout_s} s (stopped)") from exc
    if process.returncode != 0:
        tail = output.decode(errors="replace")[-_OUTPUT_TAIL_CHARS:]
        raise CommandFailed(f"{command!r} exited {process.returncode}; its output ends:\n"
                            f"{tail}")
    return time.perf_counter() - started


def run_session(db_url: str, plan: SessionPlan, *, budgets: Budgets | None = None,
                progress: Callable[[str], None] | None = None,
                session_id: str | None = None) -> GateReport:
    """Run ``plan`` against the warehouse at ``db_url`` and gate the two sides.

    Returns:
        The last verdict (not stored; see :func:`mlobs.analysis.gate_reports.store_report`).

    Raises:
        CommandFailed: a command failed, or recorded no run into this warehouse with the
            session's labels (the message says what to check).
        WarehouseError: the warehouse could not be read.
    """
    say = progress or (lambda _: None)
    session = session_id or uuid.uuid4().hex[:12]
    inherited = os.environ.get("MLOBS_RUN_LABELS", "").strip().strip(",")

    def run(side: str, command: str, repeat: int) -> float:
        labels = {SESSION_LABEL: session, SIDE_LABEL: side, REPEAT_LABEL: str(repeat)}
        text = ",".join(f"{k}={v}" for k, v in labels.items())
        env = {**os.environ, "MLOBS_DB_URL": db_url,
               "MLOBS_RUN_LABELS": f"{inherited},{text}" if inherited else text}
        seconds = _run_command(command, env, plan.timeout_s)
        if side != "warmup" and _count_runs(db_url, labels) == 0:
            raise CommandFailed(
                f"the {side} command {command!r} recorded no run into {db_url} with the "
                f"gate's labels: it must open runs with mlobs.run() and use the warehouse "
                f"and labels mlobs gate run passes in MLOBS_DB_URL and MLOBS_RUN_LABELS")
        return seconds

    for repeat in range(plan.warmup):
        run("warmup", plan.baseline_cmd, repeat)
        run("warmup", plan.candidate_cmd, repeat)
        say(f"warm-up round {repeat + 1}/{plan.warmup} done")
    done, target = 0, plan.repeats
    while True:
        while done < target:
            a = run("baseline", plan.baseline_cmd, done)
            b = run("candidate", plan.candidate_cmd, done)
            done += 1
            say(f"round {done}/{target}: baseline {a:.2f} s, candidate {b:.2f} s")
        report = evaluate_gate(
            load_run_set(db_url, RunSet(labels={SESSION_LABEL: session,
                                                SIDE_LABEL: "baseline"})),
            load_run_set(db_url, RunSet(labels={SESSION_LABEL: session,
                                                SIDE_LABEL: "candidate"})),
            budgets=budgets)
        # checks that more rounds can decide (not one-sided ones)
        unknown = [c for c in report.having("unknown")
                   if c.kind == "comparison" and c.runs_needed]
        if not plan.until_decided or not unknown or done >= plan.max_repeats:
            return report
        wanted = max(c.runs_needed or 1 for c in unknown)
        target = min(plan.max_repeats, done + min(wanted, plan.repeats))
        say(f"{len(unknown)} comparison(s) unknown; running {target - done} more round(s)")
