"""Warehouse tables as SQLAlchemy 2 typed models (ARCHITECTURE §4 and §6).

Tables (plural snake_case; column names are the field names of ``mlobs.core.records``):

* ``runs``               one row per :class:`~mlobs.core.records.RunRecord`
* ``component_runs``     one row per :class:`~mlobs.core.records.ComponentRecord`
* ``model_signatures``   one row per distinct ``model_signature``: the ``models_used``
                         list it stands for (so component rows do not repeat it)
* ``events``             one row per :class:`~mlobs.core.records.EventRecord`
* ``run_labels``         one row per label of a run (``RunRecord.labels``; revision 0008)
* ``component_rollups``  written by the DuckDB rollup job (ARCHITECTURE §7)
* ``artifact_index``     per (platform_id, video_id, config_hash, sampling_policy_version,
                         pipeline_version): the latest successful run (revision 0003)

Constraint and index names come from :data:`NAMING_CONVENTION`, so the hand-written
Alembic migrations can name them identically (autogenerate comparison stays empty).
The migrations never import this module; a schema change means editing both.

Timestamps are stored as ``DateTime(timezone=True)`` through :class:`UtcDateTime`,
which refuses naive datetimes and always hands back timezone-aware UTC values (SQLite
keeps no offset, PostgreSQL answers in the session time zone).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    FetchedValue,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from mlobs.core.limits import (
    CODE_MAX_CHARS,
    LABEL_KEY_MAX_CHARS,
    LABEL_VALUE_MAX_CHARS,
    NAME_MAX_CHARS,
)
from mlobs.core.records import PREDICTION_STATUSES, RUN_STATUSES, STATUSES

#: Constraint/index names (SQLAlchemy naming convention tokens). Kept short enough for
#: PostgreSQL's 63-character identifier limit with the current tables.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: String lengths shared by the models and the store's record validation.
ID_LEN = 36          # UUIDs: run_id, component_run_id, event_id
HASH_LEN = 64        # SHA-256 hex: config_hash, model_signature
NAME_LEN = NAME_MAX_CHARS   # identifiers and versions
CODE_LEN = CODE_MAX_CHARS   # vocabulary words: error_code, empty_reason, kind, ...
STATUS_LEN = 16
LABEL_KEY_LEN = LABEL_KEY_MAX_CHARS       # run_labels.key
LABEL_VALUE_LEN = LABEL_VALUE_MAX_CHARS   # run_labels.value

#: component_rollups.bucket_width vocabulary (``minute`` since revision 0007).
BUCKET_WIDTHS = ("all", "minute", "hour", "day")


class UtcDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that only accepts and returns aware UTC datetimes.

    Bind: an aware datetime is converted to UTC; a naive one raises ``ValueError``
    (mlobs records are timezone-aware by contract, ARCHITECTURE §4).
    Result: naive values (SQLite) are taken as UTC; aware ones are converted to UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: mlobs stores timezone-aware UTC")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None,
                             dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    """Declarative base of the warehouse tables (shared naming convention)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Run(Base):
    """One pipeline run over one video (``mlobs.core.records.RunRecord``)."""

    __tablename__ = "runs"
    __table_args__ = (
        CheckConstraint(_in("status", RUN_STATUSES), name="status"),
        Index("ix_runs_started_at", "started_at"),
        Index("ix_runs_platform_id_video_id", "platform_id", "video_id"),
        Index("ix_runs_status_started_at", "status", "started_at", "run_id"),
    )

    run_id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    platform_id: Mapped[str] = mapped_column(String(NAME_LEN))
    video_id: Mapped[str] = mapped_column(String(NAME_LEN))
    profile: Mapped[str | None] = mapped_column(String(NAME_LEN))
    pipeline_version: Mapped[str | None] = mapped_column(String(NAME_LEN))
    config_hash: Mapped[str | None] = mapped_column(String(HASH_LEN))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    sampling_policy_version: Mapped[str | None] = mapped_column(String(NAME_LEN))
    status: Mapped[str] = mapped_column(String(STATUS_LEN))
    warnings: Mapped[list[Any]] = mapped_column(JSON)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    duration_ms: Mapped[float | None] = mapped_column(Float)
    environment: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: component → ["model:version", ...] as actually used.
    resolved_models: Mapped[dict[str, Any]] = mapped_column(JSON)
    error_code: Mapped[str | None] = mapped_column(String(CODE_LEN))
    error_message: Mapped[str | None] = mapped_column(Text)
    # Added by revision 0003. No foreign key: the earlier run may be ingested later.
    resumed_from_run_id: Mapped[str | None] = mapped_column(String(ID_LEN))
    # Added by revision 0005: when the run's process last said it was alive.
    heartbeat_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class ModelSignature(Base):
    """The ``models_used`` list a ``model_signature`` stands for.

    ``models`` holds ``ModelRef.to_dict()`` entries as first written; the signature
    ignores the device index, so a component whose own list differs (``cuda:1`` instead
    of ``cuda:0``, another order) keeps its exact list in
    ``component_runs.models_used_override``.
    """

    __tablename__ = "model_signatures"

    model_signature: Mapped[str] = mapped_column(String(HASH_LEN), primary_key=True)
    models: Mapped[list[Any]] = mapped_column(JSON)
    first_seen_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ComponentRun(Base):
    """One component invocation (``mlobs.core.records.ComponentRecord`` minus events)."""

    __tablename__ = "component_runs"
    __table_args__ = (
        # Identity is component_run_id alone (revision 0004): a run fanned out over
        # workers has several invocations of one component with the same attempt.
        CheckConstraint(_in("status", STATUSES), name="status"),
        # NULL passes (no fallback chain): a CHECK only refuses rows where it is false.
        CheckConstraint(_in("prediction_status", PREDICTION_STATUSES),
                        name="prediction_status"),
        Index("ix_component_runs_component_model_signature", "component", "model_signature"),
        Index("ix_component_runs_started_at", "started_at"),
        Index("ix_component_runs_run_id_component", "run_id", "component"),
        Index("ix_component_runs_ingested_at", "ingested_at"),
        Index("ix_component_runs_component_started_at", "component", "started_at", "status",
              "error_code", "empty_reason"),
    )

    component_run_id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    run_id: Mapped[str] = mapped_column(
        String(ID_LEN), ForeignKey("runs.run_id", ondelete="CASCADE"))
    component: Mapped[str] = mapped_column(String(NAME_LEN))
    attempt: Mapped[int] = mapped_column(Integer)
    required: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(String(STATUS_LEN))
    empty_reason: Mapped[str | None] = mapped_column(String(CODE_LEN))
    error_code: Mapped[str | None] = mapped_column(String(CODE_LEN))
    error_type: Mapped[str | None] = mapped_column(String(NAME_LEN))
    error_message: Mapped[str | None] = mapped_column(Text)
    warnings: Mapped[list[Any]] = mapped_column(JSON)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime] = mapped_column(UtcDateTime)
    duration_ms: Mapped[float] = mapped_column(Float)
    producer_version: Mapped[str | None] = mapped_column(String(NAME_LEN))
    schema_version: Mapped[str | None] = mapped_column(String(NAME_LEN))
    device_used: Mapped[str | None] = mapped_column(String(CODE_LEN))
    batch_size: Mapped[int | None] = mapped_column(Integer)
    batch_size_requested: Mapped[int | None] = mapped_column(Integer)
    # A reference without a foreign key: the signature row is written in the same
    # transaction, and rollups join on it without needing the constraint.
    model_signature: Mapped[str | None] = mapped_column(String(HASH_LEN))
    #: NULL when models_used equals the model_signatures row's list exactly; otherwise
    #: this component's own list (see :class:`ModelSignature`).
    models_used_override: Mapped[list[Any] | None] = mapped_column(JSON(none_as_null=True))
    cache_status: Mapped[str | None] = mapped_column(String(STATUS_LEN))
    cache_key: Mapped[str | None] = mapped_column(String(NAME_LEN))
    cache_miss_reason: Mapped[str | None] = mapped_column(String(NAME_LEN))
    #: version of the cached result loaded (hit) or written (miss, bypass); revision 0003.
    cache_version: Mapped[int | None] = mapped_column(Integer)
    peak_rss_bytes: Mapped[int | None] = mapped_column(BigInteger)
    peak_gpu_allocated_bytes: Mapped[int | None] = mapped_column(BigInteger)
    peak_gpu_reserved_bytes: Mapped[int | None] = mapped_column(BigInteger)
    oom_count: Mapped[int] = mapped_column(Integer)
    retry_count: Mapped[int] = mapped_column(Integer)
    prediction_status: Mapped[str | None] = mapped_column(String(STATUS_LEN))
    items: Mapped[int | None] = mapped_column(BigInteger)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: When the warehouse stored the row, by the database's clock (revision 0007; NULL in
    #: rows stored before it). Filled by the database, never by a record: the store's
    #: insert sets it, and on PostgreSQL it is the column's default, which COPY uses.
    #: Incremental rollups follow it (mlobs.analysis.incremental).
    ingested_at: Mapped[datetime | None] = mapped_column(UtcDateTime,
                                                         server_default=FetchedValue())
    # Added by revision 0011 (NULL in rows stored before it, and without memory probes).
    error_traceback: Mapped[str | None] = mapped_column(Text)
    rss_at_start_bytes: Mapped[int | None] = mapped_column(BigInteger)
    peak_rss_increase_bytes: Mapped[int | None] = mapped_column(BigInteger)
    gpu_allocated_at_start_bytes: Mapped[int | None] = mapped_column(BigInteger)
    peak_gpu_allocated_increase_bytes: Mapped[int | None] = mapped_column(BigInteger)


class Event(Base):
    """Something that happened inside a component (``mlobs.core.records.EventRecord``)."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_run_id", "run_id"),
        Index("ix_events_component_run_id", "component_run_id"),
    )

    event_id: Mapped[str] = mapped_column(String(ID_LEN), primary_key=True)
    run_id: Mapped[str] = mapped_column(
        String(ID_LEN), ForeignKey("runs.run_id", ondelete="CASCADE"))
    component_run_id: Mapped[str | None] = mapped_column(
        String(ID_LEN), ForeignKey("component_runs.component_run_id", ondelete="CASCADE"))
    #: position in its component's ``events`` list, so equal timestamps keep their order.
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(CODE_LEN))
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON)


class RunLabel(Base):
    """One label of a run (``RunRecord.labels``, :mod:`mlobs.core.labels`; revision 0008).

    The store replaces a run's labels whenever it writes the run's record (they are fixed
    when the run opens, so every record of a run carries the same). Run sets are selected
    by (key, value): index ``ix_run_labels_key_value``.
    """

    __tablename__ = "run_labels"
    __table_args__ = (
        Index("ix_run_labels_key_value", "key", "value"),
    )

    run_id: Mapped[str] = mapped_column(
        String(ID_LEN), ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(LABEL_KEY_LEN), primary_key=True)
    value: Mapped[str] = mapped_column(String(LABEL_VALUE_LEN))


class ComponentRollup(Base):
    """Per component × model_signature × pipeline_version × profile × device kind × time
    bucket aggregates (DuckDB rollup job).

    ``bucket_width`` is ``'all'`` (``bucket_start`` NULL), ``'minute'``, ``'hour'`` or
    ``'day'``;
    rates are fractions in [0, 1]; durations in milliseconds; memory peaks in bytes.
    Definitions: :mod:`mlobs.analysis.rollup`.
    """

    __tablename__ = "component_rollups"
    __table_args__ = (
        CheckConstraint(_in("bucket_width", BUCKET_WIDTHS), name="bucket_width"),
        Index("ix_component_rollups_bucket_width_component", "bucket_width", "component"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    computed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    bucket_width: Mapped[str] = mapped_column(String(STATUS_LEN))
    bucket_start: Mapped[datetime | None] = mapped_column(UtcDateTime)
    component: Mapped[str] = mapped_column(String(NAME_LEN))
    model_signature: Mapped[str | None] = mapped_column(String(HASH_LEN))
    invocations: Mapped[int] = mapped_column(Integer)
    runs: Mapped[int] = mapped_column(Integer)
    p50_duration_ms: Mapped[float] = mapped_column(Float)
    p95_duration_ms: Mapped[float] = mapped_column(Float)
    p99_duration_ms: Mapped[float] = mapped_column(Float)
    error_rate: Mapped[float] = mapped_column(Float)
    empty_rate: Mapped[float] = mapped_column(Float)
    cache_hit_rate: Mapped[float | None] = mapped_column(Float)
    p95_peak_rss_bytes: Mapped[float | None] = mapped_column(Float)
    # Added by revision 0002. oom_rate, mean_ooms_per_run and retries are NULL only in
    # rows computed before it (the migration invents no values for them).
    oom_rate: Mapped[float | None] = mapped_column(Float)
    mean_ooms_per_run: Mapped[float | None] = mapped_column(Float)
    retries: Mapped[int | None] = mapped_column(Integer)
    p95_peak_gpu_allocated_bytes: Mapped[float | None] = mapped_column(Float)
    p95_peak_gpu_reserved_bytes: Mapped[float | None] = mapped_column(Float)
    degraded_rate: Mapped[float | None] = mapped_column(Float)
    # Added by revision 0003: {cache_miss_reason: count} over the group's misses; NULL in
    # rows computed before it.
    cache_miss_reasons: Mapped[dict[str, int] | None] = mapped_column(
        JSON(none_as_null=True))
    # Added by revision 0007: the dimensions (NULL in the rows computed before it, which
    # the first rollup after it replaces) and the measures below.
    pipeline_version: Mapped[str | None] = mapped_column(String(NAME_LEN))
    profile: Mapped[str | None] = mapped_column(String(NAME_LEN))
    device_kind: Mapped[str | None] = mapped_column(String(CODE_LEN))
    items: Mapped[int | None] = mapped_column(BigInteger)
    items_per_s: Mapped[float | None] = mapped_column(Float)
    p50_hit_duration_ms: Mapped[float | None] = mapped_column(Float)
    p95_hit_duration_ms: Mapped[float | None] = mapped_column(Float)
    p50_miss_duration_ms: Mapped[float | None] = mapped_column(Float)
    p95_miss_duration_ms: Mapped[float | None] = mapped_column(Float)
    #: {metric name: {"count", "mean", "p50", "p95"}} over the user metrics.
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    # Added by revision 0011: what the components themselves added to the peaks.
    p95_peak_rss_increase_bytes: Mapped[float | None] = mapped_column(Float)
    p95_peak_gpu_allocated_increase_bytes: Mapped[float | None] = mapped_column(Float)


#: rollup_watermarks.bucket_width of the row that says when runs were last deleted.
DELETION_MARK = "(deletion)"


class RollupWatermark(Base):
    """Per bucket width, the ingestion time up to which the stored rollup rows are
    complete (revision 0007): the database clock when the last full or incremental rollup
    of that width started reading. Deleting runs deletes these rows, so the next rollup
    is a full one, and leaves one row :data:`DELETION_MARK` (the database clock of the
    deletion), so that a rollup running meanwhile does not move its watermark. Maintained
    by :mod:`mlobs.analysis.incremental`.
    """

    __tablename__ = "rollup_watermarks"

    bucket_width: Mapped[str] = mapped_column(String(STATUS_LEN), primary_key=True)
    ingested_through: Mapped[datetime] = mapped_column(UtcDateTime)
    computed_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ArtifactIndex(Base):
    """The latest successful run per video and pipeline key (orchestration notes §5).

    Key: (platform_id, video_id, config_hash, sampling_policy_version, pipeline_version),
    the composite primary key. The last three may be None in a run record; they are
    stored as ``''`` (:data:`UNSET`), because a primary key cannot hold NULL, a UNIQUE
    constraint treats NULLs as distinct on SQLite, and the store's ``ON CONFLICT``
    upsert needs one conflict target that works on SQLite and PostgreSQL alike. None and
    ``''`` are therefore the same key. Use :func:`index_key` to build one.

    Maintained by :meth:`mlobs.warehouse.store.WarehouseStore.write` in the same
    transaction as the runs: a run with status ``ok`` and a ``finished_at`` moves its
    key's row when it finished later than the stored run (ties: the greater run_id), so
    replaying older runs never moves it backwards. ``updated_at`` is when the row last
    changed (wall clock of the writer). Read by :func:`mlobs.warehouse.reuse.reusable_run`.
    """

    __tablename__ = "artifact_index"
    __table_args__ = (
        Index("ix_artifact_index_latest_success_run_id", "latest_success_run_id"),
    )

    platform_id: Mapped[str] = mapped_column(String(NAME_LEN), primary_key=True)
    video_id: Mapped[str] = mapped_column(String(NAME_LEN), primary_key=True)
    config_hash: Mapped[str] = mapped_column(String(HASH_LEN), primary_key=True)
    sampling_policy_version: Mapped[str] = mapped_column(String(NAME_LEN), primary_key=True)
    pipeline_version: Mapped[str] = mapped_column(String(NAME_LEN), primary_key=True)
    #: the run deleted, its index row goes too (the next lookup recomputes).
    latest_success_run_id: Mapped[str] = mapped_column(
        String(ID_LEN), ForeignKey("runs.run_id", ondelete="CASCADE"))
    finished_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


#: How artifact_index stores a None key part.
UNSET = ""


def index_key(platform_id: str, video_id: str, config_hash: str | None,
              sampling_policy_version: str | None,
              pipeline_version: str | None) -> dict[str, str]:
    """The ``artifact_index`` primary key of these parts (None stored as :data:`UNSET`)."""
    return {"platform_id": platform_id, "video_id": video_id,
            "config_hash": UNSET if config_hash is None else config_hash,
            "sampling_policy_version": (UNSET if sampling_policy_version is None
                                        else sampling_policy_version),
            "pipeline_version": UNSET if pipeline_version is None else pipeline_version}


#: drift_checks.verdict values (mlobs.analysis.drift).
DRIFT_VERDICTS = ("drift", "no_drift", "insufficient_data")
#: gate_results.verdict and .kind values (mlobs.analysis.gate).
GATE_VERDICTS = ("pass", "regression", "unknown", "breach")
GATE_KINDS = ("comparison", "budget", "figure")


class DriftCheck(Base):
    """One drift check of one metric: a baseline window against a current window, per
    component × model_signature × stratum (``cache_hit`` / ``computed``; ``all`` for
    rates). Written by ``mlobs drift`` (revision 0006); definitions:
    :mod:`mlobs.analysis.drift`.
    """

    __tablename__ = "drift_checks"
    __table_args__ = (
        CheckConstraint(_in("verdict", DRIFT_VERDICTS), name="verdict"),
        Index("ix_drift_checks_component_checked_at", "component", "checked_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    checked_at: Mapped[datetime] = mapped_column(UtcDateTime)
    component: Mapped[str] = mapped_column(String(NAME_LEN))
    model_signature: Mapped[str | None] = mapped_column(String(HASH_LEN))
    stratum: Mapped[str] = mapped_column(String(STATUS_LEN))
    #: ``duration_ms``, ``peak_rss_bytes``, ``items_per_s``, ``metric:<name>`` (a name of
    #: up to 255 characters after the 7 of the prefix), ``error_rate``, ...
    metric: Mapped[str] = mapped_column(String(NAME_LEN + len("metric:")))
    baseline_window: Mapped[str] = mapped_column(Text)
    current_window: Mapped[str] = mapped_column(Text)
    n_baseline: Mapped[int] = mapped_column(Integer)
    n_current: Mapped[int] = mapped_column(Integer)
    #: p95 of the sample (distributions) or the rate (rates), each side.
    baseline_value: Mapped[float | None] = mapped_column(Float)
    current_value: Mapped[float | None] = mapped_column(Float)
    #: the KS distance D (distributions) or the rate change (rates).
    statistic: Mapped[float | None] = mapped_column(Float)
    p_value: Mapped[float | None] = mapped_column(Float)
    adjusted_p: Mapped[float | None] = mapped_column(Float)
    #: relative change (p95 or median, the larger) or absolute rate change.
    effect: Mapped[float | None] = mapped_column(Float)
    effect_low: Mapped[float | None] = mapped_column(Float)
    effect_high: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    wasserstein: Mapped[float | None] = mapped_column(Float)
    psi: Mapped[float | None] = mapped_column(Float)
    verdict: Mapped[str] = mapped_column(String(CODE_LEN))



class GateResult(Base):
    """One check of one release gate (``mlobs gate``, revision 0009): a comparison of a
    candidate run set with a baseline run set, a budget or a benchmark figure, per
    component × model_signature; definitions: :mod:`mlobs.analysis.gate`.
    """

    __tablename__ = "gate_results"
    __table_args__ = (
        CheckConstraint(_in("verdict", GATE_VERDICTS), name="verdict"),
        CheckConstraint(_in("kind", GATE_KINDS), name="kind"),
        Index("ix_gate_results_component_checked_at", "component", "checked_at"),
        Index("ix_gate_results_gate_id", "gate_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    #: one gate call's checks share it (a UUID).
    gate_id: Mapped[str] = mapped_column(String(36))
    checked_at: Mapped[datetime] = mapped_column(UtcDateTime)
    #: ``warehouse`` or ``pytest-benchmark``.
    source: Mapped[str] = mapped_column(String(CODE_LEN))
    #: how each side was selected (one line; empty baseline: budgets only).
    baseline: Mapped[str] = mapped_column(Text)
    candidate: Mapped[str] = mapped_column(Text)
    component: Mapped[str] = mapped_column(String(NAME_LEN))
    model_signature: Mapped[str | None] = mapped_column(String(HASH_LEN))
    kind: Mapped[str] = mapped_column(String(STATUS_LEN))
    #: the metric (``duration_ms``, ``error_rate``, ...), budget (``p95_duration_ms``)
    #: or figure name.
    check: Mapped[str] = mapped_column(String(NAME_LEN))
    stratum: Mapped[str | None] = mapped_column(String(STATUS_LEN))
    verdict: Mapped[str] = mapped_column(String(STATUS_LEN))
    n_baseline: Mapped[int] = mapped_column(Integer)
    n_candidate: Mapped[int] = mapped_column(Integer)
    baseline_value: Mapped[float | None] = mapped_column(Float)
    candidate_value: Mapped[float | None] = mapped_column(Float)
    #: candidate / baseline − 1 (comparisons; the rate's absolute change for error_rate)
    #: with its interval.
    change: Mapped[float | None] = mapped_column(Float)
    change_low: Mapped[float | None] = mapped_column(Float)
    change_high: Mapped[float | None] = mapped_column(Float)
    tolerance: Mapped[float | None] = mapped_column(Float)
    #: a budget's or figure's limit.
    limit_value: Mapped[float | None] = mapped_column(Float)
    p_value: Mapped[float | None] = mapped_column(Float)
    adjusted_p: Mapped[float | None] = mapped_column(Float)
    #: ``unknown``: about how many more runs a side would decide it.
    runs_needed: Mapped[int | None] = mapped_column(Integer)
    message: Mapped[str] = mapped_column(Text)


#: Every table the migrations create (Alembic's own version table excluded).
TABLE_NAMES: tuple[str, ...] = tuple(Base.metadata.tables)
