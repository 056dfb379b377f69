"""Cache lookup: a hit, or a miss with the reason the observability side reports.

Rule (orchestration notes; model system rules §4): a component is idempotent by its key
(platform_id, video_id, component, config_hash, sampling_policy_version, producer_version,
schema_version, model_signature); if a valid artifact exists for the key and the same
inputs, nothing is recomputed; a new model means a new cache.

Among the versions stored for the key and input hash, the current version wins, then the
newest. A miss names why, comparing with the version the component would otherwise have
loaded (the current one):

=============================  ===================================================
``no_entry``                   nothing stored for the component of this video
``model_signature_changed``    the models differ (engine, precision, weights, ...)
``producer_version_changed``   the component's code version differs
``schema_changed``             the output schema version differs
``config_changed``             config_hash or sampling_policy_version differs
``input_changed``              same key, other inputs (an upstream result changed)
``expired``                    the matching version is older than the TTL
``corrupt``                    the matching version's file is gone, truncated or edited
``forced``                     the caller bypassed the cache (``cache="bypass"``)
=============================  ===================================================

When several parts changed, the first of the table's order is reported (a new model is
the most telling).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from mlobs.cache.codecs import DEFAULT_CODEC, Codec
from mlobs.cache.entries import CacheEntry
from mlobs.cache.store import ArtifactStore
from mlobs.core.errors import CorruptArtifactError
from mlobs.core.signature import IdempotencyKey

# key part -> miss reason, in the order reasons are preferred.
_PART_REASONS = (("model_signature", "model_signature_changed"),
                 ("producer_version", "producer_version_changed"),
                 ("schema_version", "schema_changed"),
                 ("config_hash", "config_changed"),
                 ("sampling_policy_version", "config_changed"))


@dataclass(frozen=True)
class CacheLookup:
    """The outcome of one lookup.

    ``status`` is ``"hit"`` (``value`` and ``entry`` are the version loaded) or ``"miss"``
    (``reason`` from :data:`mlobs.core.records.MISS_REASONS`; ``entry`` is the version compared with, if any).
    """

    status: str
    reason: str | None = None
    entry: CacheEntry | None = None
    value: Any = None

    @property
    def hit(self) -> bool:
        return self.status == "hit"


def miss_reason_against(key: IdempotencyKey, input_hash: str, entry: CacheEntry) -> str:
    """Why ``entry`` does not serve ``key`` with ``input_hash``."""
    stored = entry.key_parts
    mine = key.parts()
    for part, reason in _PART_REASONS:
        if mine.get(part) != stored.get(part):
            return reason
    if entry.key_digest != key.digest:  # a part outside the table (ids): treat as new
        return "no_entry"
    return "input_changed" if entry.input_hash != input_hash else "no_entry"


def lookup(store: ArtifactStore, key: IdempotencyKey, input_hash: str, *,
           codec: Codec = DEFAULT_CODEC, ttl_days: float | None = None,
           now: datetime | None = None) -> CacheLookup:
    """Find and load a valid version for ``key`` and ``input_hash``; never raises for a
    bad artifact (that is a ``corrupt`` miss).

    Args:
        store: where the versions are.
        key: the component's idempotency key.
        input_hash: SHA-256 of the component's declared inputs.
        codec: decodes the stored file.
        ttl_days: versions older than this many days are ``expired`` (None: no TTL).
        now: the time to judge expiry by (default: now, UTC).
    """
    index = store.info(key.platform_id, key.video_id)
    versions = index.versions(key.component) if index else []
    if not versions:
        return CacheLookup("miss", "no_entry")
    current = next((e for e in versions if e.is_current), versions[-1])
    matching = [e for e in versions
                if e.key_digest == key.digest and e.input_hash == input_hash]
    if not matching:
        return CacheLookup("miss", miss_reason_against(key, input_hash, current), current)
    matching.sort(key=lambda e: (not e.is_current, -e.version))
    cutoff = None
    if ttl_days is not None:
        cutoff = (now or datetime.now(timezone.utc)) - timedelta(days=ttl_days)
    first_problem: CacheLookup | None = None
    for entry in matching:
        if cutoff is not None and entry.created_at < cutoff:
            first_problem = first_problem or CacheLookup("miss", "expired", entry)
            continue
        try:
            value = store.load_entry(key.platform_id, key.video_id, entry, codec)
        except CorruptArtifactError:
            first_problem = first_problem or CacheLookup("miss", "corrupt", entry)
            continue
        return CacheLookup("hit", None, entry, value)
    assert first_problem is not None
    return first_problem
