"""mlobs: observability for multi-stage ML pipelines.

Public API (ARCHITECTURE §3)::

    import mlobs
    with mlobs.run("youtube", "abc123", pipeline_version="1.4.0", config={...}) as run:
        with run.component("asr", models=[mlobs.ModelRef(...)], batch_size=16) as c:
            ...

Everything importable from ``mlobs`` is listed in ``__all__``; other modules are internal
unless their docs say otherwise.
"""

from mlobs.cache.codecs import Codec, JsonCodec
from mlobs.cache.inputs import FileInput
from mlobs.cache.intermediate import intermediate_dir
from mlobs.core.classify import classify_exception, register_classifier, register_error_code
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
from mlobs.core.records import ComponentRecord, EventRecord, ModelRef, RunRecord
from mlobs.core.signature import IdempotencyKey, config_hash, idempotency_key, model_signature
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
