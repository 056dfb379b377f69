"""Runs say when their process was last alive, and a run whose process died is ``crashed``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

Hand-written; mirrors mlobs/warehouse/models.py at this revision.

* ``runs`` gains ``heartbeat_at`` (nullable, UTC): the last time the run's process said it
  was alive (its recorder re-sends the run record of every open run at an interval).
* ``runs.status`` may be ``crashed`` too (check constraint ``ck_runs_status``): a run
  left ``running`` whose heartbeat stopped, as ``mlobs doctor --fix`` marks it.

Downgrading turns ``crashed`` runs into ``error`` runs (their error_code stays
``crashed``), then drops the column.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CHECK = "ck_runs_status"


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
        batch.drop_constraint(_CHECK, type_="check")
        batch.create_check_constraint(_CHECK,
                                      "status IN ('running', 'ok', 'error', 'crashed')")


def downgrade() -> None:
    op.execute("UPDATE runs SET status = 'error' WHERE status = 'crashed'")
    with op.batch_alter_table("runs") as batch:
        batch.drop_constraint(_CHECK, type_="check")
        batch.create_check_constraint(_CHECK, "status IN ('running', 'ok', 'error')")
        batch.drop_column("heartbeat_at")
