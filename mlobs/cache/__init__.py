"""The idempotent component cache: versioned results per video (ADR-005), lookups with
miss reasons, input hashing. See :mod:`mlobs.cache.store`, :mod:`mlobs.cache.lookup`,
:mod:`mlobs.hooks.component_cache`."""
