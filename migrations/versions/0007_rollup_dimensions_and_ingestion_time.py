"""Rollups by pipeline_version, profile and device kind, minute buckets, and the ingestion
time that incremental rollups follow.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

Hand-written; mirrors mlobs/warehouse/models.py at this revision.

* ``component_runs`` gains ``ingested_at`` (nullable, UTC, indexed): when the warehouse
  stored the row, by the database's clock. The store sets it on every insert (on
  PostgreSQL it is also the column's default, ``clock_timestamp()``, which COPY uses).
  Rows stored before this revision keep NULL: the first rollup of each bucket width after
  it is a full one.
* ``component_rollups`` gains the dimensions ``pipeline_version``, ``profile`` and
  ``device_kind``, the measures ``items``, ``items_per_s``, the cache-hit-split latency
  (``p50/p95_hit_duration_ms``, ``p50/p95_miss_duration_ms``) and ``metrics`` (JSON:
  count, mean, p50, p95 per user metric name); ``bucket_width`` may be ``minute``.
* New table ``rollup_watermarks``: per bucket width, the ingestion time up to which the
  stored rollup rows are complete (:mod:`mlobs.analysis.incremental`).

Downgrading drops the new table, columns and index, and every ``component_rollups`` row
(split by the new dimensions, they would read as duplicates; the next rollup recomputes
them).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BUCKET_CHECK = "ck_component_rollups_bucket_width"
_INDEX = "ix_component_runs_ingested_at"
_ROLLUP_COLUMNS: tuple[tuple[str, sa.types.TypeEngine], ...] = (
    ("pipeline_version", sa.String(255)),
    ("profile", sa.String(255)),
    ("device_kind", sa.String(128)),
    ("items", sa.BigInteger()),
    ("items_per_s", sa.Float()),
    ("p50_hit_duration_ms", sa.Float()),
    ("p95_hit_duration_ms", sa.Float()),
    ("p50_miss_duration_ms", sa.Float()),
    ("p95_miss_duration_ms", sa.Float()),
    ("metrics", sa.JSON()),
)


def upgrade() -> None:
    # A plain ADD COLUMN (no default): SQLite adds it without copying the table.
    op.add_column("component_runs",
                  sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        # SET DEFAULT leaves the existing rows NULL (no table rewrite); COPY gets the clock.
        op.execute("ALTER TABLE component_runs ALTER COLUMN ingested_at "
                   "SET DEFAULT clock_timestamp()")
    op.create_index(_INDEX, "component_runs", ["ingested_at"])
    with op.batch_alter_table("component_rollups") as batch:
        for name, type_ in _ROLLUP_COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))
        batch.drop_constraint(_BUCKET_CHECK, type_="check")
        batch.create_check_constraint(_BUCKET_CHECK,
                                      "bucket_width IN ('all', 'minute', 'hour', 'day')")
    op.create_table(
        "rollup_watermarks",
        sa.Column("bucket_width", sa.String(16), nullable=False),
        sa.Column("ingested_through", sa.DateTime(timezone=True), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("bucket_width", name="pk_rollup_watermarks"),
    )


def downgrade() -> None:
    op.drop_table("rollup_watermarks")
    # Rows split by the new dimensions would read as duplicates at 0006: the next rollup
    # recomputes them.
    op.execute("DELETE FROM component_rollups")
    with op.batch_alter_table("component_rollups") as batch:
        batch.drop_constraint(_BUCKET_CHECK, type_="check")
        batch.create_check_constraint(_BUCKET_CHECK, "bucket_width IN ('all', 'hour', 'day')")
        for name, _ in reversed(_ROLLUP_COLUMNS):
            batch.drop_column(name)
    op.drop_index(_INDEX, table_name="component_runs")
    with op.batch_alter_table("component_runs") as batch:
        batch.drop_column("ingested_at")
