"""model_signature, config_hash and the idempotency key: pure functions.

Rules (model system rules §2; orchestration notes §3; ARCHITECTURE §4):

* ``model_signature`` is a SHA-256 over the canonical JSON of ``models_used``, each model
  reduced to (model_name, model_version, weights_digest, runtime, engine, precision,
  device kind). Changing the engine, precision or weights changes the signature; the device
  index (``cuda:0`` vs ``cuda:1``) does not, so work scheduled on any GPU shares a cache.
  Models are sorted, so the order in which a component lists them does not matter.
* The idempotency key is a SHA-256 over (platform_id, video_id, component, config_hash,
  sampling_policy_version, producer_version, schema_version, model_signature); the parts
  are kept so that a cache miss can say which one changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from mlobs.core.canonical import sha256_hex
from mlobs.core.records import ModelRef

SIGNATURE_VERSION = 1


def model_signature(models_used: Iterable[ModelRef]) -> str | None:
    """Stable signature of the models a component used.

    Args:
        models_used: the ModelRefs, in any order.

    Returns:
        64 hex characters, or ``None`` when no model was used.
    """
    entries = sorted(
        (m.name, m.version, m.weights_digest, m.runtime, m.engine, m.precision, m.device_kind)
        for m in models_used
    )
    if not entries:
        return None
    keys = ("model_name", "model_version", "weights_digest", "runtime", "engine",
            "precision", "device_kind")
    return sha256_hex({"v": SIGNATURE_VERSION,
                       "models": [dict(zip(keys, entry)) for entry in entries]})


def config_hash(config: Mapping[str, Any] | None) -> str:
    """SHA-256 (64 hex) of the canonical JSON of a run's config (``{}`` when None).

    Raises:
        ConfigError: the config holds values JSON cannot represent.
    """
    return sha256_hex(dict(config or {}))


@dataclass(frozen=True)
class IdempotencyKey:
    """The fields agreed for component caching, and their digest (``digest``)."""

    platform_id: str
    video_id: str
    component: str
    config_hash: str | None
    sampling_policy_version: str | None
    producer_version: str | None
    schema_version: str | None
    model_signature: str | None

    @property
    def digest(self) -> str:
        """SHA-256 (64 hex) of the canonical JSON of the parts."""
        return sha256_hex(asdict(self))

    def parts(self) -> dict[str, str | None]:
        """The parts by name (what the cache index stores beside the digest)."""
        return asdict(self)

    @classmethod
    def from_parts(cls, parts: dict[str, str | None]) -> IdempotencyKey:
        return cls(**{f: parts.get(f) for f in cls.__dataclass_fields__})

    def changed_parts(self, other: IdempotencyKey) -> list[str]:
        """Names of the parts that differ from ``other``, in key order."""
        mine, theirs = asdict(self), asdict(other)
        return [name for name in mine if mine[name] != theirs[name]]


def idempotency_key(*, platform_id: str, video_id: str, component: str,
                    config_hash: str | None, sampling_policy_version: str | None,
                    producer_version: str | None, schema_version: str | None,
                    model_signature: str | None) -> IdempotencyKey:
    """Build the idempotency key of one component over one video (keyword-only)."""
    return IdempotencyKey(platform_id, video_id, component, config_hash,
                          sampling_policy_version, producer_version, schema_version,
                          model_signature)
