"""Component batch_size_requested and prediction_status; OOM, retry, GPU, degraded rollups.

Revision ID: 0002
Revises: 0001
Create Date: 2026-05-16

Hand-written; mirrors mlobs/warehouse/models.py at this revision (same constraint names,
so an autogenerate comparison against the models is empty).

* ``component_runs`` gains ``batch_size_requested`` and ``prediction_status`` (check
  ``ck_component_runs_prediction_status``); existing rows get NULL in both, which is what
  a record without a fallback chain or a requested batch size says.
* ``component_rollups`` gains ``oom_rate``, ``mean_ooms_per_run``, ``retries``,
  ``p95_peak_gpu_allocated_bytes``, ``p95_peak_gpu_reserved_bytes`` and
  ``degraded_rate``, all nullable: rows computed before this revision keep NULL ("not
  computed") rather than a made-up 0 until the next ``mlobs rollup`` replaces them.

On SQLite the ALTERs go through batch mode: adding or dropping the CHECK constraint
recreates ``component_runs`` (named constraints, indexes and foreign keys are reflected
and kept; env.py turns foreign keys off so the copy does not cascade into ``events``).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PREDICTION_CHECK = "ck_component_runs_prediction_status"

#: component_rollups columns added here, in order.
_ROLLUP_COLUMNS: tuple[tuple[str, sa.types.TypeEngine], ...] = (
    ("oom_rate", sa.Float()),
    ("mean_ooms_per_run", sa.Float()),
    ("retries", sa.Integer()),
    ("p95_peak_gpu_allocated_bytes", sa.Float()),
    ("p95_peak_gpu_reserved_bytes", sa.Float()),
    ("degraded_rate", sa.Float()),
)


def upgrade() -> None:
    with op.batch_alter_table("component_runs") as batch:
        batch.add_column(sa.Column("batch_size_requested", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("prediction_status", sa.String(16), nullable=True))
        # NULL passes: a CHECK only refuses rows for which it is false.
        batch.create_check_constraint(_PREDICTION_CHECK,
                                      "prediction_status IN ('ok', 'degraded')")

    with op.batch_alter_table("component_rollups") as batch:
        for name, type_ in _ROLLUP_COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("component_rollups") as batch:
        for name, _ in reversed(_ROLLUP_COLUMNS):
            batch.drop_column(name)

    with op.batch_alter_table("component_runs") as batch:
        batch.drop_constraint(_PREDICTION_CHECK, type_="check")
        batch.drop_column("prediction_status")
        batch.drop_column("batch_size_requested")
