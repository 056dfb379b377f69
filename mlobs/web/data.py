"""The admin views' reads of the warehouse: one read-only engine, keyset-paginated runs,
one run, components, model signatures, drift checks and gate results.

Every query is bounded: lists are keyset-paginated on (started_at, run_id) or limited,
never counted with ``COUNT(*)`` over a table, and filters use indexed columns; the
per-component statistics read the rollups plus a recent window of invocations. The
engine is read-only at the connection: SQLite opens the file with ``mode=ro``, PostgreSQL
sessions start with ``default_transaction_read_only``.
"""

from __future__ import annotations

import base64
import bisect
import dataclasses
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from mlobs.core.errors import ConfigError
from mlobs.warehouse.models import (
    ComponentRollup,
    ComponentRun,
    DriftCheck,
    Event,
    GateResult,
    ModelSignature,
    Run,
    RunLabel,
)

RUNS = Run.__table__
COMPONENT_RUNS = ComponentRun.__table__
EVENTS = Event.__table__
LABELS = RunLabel.__table__
SIGNATURES = ModelSignature.__table__
ROLLUPS = ComponentRollup.__table__
DRIFT = DriftCheck.__table__
GATES = GateResult.__table__

PAGE_SIZE = 50
#: the runs list's filters: query parameter → runs column (each one indexed or bounded
#: by the started_at order).
RUN_FILTERS = {"status": "status", "platform": "platform_id", "video": "video_id",
               "profile": "profile", "version": "pipeline_version"}
#: the invocations the component page aggregates itself: the most recent window.
RECENT = timedelta(days=7)
#: rollup rows of a component's chart (the newest ones).
SERIES_ROWS = 2000


def readonly_engine(db_url: str) -> Engine:
    """An engine on the warehouse that cannot write.

    Raises:
        ConfigError: a URL of another database kind (SQLite and PostgreSQL only).
    """
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        path = url.database or ""
        if path in ("", ":memory:"):
            raise ConfigError("the admin views need a warehouse file, not an in-memory one")
        # sqlite3 opens file: URIs with uri=true; mode=ro refuses every write
        return sa.create_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    if url.get_backend_name() == "postgresql":
        return sa.create_engine(url, pool_pre_ping=True, connect_args={
            "options": "-c default_transaction_read_only=on"})
    raise ConfigError(f"unsupported warehouse URL for the admin views: {url.drivername}")


# -- runs -----------------------------------------------------------------------------

@dataclass(frozen=True)
class RunQuery:
    """The runs list's filters (all optional) and its position.

    ``filters`` maps a :data:`RUN_FILTERS` key to a value; ``since``/``until`` bound
    started_at (UTC); ``run_prefix`` is a run_id prefix; ``after`` is the cursor of the
    page's last row (:func:`encode_cursor`)."""

    filters: dict[str, str] = field(default_factory=dict)
    since: datetime | None = None
    until: datetime | None = None
    run_prefix: str | None = None
    after: tuple[datetime, str] | None = None
    limit: int = PAGE_SIZE


def encode_cursor(started_at: datetime, run_id: str) -> str:
    """An opaque, URL-safe cursor for (started_at, run_id)."""
    raw = json.dumps([as_utc(started_at).isoformat(), run_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Raises ConfigError: not a cursor this module made."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        started, run_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        return datetime.fromisoformat(started), str(run_id)
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"not a page cursor: {cursor[:40]!r}") from exc


def as_utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC datetime (naive means UTC)."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None \
        else moment.astimezone(timezone.utc)


def list_runs(engine: Engine, query: RunQuery) -> tuple[list[dict[str, Any]], str | None]:
    """Runs newest first: (rows, cursor of the next page or None).

    One query with ``LIMIT limit + 1`` ordered by (started_at, run_id) descending; the
    extra row only says whether another page exists."""
    c = RUNS.c
    conditions = [c[RUN_FILTERS[key]] == value for key, value in query.filters.items()]
    if query.since is not None:
        conditions.append(c.started_at >= as_utc(query.since))
    if query.until is not None:
        conditions.append(c.started_at < as_utc(query.until))
    if query.run_prefix:
        # a prefix range, which an index on the primary key answers (LIKE may not)
        conditions.append(sa.and_(c.run_id >= query.run_prefix,
                                  c.run_id < query.run_prefix + "\uffff"))
    if query.after is not None:
        started, run_id = query.after
        started = as_utc(started)
        conditions.append(sa.or_(c.started_at < started,
                                 sa.and_(c.started_at == started, c.run_id < run_id)))
    statement = (sa.select(c.run_id, c.platform_id, c.video_id, c.profile,
                           c.pipeline_version, c.status, c.started_at, c.duration_ms,
                           c.error_code, c.resumed_from_run_id)
                 .where(*conditions).order_by(c.started_at.desc(), c.run_id.desc())
                 .limit(query.limit + 1))
    with engine.connect() as conn:
        rows = [dict(row._mapping) for row in conn.execute(statement)]
    more = len(rows) > query.limit
    rows = rows[:query.limit]
    cursor = encode_cursor(rows[-1]["started_at"], rows[-1]["run_id"]) if more else None
    return rows, cursor


def filter_values(engine: Engine, column: str, limit: int = 50) -> list[str]:
    """Distinct values of a runs filter column for its drop-down, from the newest 5,000
    runs (bounded work; a value only older runs have can still be typed)."""
    c = RUNS.c
    newest = (sa.select(c[column]).order_by(c.started_at.desc()).limit(5000)
              .subquery())
    statement = (sa.select(newest.c[column]).where(newest.c[column].is_not(None))
                 .distinct().order_by(newest.c[column]).limit(limit))
    with engine.connect() as conn:
        return [row[0] for row in conn.execute(statement)]


def get_run(engine: Engine, run_id: str) -> dict[str, Any] | None:
    """One run with its components (started_at order), events, labels and the models
    behind its signatures; None when no such run."""
    with engine.connect() as conn:
        run = conn.execute(sa.select(RUNS).where(RUNS.c.run_id == run_id)).first()
        if run is None:
            return None
        result = dict(run._mapping)
        components = [dict(r._mapping) for r in conn.execute(
            sa.select(COMPONENT_RUNS).where(COMPONENT_RUNS.c.run_id == run_id)
            .order_by(COMPONENT_RUNS.c.started_at, COMPONENT_RUNS.c.attempt))]
        events = [dict(r._mapping) for r in conn.execute(
            sa.select(EVENTS).where(EVENTS.c.run_id == run_id)
            .order_by(EVENTS.c.occurred_at, EVENTS.c.seq))]
        labels = {r.key: r.value for r in conn.execute(
            sa.select(LABELS.c.key, LABELS.c.value).where(LABELS.c.run_id == run_id))}
        signatures = {c["model_signature"] for c in components if c["model_signature"]}
        models = {r.model_signature: r.models for r in conn.execute(
            sa.select(SIGNATURES.c.model_signature, SIGNATURES.c.models)
            .where(SIGNATURES.c.model_signature.in_(signatures)))} if signatures else {}
    result.update(components=components, events=events, labels=labels, models=models)
    return result


def runs_with_prefix(engine: Engine, prefix: str, limit: int = 10) -> list[str]:
    """Run ids starting with ``prefix`` (at most ``limit``)."""
    c = RUNS.c
    statement = (sa.select(c.run_id).where(c.run_id >= prefix, c.run_id < prefix + "\uffff")
                 .order_by(c.run_id).limit(limit))
    with engine.connect() as conn:
        return [row[0] for row in conn.execute(statement)]


# -- components -----------------------------------------------------------------------

def list_components(engine: Engine, db_url: str) -> tuple[list[dict[str, Any]], bool]:
    """Per component × model_signature: invocations, p95, rates. Returns (rows, stored):
    the "all" rollup ``mlobs rollup`` last wrote (stored True), or, before any, one
    computed now with DuckDB from every invocation (stored False; right after
    ``make demo``)."""
    rows = _stored_components(engine)
    if rows:
        return rows, True
    from mlobs.analysis.rollup import compute_rollup  # DuckDB: only when needed

    return [dataclasses.asdict(row) for row in compute_rollup(db_url)], False


def _stored_components(engine: Engine) -> list[dict[str, Any]]:
    r = ROLLUPS.c
    statement = (sa.select(r.component, r.model_signature, r.pipeline_version, r.profile,
                           r.device_kind, r.invocations, r.runs, r.p50_duration_ms,
                           r.p95_duration_ms, r.error_rate, r.empty_rate, r.cache_hit_rate,
                           r.p95_peak_rss_bytes, r.items_per_s, r.computed_at)
                 .where(r.bucket_width == "all").order_by(r.component, r.model_signature))
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(statement)]


def component_detail(engine: Engine, component: str,
                     now: datetime | None = None) -> dict[str, Any]:
    """One component: its rollup rows over time (the finest stored bucket width), and
    over the recent window (:data:`RECENT`) its status mix, error codes, empty reasons
    and memory peaks per model_signature."""
    r, c = ROLLUPS.c, COMPONENT_RUNS.c
    since = as_utc((now or datetime.now(timezone.utc)) - RECENT)
    recent = sa.and_(c.component == component, c.started_at >= since)
    with engine.connect() as conn:
        widths = {row[0] for row in conn.execute(
            sa.select(r.bucket_width).where(r.component == component).distinct())}
        width = next((w for w in ("hour", "day", "minute") if w in widths), None)
        # the newest buckets, oldest first
        series = [] if width is None else [dict(row._mapping) for row in conn.execute(
            sa.select(r.bucket_start, r.model_signature, r.invocations, r.p50_duration_ms,
                      r.p95_duration_ms, r.p99_duration_ms, r.items_per_s)
            .where(r.component == component, r.bucket_width == width)
            .order_by(r.bucket_start.desc()).limit(SERIES_ROWS))][::-1]

        def grouped(column: Any, *where: Any) -> list[dict[str, Any]]:
            statement = (sa.select(column.label("value"), sa.func.count().label("n"))
                         .where(recent, *where).group_by(column)
                         .order_by(sa.func.count().desc()).limit(50))
            return [dict(row._mapping) for row in conn.execute(statement)]

        statuses = grouped(c.status)
        errors = grouped(c.error_code, c.status == "error")
        empty = grouped(c.empty_reason, c.status == "empty")
        memory = [dict(row._mapping) for row in conn.execute(
            sa.select(c.model_signature, sa.func.count().label("invocations"),
                      sa.func.max(c.peak_rss_bytes).label("max_peak_rss_bytes"),
                      sa.func.max(c.peak_gpu_allocated_bytes)
                      .label("max_peak_gpu_allocated_bytes"),
                      # float: PostgreSQL sums a bigint as numeric (a Decimal)
                      sa.cast(sa.func.sum(c["items"]), sa.Float).label("items"),
                      sa.cast(sa.func.sum(c.duration_ms), sa.Float).label("duration_ms"))
            .where(recent).group_by(c.model_signature))]
    return {"component": component, "bucket_width": width, "series": series,
            "statuses": statuses, "error_codes": errors, "empty_reasons": empty,
            "memory": memory, "recent_days": RECENT.days}


# -- model signatures -----------------------------------------------------------------

def list_signatures(engine: Engine, limit: int = 500) -> list[dict[str, Any]]:
    """Model signatures newest first, with their models."""
    s = SIGNATURES.c
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(
            sa.select(s.model_signature, s.models, s.first_seen_at)
            .order_by(s.first_seen_at.desc()).limit(limit))]


def signature_detail(engine: Engine, signature: str) -> dict[str, Any] | None:
    """One signature: its models, and per component that used it the invocations, first
    and last use (through the (component, model_signature) index)."""
    s, c, r = SIGNATURES.c, COMPONENT_RUNS.c, ROLLUPS.c
    with engine.connect() as conn:
        row = conn.execute(sa.select(SIGNATURES).where(s.model_signature == signature)).first()
        if row is None:
            return None
        # the rollups know which components used it; before any rollup, the raw rows
        components = [x[0] for x in conn.execute(
            sa.select(r.component).distinct().where(r.model_signature == signature))] or \
            [x[0] for x in conn.execute(sa.select(c.component).distinct()
                                        .where(c.model_signature == signature).limit(100))]
        usage = []
        for component in sorted(components):
            used = conn.execute(
                sa.select(sa.func.count(), sa.func.min(c.started_at), sa.func.max(c.started_at))
                .where(c.component == component, c.model_signature == signature)).one()
            usage.append({"component": component, "invocations": used[0],
                          "first_used": used[1], "last_used": used[2]})
    return {**dict(row._mapping), "usage": usage}


# -- drift and gates ------------------------------------------------------------------

def latest_drift(engine: Engine, limit: int = 200) -> list[dict[str, Any]]:
    d = DRIFT.c
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(
            sa.select(DRIFT).order_by(d.checked_at.desc(), d.id.desc()).limit(limit))]


def drift_check(engine: Engine, check_id: int) -> dict[str, Any] | None:
    """One stored drift check, with the two samples it compared when it is a
    distribution (``samples``: side → values; empty for a rate)."""
    # imported here: drift's statistics load scipy, which the other pages never need
    from mlobs.analysis.drift import stored_window, window_samples

    with engine.connect() as conn:
        row = conn.execute(sa.select(DRIFT).where(DRIFT.c.id == check_id)).first()
        if row is None:
            return None
        check = dict(row._mapping)
        samples = {}
        if check["stratum"] != "all":  # the rates are over all invocations: no sample
            for side in ("baseline", "current"):
                found = window_samples(conn, stored_window(check[f"{side}_window"]),
                                       check["component"], check["model_signature"])
                samples[side] = found.get((check["stratum"], check["metric"]), [])
    return {**check, "samples": samples}


def ecdf(samples: dict[str, list[float]], points: int = 400) -> dict[str, Any]:
    """Empirical CDFs of the sides on shared x values (at most ``points`` quantiles of the
    pooled values): ``{"x": [...], "series": {side: [F(x)...]}}`` for the chart."""
    pooled = sorted(v for values in samples.values() for v in values)
    if not pooled:
        return {"x": [], "series": {}}
    step = max(1, len(pooled) // points)
    xs = sorted(set(pooled[::step] + [pooled[-1]]))
    series = {}
    for side, values in samples.items():
        ordered = sorted(values)
        series[side] = [bisect.bisect_right(ordered, x) / len(ordered) if ordered else None
                        for x in xs]
    return {"x": xs, "series": series}


def latest_gates(engine: Engine, limit: int = 200) -> list[dict[str, Any]]:
    g = GATES.c
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(
            sa.select(GATES).order_by(g.checked_at.desc(), g.id.desc()).limit(limit))]
