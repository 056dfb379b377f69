"""Release gate results are kept: table ``gate_results``.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03

Hand-written; mirrors mlobs/warehouse/models.py at this revision.

* New table ``gate_results``: one row per check of one ``mlobs gate`` call (its
  ``gate_id``): a comparison of a candidate run set with a baseline run set, an absolute
  budget, or a benchmark figure, per component × model_signature, with the sample sizes,
  the change and its interval, the tolerance or limit, the p-values, the verdict and the
  runs an ``unknown`` still needs (:mod:`mlobs.analysis.gate`).

Downgrading drops the table and its rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "gate_results",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("gate_id", sa.String(36), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(128), nullable=False),
        sa.Column("baseline", sa.Text(), nullable=False),
        sa.Column("candidate", sa.Text(), nullable=False),
        sa.Column("component", sa.String(255), nullable=False),
        sa.Column("model_signature", sa.String(64), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("check", sa.String(255), nullable=False),
        sa.Column("stratum", sa.String(16), nullable=True),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("n_baseline", sa.Integer(), nullable=False),
        sa.Column("n_candidate", sa.Integer(), nullable=False),
        sa.Column("baseline_value", sa.Float(), nullable=True),
        sa.Column("candidate_value", sa.Float(), nullable=True),
        sa.Column("change", sa.Float(), nullable=True),
        sa.Column("change_low", sa.Float(), nullable=True),
        sa.Column("change_high", sa.Float(), nullable=True),
        sa.Column("tolerance", sa.Float(), nullable=True),
        sa.Column("limit_value", sa.Float(), nullable=True),
        sa.Column("p_value", sa.Float(), nullable=True),
        sa.Column("adjusted_p", sa.Float(), nullable=True),
        sa.Column("runs_needed", sa.Integer(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_gate_results"),
        sa.CheckConstraint("verdict IN ('pass', 'regression', 'unknown', 'breach')",
                           name="ck_gate_results_verdict"),
        sa.CheckConstraint("kind IN ('comparison', 'budget', 'figure')",
                           name="ck_gate_results_kind"),
    )
    op.create_index("ix_gate_results_component_checked_at", "gate_results",
                    ["component", "checked_at"])
    op.create_index("ix_gate_results_gate_id", "gate_results", ["gate_id"])


def downgrade() -> None:
    op.drop_index("ix_gate_results_gate_id", table_name="gate_results")
    op.drop_index("ix_gate_results_component_checked_at", table_name="gate_results")
    op.drop_table("gate_results")
