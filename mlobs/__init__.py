"""mlobs: observability for multi-stage ML pipelines.

Public API::

    import mlobs
    with mlobs.run("youtube", "abc123", pipeline_version="1.4.0", config={...}) as run:
        with run.component("asr", models=[mlobs.ModelRef(...)], batch_size=16) as c:
            ...

Everything importable from ``mlobs`` is listed in ``__all__``; other modules are internal
unless their docs say otherwise.

``import mlobs`` loads the errors only; every other public name is imported from its
module on first use (PEP 562 ``__getattr__``), so that a program, a worker or the ``mlobs``
command that never records does not pay for the recording stack's imports.
"""

# No `from __future__ import annotations` here: it would add a public name (annotations),
# and modules, not names, below: the public names are exactly __all__ (tests/packaging).
import importlib
import typing

# The errors are cheap and are caught (``except mlobs.ConfigError``) before anything runs.
from mlobs.core.errors import (
    ComponentError,
    ConfigError,
    Empty,
    InvalidRecordError,
    MlobsError,
    ModelLoadFailed,
    SchemaOutOfDateError,
    WarehouseError,
)

if typing.TYPE_CHECKING:
    from mlobs.cache.codecs import Codec, JsonCodec
    from mlobs.cache.inputs import FileInput
    from mlobs.cache.intermediate import intermediate_dir
    from mlobs.core.classify import (
        classify_exception,
        register_classifier,
        register_error_code,
    )
    from mlobs.core.records import ComponentRecord, EventRecord, ModelRef, RunRecord
    from mlobs.core.signature import (
        IdempotencyKey,
        config_hash,
        idempotency_key,
        model_signature,
    )
    from mlobs.hooks.batch_size import (
        BatchSizeChoice,
        MemoryCost,
        choose_batch_size,
        load_checklist,
    )
    from mlobs.hooks.component import ComponentCall
    from mlobs.hooks.context import current, current_run, unattributed_calls
    from mlobs.hooks.decorator import component
    from mlobs.hooks.external_cache import record_cache_lookup
    from mlobs.hooks.fallback import FallbackFailure, FallbackResult, predict_with_fallback
    from mlobs.hooks.oom import HalveBatch, OomPolicy
    from mlobs.hooks.profile import AnalysisProfile
    from mlobs.hooks.retry import RetryPolicy
    from mlobs.hooks.run import Run, run
    from mlobs.hooks.seeding import set_seed
    from mlobs.hooks.setup import configure, flush, settings, sink_stats
    from mlobs.hooks.threads import propagate

__version__ = "0.1.0"

#: module → the public names imported from it on first use; the same names as the
#: ``TYPE_CHECKING`` imports above (tests/packaging/test_lazy_imports.py holds them equal).
_LAZY_MODULES: dict[str, tuple[str, ...]] = {
    "mlobs.cache.codecs": ("Codec", "JsonCodec"),
    "mlobs.cache.inputs": ("FileInput",),
    "mlobs.cache.intermediate": ("intermediate_dir",),
    "mlobs.core.classify": ("classify_exception", "register_classifier",
                            "register_error_code"),
    "mlobs.core.records": ("ComponentRecord", "EventRecord", "ModelRef", "RunRecord"),
    "mlobs.core.signature": ("IdempotencyKey", "config_hash", "idempotency_key",
                             "model_signature"),
    "mlobs.hooks.batch_size": ("BatchSizeChoice", "MemoryCost", "choose_batch_size",
                               "load_checklist"),
    "mlobs.hooks.component": ("ComponentCall",),
    "mlobs.hooks.context": ("current", "current_run", "unattributed_calls"),
    "mlobs.hooks.decorator": ("component",),
    "mlobs.hooks.external_cache": ("record_cache_lookup",),
    "mlobs.hooks.fallback": ("FallbackFailure", "FallbackResult", "predict_with_fallback"),
    "mlobs.hooks.oom": ("HalveBatch", "OomPolicy"),
    "mlobs.hooks.profile": ("AnalysisProfile",),
    "mlobs.hooks.retry": ("RetryPolicy",),
    "mlobs.hooks.run": ("Run", "run"),
    "mlobs.hooks.seeding": ("set_seed",),
    "mlobs.hooks.setup": ("configure", "flush", "settings", "sink_stats"),
    "mlobs.hooks.threads": ("propagate",),
}
_LAZY = {name: module for module, names in _LAZY_MODULES.items() for name in names}


def __getattr__(name: str) -> typing.Any:
    """A public name's value, imported from its module on first access (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later accesses are plain attribute lookups
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "AnalysisProfile",
    "BatchSizeChoice",
    "Codec",
    "ComponentCall",
    "ComponentError",
    "ComponentRecord",
    "ConfigError",
    "Empty",
    "EventRecord",
    "FallbackFailure",
    "FallbackResult",
    "FileInput",
    "HalveBatch",
    "IdempotencyKey",
    "InvalidRecordError",
    "JsonCodec",
    "MemoryCost",
    "MlobsError",
    "ModelLoadFailed",
    "ModelRef",
    "OomPolicy",
    "RetryPolicy",
    "Run",
    "RunRecord",
    "SchemaOutOfDateError",
    "WarehouseError",
    "__version__",
    "choose_batch_size",
    "classify_exception",
    "component",
    "config_hash",
    "configure",
    "current",
    "current_run",
    "flush",
    "idempotency_key",
    "intermediate_dir",
    "load_checklist",
    "model_signature",
    "predict_with_fallback",
    "propagate",
    "record_cache_lookup",
    "register_classifier",
    "register_error_code",
    "run",
    "set_seed",
    "settings",
    "sink_stats",
    "unattributed_calls",
]
