"""The records mlobs writes: field names, types and units (ARCHITECTURE §4).

``ComponentRecord`` (one per component invocation), ``RunRecord`` (one per run) and
``EventRecord`` (something that happened inside a component) are plain dataclasses.
``to_dict``/``from_dict`` give their manifest form (``mlobs.manifest/1``): timestamps as
ISO 8601 UTC strings, everything else JSON-native.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol, TypeAlias

import orjson

from mlobs.core.checks import check_text, check_word
from mlobs.core.limits import NAME_MAX_CHARS

STATUSES = ("ok", "empty", "error")
PREDICTION_STATUSES = ("ok", "degraded")
#: ``crashed``: a run left ``running`` whose process stopped its heartbeat (see
#: :mod:`mlobs.core.liveness`).
RUN_STATUSES = ("running", "ok", "error", "crashed")
#: why a cache lookup missed (``cache_miss_reason``), in the order rollups list them.
MISS_REASONS = ("no_entry", "model_signature_changed", "producer_version_changed",
                "schema_changed", "config_changed", "input_changed", "expired", "corrupt",
                "forced")


#: Where :func:`record_json` keeps a record's encoding (not a dataclass field).
_JSON_ATTRIBUTE = "_json"


@functools.cache
def _field_names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls))


def _fields_of(record: Any) -> dict[str, Any]:
    """A record's fields, in declaration order, as a new dict (a copy of the instance
    dict: a dataclass's fields are its instance attributes; the JSON cache is not one)."""
    data = record.__dict__.copy()
    data.pop(_JSON_ATTRIBUTE, None)
    return data


def device_kind_of(device: str | None) -> str:
    """The device without its index: ``"cuda:1"`` → ``"cuda"``; ``None`` → ``"cpu"``
    (the device kind enters ``model_signature``, the index does not)."""
    return device.split(":", 1)[0] if device else "cpu"


@dataclass(frozen=True)
class ModelRef:
    """A model a component used (model system rules §2).

    Args:
        name: model name, e.g. ``"openai/whisper-small"``.
        version: model version or revision.
        weights_digest: digest of the weights actually loaded, e.g. ``"sha256:..."``.
        runtime: ``"inprocess"``, ``"triton"``, ``"http"``, ...
        engine: ``"torch"``, ``"onnx"``, ``"tensorrt"``, ``"sklearn"``, ...
        precision: ``"fp32"``, ``"fp16"``, ``"int8"``, ...
        device: the concrete device, e.g. ``"cuda:0"`` or ``"cpu"``; only its kind
            (``"cuda"``) enters the model_signature.

    Raises:
        ConfigError: ``name`` is not a non-empty string, or another field is not a
            string, of at most 255 characters of valid Unicode text.
    """

    name: str
    version: str = ""
    weights_digest: str = ""
    runtime: str = "inprocess"
    engine: str = ""
    precision: str = ""
    device: str = "cpu"

    def __post_init__(self) -> None:
        check_word("ModelRef.name", self.name, NAME_MAX_CHARS)
        for label in ("version", "weights_digest", "runtime", "engine", "precision", "device"):
            check_text(f"ModelRef.{label}", getattr(self, label), NAME_MAX_CHARS)

    @property
    def device_kind(self) -> str:
        """The device without its index: ``"cuda:1"`` → ``"cuda"``."""
        return device_kind_of(self.device)

    def to_dict(self) -> dict[str, str]:
        """Manifest form of ``models_used`` entries (keys: model_name, model_version, ...)."""
        return {
            "model_name": self.name,
            "model_version": self.version,
            "weights_digest": self.weights_digest,
            "runtime": self.runtime,
            "engine": self.engine,
            "precision": self.precision,
            "device": self.device,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelRef:
        return cls(name=data["model_name"], version=data.get("model_version", ""),
                   weights_digest=data.get("weights_digest", ""),
                   runtime=data.get("runtime", "inprocess"), engine=data.get("engine", ""),
                   precision=data.get("precision", ""), device=data.get("device", "cpu"))


def iso_utc(value: datetime | None) -> str | None:
    """ISO 8601 string of a timezone-aware datetime, normalised to UTC."""
    return None if value is None else value.astimezone(timezone.utc).isoformat()


def parse_utc(value: str | None) -> datetime | None:
    """Inverse of :func:`iso_utc`; naive inputs are taken as UTC."""
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed


@dataclass
class EventRecord:
    """Something that happened inside a component: a warning, an OOM, a retry, ...

    ``attributes`` holds JSON values only.
    """

    event_id: str
    run_id: str
    component_run_id: str | None
    kind: str
    occurred_at: datetime
    attributes: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["occurred_at"] = iso_utc(self.occurred_at)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EventRecord:
        return cls(event_id=data["event_id"], run_id=data["run_id"],
                   component_run_id=data.get("component_run_id"), kind=data["kind"],
                   occurred_at=parse_utc(data["occurred_at"]),
                   attributes=dict(data.get("attributes") or {}))


@dataclass
class ComponentRecord:
    """One component invocation (table ``component_runs``; manifest ``components[]``)."""

    component_run_id: str
    run_id: str
    component: str
    #: 1-based count of invocations of this component within the run.
    attempt: int
    required: bool
    status: str
    started_at: datetime
    finished_at: datetime
    duration_ms: float
    empty_reason: str | None = None
    error_code: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    #: the failure's traceback, bounded and safe (:mod:`mlobs.core.tracebacks`).
    error_traceback: str | None = None
    warnings: list[str] = field(default_factory=list)
    producer_version: str | None = None
    schema_version: str | None = None
    device_used: str | None = None
    #: the batch size actually used (after any OOM degradation).
    batch_size: int | None = None
    #: the batch size the component asked for, before any OOM degradation.
    batch_size_requested: int | None = None
    models_used: list[ModelRef] = field(default_factory=list)
    model_signature: str | None = None
    cache_status: str | None = None
    cache_key: str | None = None
    cache_miss_reason: str | None = None
    #: the version of the cached result loaded (hit) or written (miss, bypass).
    cache_version: int | None = None
    peak_rss_bytes: int | None = None
    peak_gpu_allocated_bytes: int | None = None
    peak_gpu_reserved_bytes: int | None = None
    #: the process's RSS when the component started; what the component itself added is
    #: ``peak_rss_increase_bytes`` = peak_rss_bytes - rss_at_start_bytes.
    rss_at_start_bytes: int | None = None
    peak_rss_increase_bytes: int | None = None
    #: torch's allocated CUDA memory when the component started (its devices), and
    #: ``peak_gpu_allocated_increase_bytes`` = peak_gpu_allocated_bytes - that.
    gpu_allocated_at_start_bytes: int | None = None
    peak_gpu_allocated_increase_bytes: int | None = None
    oom_count: int = 0
    retry_count: int = 0
    #: ``ok`` or ``degraded`` when a model fallback chain answered (model system rules
    #: §11.2); ``None`` when the component used no fallback chain.
    prediction_status: str | None = None
    items: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    events: list[EventRecord] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = _fields_of(self)
        data["started_at"] = iso_utc(self.started_at)
        data["finished_at"] = iso_utc(self.finished_at)
        data["models_used"] = [m.to_dict() for m in self.models_used]
        data["warnings"] = list(self.warnings)
        data["metrics"] = dict(self.metrics)
        data["events"] = [e.to_dict() for e in self.events]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ComponentRecord:
        names = _field_names(cls)
        kwargs = {k: v for k, v in data.items() if k in names}
        kwargs["started_at"] = parse_utc(data["started_at"])
        kwargs["finished_at"] = parse_utc(data["finished_at"])
        kwargs["models_used"] = [ModelRef.from_dict(m) for m in data.get("models_used") or []]
        kwargs["events"] = [EventRecord.from_dict(e) for e in data.get("events") or []]
        kwargs["warnings"] = list(data.get("warnings") or [])
        kwargs["metrics"] = dict(data.get("metrics") or {})
        return cls(**kwargs)


@dataclass
class RunRecord:
    """One pipeline run over one video (table ``runs``; manifest top level)."""

    run_id: str
    platform_id: str
    video_id: str
    status: str
    started_at: datetime
    profile: str | None = None
    pipeline_version: str | None = None
    config_hash: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    sampling_policy_version: str | None = None
    warnings: list[str] = field(default_factory=list)
    finished_at: datetime | None = None
    duration_ms: float | None = None
    environment: dict[str, Any] = field(default_factory=dict)
    #: component → "model:version" as actually used (model system rules §3).
    resolved_models: dict[str, list[str]] = field(default_factory=dict)
    error_code: str | None = None
    error_message: str | None = None
    #: set when cached results of an earlier run of this video that did not finish
    #: (status ``running`` or ``error`` in its manifest) were reused: a resume.
    resumed_from_run_id: str | None = None
    #: the last time the run's process said it was alive (UTC; re-sent at an interval
    #: while the run is open), so a run whose process died can be told ``crashed``.
    heartbeat_at: datetime | None = None
    #: key → value, set when the run opens and never changed (:mod:`mlobs.core.labels`;
    #: table ``run_labels``); ``{}`` in manifests written before labels existed.
    labels: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = _fields_of(self)
        data["started_at"] = iso_utc(self.started_at)
        data["finished_at"] = iso_utc(self.finished_at)
        data["heartbeat_at"] = iso_utc(self.heartbeat_at)
        data["warnings"] = list(self.warnings)
        data["labels"] = dict(self.labels)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        names = _field_names(cls)
        kwargs = {k: v for k, v in data.items() if k in names}
        kwargs["started_at"] = parse_utc(data["started_at"])
        kwargs["finished_at"] = parse_utc(data.get("finished_at"))
        kwargs["heartbeat_at"] = parse_utc(data.get("heartbeat_at"))
        kwargs["warnings"] = list(data.get("warnings") or [])
        labels = data.get("labels")
        if labels is not None and not isinstance(labels, dict):
            raise TypeError(f"labels must be an object of strings, got "
                            f"{type(labels).__name__}")
        kwargs["labels"] = dict(labels or {})
        return cls(**kwargs)


class Recordable(Protocol):
    """What a sink is handed besides records: a finished component invocation (the hooks'
    handle), which builds its record when a sink first asks, on the sink's thread. The
    contract the sinks rely on; they never import the hooks."""

    @property
    def run_id(self) -> str: ...

    def record(self) -> ComponentRecord:
        """The invocation's record, built once (thread-safe)."""
        ...


#: What a sink exports: records (the batch worker builds them from the queued items).
Record: TypeAlias = "RunRecord | ComponentRecord"
#: An item on a sink's queue: a run record snapshot, a record (a replay), or a finished
#: invocation (:func:`materialize` turns each into its record).
SinkItem: TypeAlias = "RunRecord | ComponentRecord | Recordable"


def materialize(item: SinkItem) -> RunRecord | ComponentRecord:
    """The record behind a queued item: a record as is, or the record a finished
    invocation builds once, lazily."""
    return item if isinstance(item, (RunRecord, ComponentRecord)) else item.record()


def compact_json(value: Any) -> str:
    """``value`` as the manifest's JSON: compact, UTF-8 text as is, no NaN."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def record_json(record: RunRecord | ComponentRecord) -> bytes:
    """The record's manifest form as compact UTF-8 JSON, encoded once per record object
    (the manifest and the spool share it: encoding is most of a sink's cost per record).
    A record must not be changed once encoded; ``dataclasses.replace`` makes a new one.

    Raises:
        ValueError, TypeError: JSON cannot hold a value (NaN, infinity, a non-JSON
            object); nothing is cached.
    """
    encoded = record.__dict__.get(_JSON_ATTRIBUTE)
    if encoded is None:
        data = record.to_dict()
        # orjson writes the same bytes as compact_json, 12x faster, but writes NaN as
        # null: it takes only what is known to hold finite floats (a component's duration
        # and its metrics); events' attributes and run records go through json.
        if (isinstance(record, ComponentRecord) and not record.events
                and all(map(math.isfinite, record.metrics.values()))
                and math.isfinite(record.duration_ms)):
            try:
                encoded = orjson.dumps(data)
            except TypeError:  # e.g. an int beyond 64 bits, which json writes
                pass
        if encoded is None:
            encoded = compact_json(data).encode()
        record.__dict__[_JSON_ATTRIBUTE] = encoded
    return encoded
