"""Runs carry labels: table ``run_labels``.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03

Hand-written; mirrors mlobs/warehouse/models.py at this revision.

* New table ``run_labels``: one row per label of a run (``mlobs.run(..., labels={...})``
  and ``MLOBS_RUN_LABELS``; :mod:`mlobs.core.labels`), primary key (run_id, key), the run
  deleted with its labels (``ON DELETE CASCADE``, like the other tables of a run), and
  index ``ix_run_labels_key_value`` to select run sets by label (the release gate, the
  views). Runs stored before this revision have no labels.

Downgrading drops the table and its rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "run_labels",
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.String(256), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "key", name="pk_run_labels"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.run_id"], ondelete="CASCADE",
                                name="fk_run_labels_run_id_runs"),
    )
    op.create_index("ix_run_labels_key_value", "run_labels", ["key", "value"])


def downgrade() -> None:
    op.drop_index("ix_run_labels_key_value", table_name="run_labels")
    op.drop_table("run_labels")
