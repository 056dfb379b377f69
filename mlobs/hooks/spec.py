"""What a component declares, validated once: :class:`ComponentSpec`.

``run.component(name, ...)`` builds one per invocation; ``@mlobs.component(name, ...)``
builds one when it decorates, so a decorated call pays no validation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from mlobs.cache.codecs import Codec
from mlobs.core.checks import check_finite, check_int, check_word
from mlobs.core.errors import ConfigError
from mlobs.core.limits import CODE_MAX_CHARS, NAME_MAX_CHARS
from mlobs.core.records import ModelRef
from mlobs.hooks.batch_size import BatchSizeChoice
from mlobs.hooks.component_cache import check_cache_mode
from mlobs.hooks.oom import OomPolicy
from mlobs.hooks.retry import RetryPolicy


class ComponentSpec(NamedTuple):
    """A component's declaration (the arguments of ``run.component`` and
    ``@mlobs.component``; their meaning is documented at :meth:`mlobs.Run.component`).

    Build it with :meth:`create`, which checks every field; ``batch_size`` keeps a
    :class:`~mlobs.BatchSizeChoice` as given (each invocation records it as an event).
    Immutable; a named tuple rather than a frozen dataclass because ``with
    run.component(...)`` builds one per invocation, and a tuple is built in a seventh of
    the time.
    """

    name: str
    producer_version: str | None = None
    schema_version: str | None = None
    models: tuple[ModelRef, ...] = ()
    batch_size: int | BatchSizeChoice | None = None
    device: str | None = None
    #: the code's own declaration; the run's analysis profile decides (None: default).
    required: bool | None = None
    on_oom: OomPolicy | None = None
    retry: RetryPolicy | None = None
    cache: bool | str = False
    codec: Codec | None = None
    cache_ttl_days: float | None = None

    @classmethod
    def create(cls, name: str, *, producer_version: str | None = None,
               schema_version: str | None = None, models: Sequence[ModelRef] = (),
               batch_size: int | BatchSizeChoice | None = None, device: str | None = None,
               required: bool | None = None, on_oom: OomPolicy | None = None,
               retry: RetryPolicy | None = None, cache: bool | str = False,
               codec: Codec | None = None, cache_ttl_days: float | None = None
               ) -> ComponentSpec:
        """A checked spec (bounds: :mod:`mlobs.core.limits`).

        Raises:
            ConfigError: naming the argument that is invalid.
        """
        check_word("component name", name, NAME_MAX_CHARS)
        check_cache_mode(cache)
        if cache_ttl_days is not None:
            check_finite("cache_ttl_days", cache_ttl_days)
        if codec is not None and not isinstance(codec, Codec):
            raise ConfigError("codec must have name, encode(value) -> bytes and decode(bytes)")
        if batch_size is not None and not isinstance(batch_size, BatchSizeChoice):
            check_int("batch_size", batch_size, 1)
        if on_oom is not None:
            if not isinstance(on_oom, OomPolicy):
                raise ConfigError("on_oom must be an OOM policy such as mlobs.HalveBatch(min=1)")
            if batch_size is None:
                raise ConfigError(f"component {name!r}: on_oom needs a batch_size to degrade")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigError("retry must be an mlobs.RetryPolicy")
        if required is not None and not isinstance(required, bool):
            raise ConfigError(f"required must be True, False or None, got {required!r:.40}")
        if producer_version is not None:
            check_word("producer_version", producer_version, NAME_MAX_CHARS)
        if schema_version is not None:
            check_word("schema_version", schema_version, NAME_MAX_CHARS)
        if device is not None:
            check_word("device", device, CODE_MAX_CHARS)
        models = tuple(models)
        for model in models:
            if not isinstance(model, ModelRef):
                raise ConfigError(f"models must be mlobs.ModelRef instances, got {model!r:.80}")
        # tuple.__new__ directly: the generated __new__ is a Python call per spec.
        return tuple.__new__(cls, (name, producer_version, schema_version, models, batch_size,
                                   device, required, on_oom, retry, cache, codec,
                                   cache_ttl_days))

    @property
    def declared_batch_size(self) -> int | None:
        """The batch size as a number (a :class:`BatchSizeChoice`'s choice)."""
        size: Any = self.batch_size
        return size.batch_size if isinstance(size, BatchSizeChoice) else size
