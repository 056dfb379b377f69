"""Initial warehouse schema: runs, component_runs, model_signatures, events, rollups.

Revision ID: 0001
Revises:
Create Date: 2026-05-09

Hand-written; mirrors mlobs/warehouse/models.py at this revision (same constraint and
index names, so an autogenerate comparison against the models is empty).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("platform_id", sa.String(255), nullable=False),
        sa.Column("video_id", sa.String(255), nullable=False),
        sa.Column("profile", sa.String(255), nullable=True),
        sa.Column("pipeline_version", sa.String(255), nullable=True),
        sa.Column("config_hash", sa.String(64), nullable=True),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("sampling_policy_version", sa.String(255), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("warnings", sa.JSON(), nullable=False),
        sa.Column("started_at", _TS, nullable=False),
        sa.Column("finished_at", _TS, nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=True),
        sa.Column("environment", sa.JSON(), nullable=False),
        sa.Column("resolved_models", sa.JSON(), nullable=False),
        sa.Column("error_code", sa.String(128), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("run_id", name="pk_runs"),
        sa.CheckConstraint("status IN ('running', 'ok', 'error')", name="ck_runs_status"),
    )
    op.create_index("ix_runs_started_at", "runs", ["started_at"])
    op.create_index("ix_runs_platform_id_video_id", "runs", ["platform_id", "video_id"])
    op.create_index("ix_runs_status", "runs", ["status"])

    op.create_table(
        "model_signatures",
        sa.Column("model_signature", sa.String(64), nullable=False),
        sa.Column("models", sa.JSON(), nullable=False),
        sa.Column("first_seen_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("model_signature", name="pk_model_signatures"),
    )

    op.create_table(
        "component_runs",
        sa.Column("component_run_id", sa.String(36), nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("component", sa.String(255), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("required", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("empty_reason", sa.String(128), nullable=True),
        sa.Column("error_code", sa.String(128), nullable=True),
        sa.Column("error_type", sa.String(255), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("warnings", sa.JSON(), nullable=False),
        sa.Column("started_at", _TS, nullable=False),
        sa.Column("finished_at", _TS, nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("producer_version", sa.String(255), nullable=True),
        sa.Column("schema_version", sa.String(255), nullable=True),
        sa.Column("device_used", sa.String(128), nullable=True),
        sa.Column("batch_size", sa.Integer(), nullable=True),
        sa.Column("model_signature", sa.String(64), nullable=True),
        sa.Column("models_used_override", sa.JSON(), nullable=True),
        sa.Column("cache_status", sa.String(16), nullable=True),
        sa.Column("cache_key", sa.String(255), nullable=True),
        sa.Column("cache_miss_reason", sa.String(255), nullable=True),
        sa.Column("peak_rss_bytes", sa.BigInteger(), nullable=True),
        sa.Column("peak_gpu_allocated_bytes", sa.BigInteger(), nullable=True),
        sa.Column("peak_gpu_reserved_bytes", sa.BigInteger(), nullable=True),
        sa.Column("oom_count", sa.Integer(), nullable=False),
        sa.Column("retry_count", sa.Integer(), nullable=False),
        sa.Column("items", sa.BigInteger(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("component_run_id", name="pk_component_runs"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.run_id"], ondelete="CASCADE",
                                name="fk_component_runs_run_id_runs"),
        sa.UniqueConstraint("run_id", "component", "attempt",
                            name="uq_component_runs_run_id_component_attempt"),
        sa.CheckConstraint("status IN ('ok', 'empty', 'error')",
                           name="ck_component_runs_status"),
    )
    op.create_index("ix_component_runs_component_model_signature", "component_runs",
                    ["component", "model_signature"])
    op.create_index("ix_component_runs_started_at", "component_runs", ["started_at"])

    op.create_table(
        "events",
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("component_run_id", sa.String(36), nullable=True),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(128), nullable=False),
        sa.Column("occurred_at", _TS, nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_events"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.run_id"], ondelete="CASCADE",
                                name="fk_events_run_id_runs"),
        sa.ForeignKeyConstraint(["component_run_id"], ["component_runs.component_run_id"],
                                ondelete="CASCADE",
                                name="fk_events_component_run_id_component_runs"),
    )
    op.create_index("ix_events_run_id", "events", ["run_id"])
    op.create_index("ix_events_component_run_id", "events", ["component_run_id"])

    op.create_table(
        "component_rollups",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("computed_at", _TS, nullable=False),
        sa.Column("bucket_width", sa.String(16), nullable=False),
        sa.Column("bucket_start", _TS, nullable=True),
        sa.Column("component", sa.String(255), nullable=False),
        sa.Column("model_signature", sa.String(64), nullable=True),
        sa.Column("invocations", sa.Integer(), nullable=False),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("p50_duration_ms", sa.Float(), nullable=False),
        sa.Column("p95_duration_ms", sa.Float(), nullable=False),
        sa.Column("p99_duration_ms", sa.Float(), nullable=False),
        sa.Column("error_rate", sa.Float(), nullable=False),
        sa.Column("empty_rate", sa.Float(), nullable=False),
        sa.Column("cache_hit_rate", sa.Float(), nullable=True),
        sa.Column("p95_peak_rss_bytes", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_component_rollups"),
        sa.CheckConstraint("bucket_width IN ('all', 'hour', 'day')",
                           name="ck_component_rollups_bucket_width"),
    )
    op.create_index("ix_component_rollups_bucket_width_component", "component_rollups",
                    ["bucket_width", "component"])


def downgrade() -> None:
    # Children before parents (foreign keys).
    op.drop_index("ix_component_rollups_bucket_width_component",
                  table_name="component_rollups")
    op.drop_table("component_rollups")
    op.drop_index("ix_events_component_run_id", table_name="events")
    op.drop_index("ix_events_run_id", table_name="events")
    op.drop_table("events")
    op.drop_index("ix_component_runs_started_at", table_name="component_runs")
    op.drop_index("ix_component_runs_component_model_signature", table_name="component_runs")
    op.drop_table("component_runs")
    op.drop_table("model_signatures")
    op.drop_index("ix_runs_status", table_name="runs")
    op.drop_index("ix_runs_platform_id_video_id", table_name="runs")
    op.drop_index("ix_runs_started_at", table_name="runs")
    op.drop_table("runs")
