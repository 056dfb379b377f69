"""Selecting runs for the command line: the filters of ``mlobs runs list`` and run_id
prefixes (``mlobs runs show 3f2a``), as SQL conditions on table ``runs``.

Every filter is a condition of one query (with ``LIMIT``), so listing or resolving a
prefix never loads the whole table: a prefix is ``run_id LIKE 'p%'`` on the primary key
(on SQLite with a range beside it, ``p <= run_id < p || U+FFFF``, which lets the index
answer: SQLite's ``LIKE`` is case-insensitive and does not use it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select
from sqlalchemy.sql.elements import ColumnElement

from mlobs.core.liveness import CRASHED
from mlobs.warehouse.labels import label_conditions
from mlobs.warehouse.rows import RUNS


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


@dataclass(frozen=True)
class RunFilter:
    """Which runs to list; every filter given must match (exact matches, except the
    times: ``since <= started_at < until``)."""

    platform_id: str | None = None
    video_id: str | None = None
    #: ``crashed`` with ``silent_since`` also takes the runs still ``running`` whose last
    #: sign of life (``heartbeat_at``, else ``started_at``) is older than ``silent_since``.
    status: str | None = None
    silent_since: datetime | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    since: datetime | None = None
    until: datetime | None = None
    pipeline_version: str | None = None
    profile: str | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        """The WHERE conditions on ``runs``."""
        c = RUNS.c
        found: list[ColumnElement[bool]] = [
            c[name] == value for name in ("platform_id", "video_id", "pipeline_version",
                                          "profile")
            if (value := getattr(self, name)) is not None]
        if self.status == CRASHED and self.silent_since is not None:
            found.append(or_(c.status == CRASHED, and_(
                c.status == "running",
                func.coalesce(c.heartbeat_at, c.started_at) < self.silent_since)))
        elif self.status is not None:
            found.append(c.status == self.status)
        if self.since is not None:
            found.append(c.started_at >= _utc(self.since))
        if self.until is not None:
            found.append(c.started_at < _utc(self.until))
        found.extend(label_conditions(self.labels or {}, c.run_id))
        return found


def id_prefix_condition(prefix: str, dialect: str) -> ColumnElement[bool]:
    """``run_id`` starts with ``prefix`` (``%`` and ``_`` in it are literal)."""
    like = RUNS.c.run_id.startswith(prefix, autoescape=True)
    if dialect != "sqlite":
        return like
    return and_(like, RUNS.c.run_id >= prefix, RUNS.c.run_id < prefix + "\uffff")


def runs_with_id_prefix(conn: Connection, prefix: str,
                        limit: int) -> tuple[int, list[dict[str, Any]]]:
    """How many runs' ids start with ``prefix``, and the newest ``limit`` of them
    (run_id, platform_id, video_id, started_at, status)."""
    c = RUNS.c
    condition = id_prefix_condition(prefix, conn.dialect.name)
    rows = conn.execute(select(c.run_id, c.platform_id, c.video_id, c.started_at, c.status)
                        .where(condition).order_by(c.started_at.desc(), c.run_id.desc())
                        .limit(limit)).all()
    if len(rows) < limit:
        total = len(rows)
    else:
        total = int(conn.scalar(select(func.count()).select_from(RUNS).where(condition)) or 0)
    return total, [row._asdict() for row in rows]
