"""The cache side of one component invocation: look up at its start, store at its end.

``run.component(..., cache=True)`` / ``@mlobs.component(cache=True)``:

* the idempotency key is computed from the run (platform_id, video_id, config_hash,
  sampling_policy_version) and the component (name, producer_version, schema_version,
  model_signature); the declared inputs are hashed (:mod:`mlobs.cache.inputs`);
* a key that cannot be computed completely (no producer_version or schema_version,
  inputs JSON cannot hold) is never cached: ``cache_status`` ``bypass`` and a warning
  saying what is missing (fail closed);
* a valid version → ``hit``: the decorated function is not called (the ``with`` form
  reads ``c.hit`` / ``c.result``), the record's duration is the lookup's, and an ``empty``
  result is ``empty`` again with its reason;
* otherwise ``miss`` with its reason (:mod:`mlobs.cache.lookup`), and the result of a
  successful invocation is stored as a new version, made current;
* ``cache="bypass"``: computed again (``forced``) and stored as a new version.

A failure to store (disk full, a result JSON cannot hold) becomes a warning on the
record; the pipeline goes on.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from mlobs.cache.codecs import DEFAULT_CODEC, Codec
from mlobs.cache.inputs import input_hash
from mlobs.cache.lookup import CacheLookup, lookup
from mlobs.core.classify import exception_summary
from mlobs.core.errors import ConfigError
from mlobs.core.signature import IdempotencyKey, model_signature

if TYPE_CHECKING:
    from mlobs.hooks.component import ComponentCall

log = logging.getLogger("mlobs")

#: values accepted for ``cache=``.
CACHE_MODES = (False, True, "bypass")


def check_cache_mode(cache: Any) -> None:
    if cache not in CACHE_MODES or isinstance(cache, int) and not isinstance(cache, bool):
        raise ConfigError(f"cache must be True, False or 'bypass', got {cache!r:.40}")


class ComponentCache:
    """Cache state of one :class:`~mlobs.ComponentCall` (which it does not hold: the
    call holds it, and a reference back would keep a hit's value alive until the garbage
    collector's next cycle)."""

    __slots__ = ("mode", "inputs", "codec", "ttl_days", "key", "input_hash", "found")

    def __init__(self, mode: bool | str, inputs: Any, codec: Codec | None,
                 ttl_days: float | None) -> None:
        self.mode = mode
        self.inputs = inputs
        self.codec = codec or DEFAULT_CODEC
        self.ttl_days = ttl_days
        self.key: IdempotencyKey | None = None
        self.input_hash: str | None = None
        self.found: CacheLookup | None = None

    def begin(self, call: ComponentCall) -> None:
        """Compute the key and look it up (at the component's start)."""
        run = call.run
        missing = [name for name, value in (("producer_version", call.producer_version),
                                            ("schema_version", call.schema_version))
                   if value is None]
        if missing:
            self._bypass(call, f"not cached: the idempotency key lacks {', '.join(missing)}")
            return
        try:
            self.input_hash = input_hash(self.inputs)
        except ConfigError as exc:
            self._bypass(call, f"not cached: inputs cannot be hashed ({exc})")
            return
        except Exception as exc:  # an input that breaks hashing (too deep, a failing
            # tobytes()) fails closed like one that cannot be hashed
            self._bypass(call, "not cached: inputs cannot be hashed "
                               f"({exception_summary(exc, 300)})")
            return
        record = run.record
        self.key = IdempotencyKey(
            platform_id=record.platform_id, video_id=record.video_id, component=call.name,
            config_hash=record.config_hash,
            sampling_policy_version=record.sampling_policy_version,
            producer_version=call.producer_version, schema_version=call.schema_version,
            model_signature=model_signature(call.models))
        if self.mode == "bypass":
            call.cache_looked_up(self.key.digest, "bypass", "forced")
            return
        try:
            found = lookup(run.artifact_store, self.key, self.input_hash,
                           codec=self.codec, ttl_days=self.ttl_days)
        except Exception as exc:  # an unreadable cache must not stop the pipeline
            log.warning("mlobs: cache lookup of %r failed: %r", call.name, exc)
            found = CacheLookup("miss", "corrupt")
        self.found = found
        call.cache_looked_up(self.key.digest, found.status, found.reason)
        if found.hit:
            entry = found.entry
            call.cache_hit(entry.version, entry.status, entry.empty_reason)
            run.note_cache_hit(entry.run_id)

    def _bypass(self, call: ComponentCall, warning: str) -> None:
        call.cache_bypassed(warning)
        self.mode = False  # nothing is stored

    @property
    def hit(self) -> bool:
        return self.found is not None and self.found.hit

    @property
    def value(self) -> Any:
        return self.found.value if self.found is not None else None

    def finish(self, call: ComponentCall, result: Any) -> None:
        """Store ``result`` as a new version (at a successful end of a miss or bypass)."""
        if self.hit or not self.mode or self.key is None or call.status == "error":
            return
        record = call.run.record
        try:
            entry = call.run.artifact_store.save(
                record.platform_id, record.video_id, call.name, result, key=self.key,
                input_hash=self.input_hash or "", models=call.models, run_id=record.run_id,
                codec=self.codec, status=call.status, empty_reason=call.empty_reason)
        except Exception as exc:  # disk full, unencodable result, a broken codec
            call.warn(f"result not cached: {exc}")
            return
        call.cache_stored(entry.version)

