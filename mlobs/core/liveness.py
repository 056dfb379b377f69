"""Is a run's process still alive? The heartbeat rule.

While a run is open its recorder re-sends the run record every
:data:`HEARTBEAT_INTERVAL_S` seconds with a fresh ``heartbeat_at``; the manifest and the
warehouse row carry it. A run still ``running`` whose last sign of life
(``heartbeat_at``, else ``started_at``) is older than a bound is taken for dead (killed,
out of memory, its host lost): ``crashed``. ``mlobs runs list`` and ``mlobs doctor`` show
it so; ``mlobs doctor --fix`` writes the status.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from mlobs.core.records import RunRecord

#: seconds between two heartbeats of an open run (``MLOBS_HEARTBEAT_INTERVAL_S``).
HEARTBEAT_INTERVAL_S = 30.0
#: heartbeat intervals a run may miss before it is taken for crashed: a busy machine or a
#: long pause of the process is not mistaken for a death.
MISSED_BEATS = 4
#: the bound at the default interval (seconds).
STALE_AFTER_S = MISSED_BEATS * HEARTBEAT_INTERVAL_S
CRASHED = "crashed"
#: the error_code a run marked crashed gets.
CRASHED_ERROR_CODE = "crashed"
#: the statuses a run ends with; nothing replaces them but themselves.
FINISHED = ("ok", "error")
_RANK = {"running": 0, CRASHED: 1, "ok": 2, "error": 2}


def status_rank(status: str) -> int:
    """How final a run status is: a stored run is replaced only by a status of at least
    its rank (``running`` < ``crashed`` < ``ok``/``error``): a late heartbeat never undoes
    a mark or an end, and a run's own end replaces a mark made while it was alive."""
    return _RANK.get(status, 2)


def last_alive(run: RunRecord) -> datetime:
    """The last sign of life of ``run``'s process (``heartbeat_at``, else ``started_at``)."""
    return run.heartbeat_at or run.started_at


def is_crashed(run: RunRecord, now: datetime, stale_after_s: float = STALE_AFTER_S) -> bool:
    """True when ``run`` is marked crashed, or is ``running`` and silent for longer than
    ``stale_after_s`` seconds at ``now`` (an aware datetime)."""
    if run.status == CRASHED:
        return True
    return run.status == "running" and now - last_alive(run) > timedelta(seconds=stale_after_s)


def shown_status(run: RunRecord, now: datetime, stale_after_s: float = STALE_AFTER_S) -> str:
    """The status to show: ``crashed`` for a run :func:`is_crashed` says so of."""
    return CRASHED if is_crashed(run, now, stale_after_s) else run.status


def crashed_message(run: RunRecord) -> str:
    """The error_message of a run marked crashed."""
    return (f"the run's process stopped sending heartbeats (last sign of life "
            f"{last_alive(run).isoformat()}): killed, out of memory, or its host lost")


def mark_crashed(run: RunRecord) -> RunRecord:
    """``run`` as marked crashed: status and error_code ``crashed``, the message saying
    why, finished at its last sign of life."""
    return replace(run, status=CRASHED, error_code=CRASHED_ERROR_CODE,
                   error_message=crashed_message(run), finished_at=last_alive(run))
