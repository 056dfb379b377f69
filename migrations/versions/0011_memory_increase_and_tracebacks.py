"""Components record what they added to memory, and the traceback of a failure.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04

Hand-written; mirrors mlobs/warehouse/models.py at this revision.

* ``component_runs`` gains ``error_traceback`` (text, bounded by the recorder:
  ``mlobs.core.tracebacks``), ``rss_at_start_bytes`` and ``peak_rss_increase_bytes``
  (peak - start: what the component itself added to the process's RSS),
  ``gpu_allocated_at_start_bytes`` and ``peak_gpu_allocated_increase_bytes`` (the same
  for torch's allocated CUDA memory). Rows stored before this revision get NULL: the
  start was not recorded then, and no value is made up.
* ``component_rollups`` gains ``p95_peak_rss_increase_bytes`` and
  ``p95_peak_gpu_allocated_increase_bytes`` (NULL in rows computed before it, until the
  next ``mlobs rollup`` replaces them).

Plain ``ADD COLUMN`` on both backends (nullable, no default, no constraint); downgrading
drops the columns and their values.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COMPONENT_COLUMNS: tuple[tuple[str, sa.types.TypeEngine], ...] = (
    ("error_traceback", sa.Text()),
    ("rss_at_start_bytes", sa.BigInteger()),
    ("peak_rss_increase_bytes", sa.BigInteger()),
    ("gpu_allocated_at_start_bytes", sa.BigInteger()),
    ("peak_gpu_allocated_increase_bytes", sa.BigInteger()),
)
_ROLLUP_COLUMNS: tuple[tuple[str, sa.types.TypeEngine], ...] = (
    ("p95_peak_rss_increase_bytes", sa.Float()),
    ("p95_peak_gpu_allocated_increase_bytes", sa.Float()),
)


def upgrade() -> None:
    for table, columns in (("component_runs", _COMPONENT_COLUMNS),
                           ("component_rollups", _ROLLUP_COLUMNS)):
        for name, type_ in columns:
            op.add_column(table, sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    for table, columns in (("component_rollups", _ROLLUP_COLUMNS),
                           ("component_runs", _COMPONENT_COLUMNS)):
        with op.batch_alter_table(table) as batch:  # SQLite drops columns by a copy
            for name, _ in reversed(columns):
                batch.drop_column(name)
