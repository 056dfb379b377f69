"""Component cache_version, run resumed_from_run_id, the artifact index, miss reasons.

Revision ID: 0003
Revises: 0002
Create Date: 2026-05-23

Hand-written; mirrors mlobs/warehouse/models.py at this revision (same constraint and
index names, so an autogenerate comparison against the models is empty).

* ``component_runs`` gains ``cache_version`` (integer, nullable): the version of the
  cached result a component loaded (hit) or wrote (miss, bypass).
* ``runs`` gains ``resumed_from_run_id`` (varchar(36), nullable, no foreign key: the
  earlier run may reach the warehouse later, or never): set when a run reused results of
  an earlier run of the same video that did not finish.
* ``component_rollups`` gains ``cache_miss_reasons`` (JSON, nullable): ``{reason: count}``
  over the group's misses; NULL in rows computed before this revision.
* New table ``artifact_index`` (orchestration notes §5, seeds 001): one row per
  (platform_id, video_id, config_hash, sampling_policy_version, pipeline_version) naming
  the latest successful run of that key (``latest_success_run_id``, its ``finished_at``)
  and when the row last changed (``updated_at``). The five parts are the composite
  primary key ``pk_artifact_index``. ``config_hash``, ``sampling_policy_version`` and
  ``pipeline_version`` may be None in a run record; the index stores None as the empty
  string '' so that every part is NOT NULL: a primary key cannot hold NULL on PostgreSQL,
  a UNIQUE constraint treats NULLs as distinct on SQLite (and on PostgreSQL before 15's
  NULLS NOT DISTINCT), and the store's ``INSERT ... ON CONFLICT`` upsert needs a conflict
  target that matches on both backends. None and '' are thus the same key ("not set").
  ``latest_success_run_id`` references ``runs.run_id`` with ``ON DELETE CASCADE`` (a
  deleted run takes its index row with it) and is indexed for that cascade.

The upgrade fills ``artifact_index`` from the runs already stored (per key the ``ok``
run with a ``finished_at`` that finished last, ties to the greater run_id: the store's
rule), with ``updated_at`` the time of the migration. Downgrading drops the table and the
three columns with their values; every other row stays.

On SQLite the ALTERs go through batch mode (adding a column only would not need it, but
dropping one on downgrade does; env.py turns foreign keys off during the copy).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)

# Window functions: PostgreSQL, SQLite >= 3.25. On SQLite, timestamps are text in one
# fixed UTC format, so ordering the text orders the instants.
_BACKFILL = sa.text("""
INSERT INTO artifact_index (platform_id, video_id, config_hash, sampling_policy_version,
                            pipeline_version, latest_success_run_id, finished_at, updated_at)
SELECT platform_id, video_id, config_hash, sampling_policy_version, pipeline_version,
       run_id, finished_at, CURRENT_TIMESTAMP
FROM (
    SELECT run_id, platform_id, video_id, finished_at,
           COALESCE(config_hash, '') AS config_hash,
           COALESCE(sampling_policy_version, '') AS sampling_policy_version,
           COALESCE(pipeline_version, '') AS pipeline_version,
           ROW_NUMBER() OVER (
               PARTITION BY platform_id, video_id, COALESCE(config_hash, ''),
                            COALESCE(sampling_policy_version, ''),
                            COALESCE(pipeline_version, '')
               ORDER BY finished_at DESC, run_id DESC) AS rank_in_key
    FROM runs
    WHERE status = 'ok' AND finished_at IS NOT NULL
) AS ranked
WHERE rank_in_key = 1
""")


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("resumed_from_run_id", sa.String(36), nullable=True))

    with op.batch_alter_table("component_runs") as batch:
        batch.add_column(sa.Column("cache_version", sa.Integer(), nullable=True))

    with op.batch_alter_table("component_rollups") as batch:
        batch.add_column(sa.Column("cache_miss_reasons", sa.JSON(), nullable=True))

    op.create_table(
        "artifact_index",
        sa.Column("platform_id", sa.String(255), nullable=False),
        sa.Column("video_id", sa.String(255), nullable=False),
        sa.Column("config_hash", sa.String(64), nullable=False),
        sa.Column("sampling_policy_version", sa.String(255), nullable=False),
        sa.Column("pipeline_version", sa.String(255), nullable=False),
        sa.Column("latest_success_run_id", sa.String(36), nullable=False),
        sa.Column("finished_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("platform_id", "video_id", "config_hash",
                                "sampling_policy_version", "pipeline_version",
                                name="pk_artifact_index"),
        sa.ForeignKeyConstraint(["latest_success_run_id"], ["runs.run_id"],
                                ondelete="CASCADE",
                                name="fk_artifact_index_latest_success_run_id_runs"),
    )
    op.create_index("ix_artifact_index_latest_success_run_id", "artifact_index",
                    ["latest_success_run_id"])
    op.execute(_BACKFILL)


def downgrade() -> None:
    op.drop_index("ix_artifact_index_latest_success_run_id", table_name="artifact_index")
    op.drop_table("artifact_index")

    with op.batch_alter_table("component_rollups") as batch:
        batch.drop_column("cache_miss_reasons")

    with op.batch_alter_table("component_runs") as batch:
        batch.drop_column("cache_version")

    with op.batch_alter_table("runs") as batch:
        batch.drop_column("resumed_from_run_id")
