"""mlobs: observability for multi-stage ML pipelines.

Public API (ARCHITECTURE §3)::

    import mlobs
    with mlobs.run("youtube", "abc123", pipeline_version="1.4.0", config={...}) as run:
        with run.component("asr", models=[mlobs.ModelRef(...)], batch_size=16) as c:
            ...

Everything importable from ``mlobs`` is listed in ``__all__``; other modules are internal
unless their docs say otherwise.
"""

from mlobs.api import ComponentCall, Run, component, current, current_run, run
from mlobs.classify import classify_exception, register_classifier, register_error_code
from mlobs.errors import (
    ComponentError,
    ConfigError,
    Empty,
    InvalidRecordError,
    MlobsError,
    SchemaOutOfDateError,
    WarehouseError,
)
from mlobs.profile import AnalysisProfile
from mlobs.records import ComponentRecord, EventRecord, ModelRef, RunRecord
from mlobs.setup import configure, flush, settings, sink_stats
from mlobs.signature import IdempotencyKey, config_hash, idempotency_key, model_signature

__version__ = "0.1.0"

__all__ = [
    "AnalysisProfile",
    "ComponentCall",
    "ComponentError",
    "ComponentRecord",
    "ConfigError",
    "Empty",
    "EventRecord",
    "IdempotencyKey",
    "InvalidRecordError",
    "MlobsError",
    "ModelRef",
    "Run",
    "RunRecord",
    "SchemaOutOfDateError",
    "WarehouseError",
    "__version__",
    "classify_exception",
    "component",
    "config_hash",
    "configure",
    "current",
    "current_run",
    "flush",
    "idempotency_key",
    "model_signature",
    "register_classifier",
    "register_error_code",
    "run",
    "settings",
    "sink_stats",
]
