"""Lookups of caches mlobs does not own, recorded so their hit rates sit beside the
component caches'.

A pipeline often reads through caches that live elsewhere: a prompt-template cache in
front of a prompt configuration service, an embedding cache, a feature store's local
copy. mlobs cannot look into them, but the code that consults one knows what happened,
and one call records it on the component that made the lookup::

    from mlobs.hooks.external_cache import record_cache_lookup

    template = prompt_cache.get(key)
    if template is not None and not expired:
        record_cache_lookup("prompt_templates", "hit", key=key)
    else:
        try:
            template = prompt_service.fetch(key)
            record_cache_lookup("prompt_templates", "miss", key=key,
                                reason="expired" if template_expired else "no_entry")
        except ServiceUnavailable:
            template = prompt_cache.get_stale(key)
            record_cache_lookup("prompt_templates", "stale", key=key,
                                reason="source_unavailable")

Statuses:

===========  ===============================================================
``hit``      a valid entry served
``miss``     nothing usable cached: the source was asked
``stale``    an outdated entry served because the source could not answer
             (graceful degradation, e.g. the configuration service is down)
===========  ===============================================================

Each call adds one event of kind ``external_cache`` (attributes ``cache``, ``status``,
and ``key`` / ``reason`` when given) to the current component's record, so it reaches
every sink with that record; the warehouse keeps it in ``events``. ``mlobs rollup``
aggregates these events per component × cache name
(:func:`mlobs.analysis.rollup.compute_external_cache_rollup`): lookups, hits, misses, stale,
hit rate and stale rate.

Outside an observed component (no run, or a thread that did not inherit the component's
context) the call records nothing. The arguments are checked either way, so a mistake
shows up in unobserved unit tests too.
"""

from __future__ import annotations

from mlobs.core.checks import check_word
from mlobs.core.errors import ConfigError
from mlobs.core.limits import CODE_MAX_CHARS, NAME_MAX_CHARS
from mlobs.hooks.context import current

#: Event kind of an external cache lookup (``events.kind`` in the warehouse).
EXTERNAL_CACHE_EVENT = "external_cache"
#: Accepted ``status`` values of :func:`record_cache_lookup`.
LOOKUP_STATUSES = ("hit", "miss", "stale")


def record_cache_lookup(cache: str, status: str, *, key: str | None = None,
                        reason: str | None = None) -> None:
    """Record one lookup of an external cache on the current component.

    Args:
        cache: the cache's name, stable across runs (``"prompt_templates"``); rollups
            group by it. At most 255 characters.
        status: ``"hit"``, ``"miss"`` or ``"stale"`` (module docstring).
        key: what was looked up (at most 255 characters), for tracing one lookup back;
            it is stored as given, so leave out keys that carry personal data.
        reason: why it missed or was stale (a vocabulary word such as ``"expired"``,
            ``"no_entry"``, ``"source_unavailable"``; at most 128 characters).

    Raises:
        ConfigError: ``status`` is not one of ``hit``, ``miss``, ``stale``; ``cache`` is
            not a non-empty string; ``key`` or ``reason`` is given but is not a non-empty
            string within its bound. Raised inside and outside components alike.
    """
    check_word("external cache name", cache, NAME_MAX_CHARS)
    if not isinstance(status, str) or status not in LOOKUP_STATUSES:
        raise ConfigError(f"external cache status must be one of "
                          f"{', '.join(LOOKUP_STATUSES)}; got {status!r:.40}")
    attributes = {"cache": cache, "status": status}
    if key is not None:
        attributes["key"] = check_word("external cache key", key, NAME_MAX_CHARS)
    if reason is not None:
        attributes["reason"] = check_word("external cache reason", reason, CODE_MAX_CHARS)
    current().event(EXTERNAL_CACHE_EVENT, **attributes)
