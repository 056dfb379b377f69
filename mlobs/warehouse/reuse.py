"""Run-level reuse: return a fresh successful run of a video instead of recomputing it.

Rule (orchestration notes §5, "Artifact index", seeds 001): the warehouse keeps, per
(platform_id, video_id, config_hash, sampling_policy_version, pipeline_version), the
``latest_success_run_id`` (table ``artifact_index``). A repeated request for the same
video must take the age of the analysis into account: when the latest successful run
finished within ``cache_ttl_days`` (default 3 days, configurable) its results are used
as they are; otherwise the video is recomputed.

The model side of the cache is per component (``model_signature`` in the component
idempotency key, :mod:`mlobs.cache`); this module only answers the run-level question.

Example::

    cached = reusable_run(db_url, "youtube", video_id, config=config,
                          sampling_policy_version="sp-2", pipeline_version="1.4.0")
    if cached is None:
        ...  # run the pipeline
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from mlobs.core.checks import check_finite, check_word
from mlobs.core.errors import ConfigError
from mlobs.core.limits import NAME_MAX_CHARS
from mlobs.core.records import RunRecord
from mlobs.core.signature import config_hash as compute_config_hash
from mlobs.warehouse.engine import require_sqlite_file
from mlobs.warehouse.models import index_key
from mlobs.warehouse.store import WarehouseStore

#: Default age limit of a reusable run, in days (orchestration notes §5).
DEFAULT_TTL_DAYS = 3.0


def reusable_run(db_url: str | WarehouseStore, platform_id: str, video_id: str, *,
                 config: Mapping[str, Any] | None = None, config_hash: str | None = None,
                 sampling_policy_version: str | None = None,
                 pipeline_version: str | None = None, ttl_days: float = DEFAULT_TTL_DAYS,
                 now: datetime | None = None) -> RunRecord | None:
    """The latest successful run of this video and key if it is fresh enough, else None.

    Rule (orchestration notes §5 / seeds 001): if the latest successful run of the key
    (platform_id, video_id, config_hash, sampling_policy_version, pipeline_version)
    finished no more than ``ttl_days`` before ``now``, it is returned as is; an older one
    (or none at all) means: recompute. As in the component cache's TTL, a run exactly
    ``ttl_days`` old is still fresh.

    Args:
        db_url: warehouse URL (SQLite or PostgreSQL, at the head revision), or an open
            :class:`~mlobs.warehouse.store.WarehouseStore` (used as is, not closed).
        platform_id, video_id: the video.
        config: the run's configuration; hashed with :func:`mlobs.core.signature.config_hash`,
            as ``mlobs.run`` does.
        config_hash: the hash itself, instead of ``config``. When neither is given, the
            key's hash is ``config_hash(None)``: what ``mlobs.run`` records for a run
            started without a config.
        sampling_policy_version, pipeline_version: as recorded by the run; None matches
            runs that recorded None.
        ttl_days: the age limit in days (``cache_ttl_days``); 0 never reuses.
        now: the current time (timezone-aware); default: now, UTC.

    Returns:
        The stored :class:`~mlobs.core.records.RunRecord` (status ``ok``), or None.

    Raises:
        ConfigError: both ``config`` and ``config_hash`` given, a config JSON cannot
            represent, a negative or non-finite ``ttl_days``, a naive ``now``, an empty
            platform_id or video_id.
        WarehouseError: the warehouse cannot be read (unreachable, missing SQLite file,
            schema not at the head revision: :class:`~mlobs.core.errors.SchemaOutOfDateError`).
    """
    check_word("platform_id", platform_id, NAME_MAX_CHARS)
    check_word("video_id", video_id, NAME_MAX_CHARS)
    if config is not None and config_hash is not None:
        raise ConfigError("give config or config_hash, not both")
    check_finite("ttl_days", ttl_days)
    if now is None:
        now = datetime.now(timezone.utc)
    elif not isinstance(now, datetime) or now.utcoffset() is None:
        raise ConfigError(f"now must be a timezone-aware datetime, got {now!r:.60}")
    wanted_hash = config_hash if config_hash is not None else compute_config_hash(config)

    if isinstance(db_url, WarehouseStore):
        return _lookup(db_url, platform_id, video_id, wanted_hash, sampling_policy_version,
                       pipeline_version, ttl_days, now)
    require_sqlite_file(db_url)
    with WarehouseStore(db_url) as store:
        return _lookup(store, platform_id, video_id, wanted_hash, sampling_policy_version,
                       pipeline_version, ttl_days, now)


def _lookup(store: WarehouseStore, platform_id: str, video_id: str, config_hash: str,
            sampling_policy_version: str | None, pipeline_version: str | None,
            ttl_days: float, now: datetime) -> RunRecord | None:
    entry = store.latest_success(platform_id, video_id, config_hash=config_hash,
                                 sampling_policy_version=sampling_policy_version,
                                 pipeline_version=pipeline_version)
    if entry is None:
        return None
    try:
        too_old = entry.finished_at < now - timedelta(days=ttl_days)
    except OverflowError:  # a limit beyond the calendar: nothing is too old
        too_old = False
    if too_old:
        return None
    found = store.get_run(entry.latest_success_run_id)
    if found is None:
        return None  # deleted since the index was read
    run = found[0]
    # Defensive: the index row must still describe the run (a run rewritten with other
    # key parts leaves its old key pointing at it). Anything else: recompute.
    wanted = index_key(platform_id, video_id, config_hash, sampling_policy_version,
                       pipeline_version)
    stored = index_key(run.platform_id, run.video_id, run.config_hash,
                       run.sampling_policy_version, run.pipeline_version)
    if run.status != "ok" or stored != wanted:
        return None
    return run
