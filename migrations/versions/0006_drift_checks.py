"""Drift checks are kept: table ``drift_checks``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

Hand-written; mirrors mlobs/warehouse/models.py at this revision.

* New table ``drift_checks``: one row per check of one metric of one component ×
  model_signature × stratum, a baseline window against a current window, with the sample
  sizes, the test's statistic and p-values, the effect with its interval, the threshold
  and the verdict (``mlobs drift``; :mod:`mlobs.analysis.drift`).

Downgrading drops the table and its rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "drift_checks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("component", sa.String(255), nullable=False),
        sa.Column("model_signature", sa.String(64), nullable=True),
        sa.Column("stratum", sa.String(16), nullable=False),
        sa.Column("metric", sa.String(262), nullable=False),  # "metric:" + a 255-char name
        sa.Column("baseline_window", sa.Text(), nullable=False),
        sa.Column("current_window", sa.Text(), nullable=False),
        sa.Column("n_baseline", sa.Integer(), nullable=False),
        sa.Column("n_current", sa.Integer(), nullable=False),
        sa.Column("baseline_value", sa.Float(), nullable=True),
        sa.Column("current_value", sa.Float(), nullable=True),
        sa.Column("statistic", sa.Float(), nullable=True),
        sa.Column("p_value", sa.Float(), nullable=True),
        sa.Column("adjusted_p", sa.Float(), nullable=True),
        sa.Column("effect", sa.Float(), nullable=True),
        sa.Column("effect_low", sa.Float(), nullable=True),
        sa.Column("effect_high", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("wasserstein", sa.Float(), nullable=True),
        sa.Column("psi", sa.Float(), nullable=True),
        sa.Column("verdict", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_drift_checks"),
        sa.CheckConstraint("verdict IN ('drift', 'no_drift', 'insufficient_data')",
                           name="ck_drift_checks_verdict"),
    )
    op.create_index("ix_drift_checks_component_checked_at", "drift_checks",
                    ["component", "checked_at"])


def downgrade() -> None:
    op.drop_index("ix_drift_checks_component_checked_at", table_name="drift_checks")
    op.drop_table("drift_checks")
