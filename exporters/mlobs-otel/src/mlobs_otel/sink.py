"""The ``otel`` sink: runs and components as OpenTelemetry spans (ARCHITECTURE §8).

Each run becomes one trace: a ``mlobs.run`` span from the run's start to its end, with one
child span per component invocation, named after the component, carrying its own start
and end. Attributes are under ``mlobs.*``:

* run: ``mlobs.run_id``, ``mlobs.platform_id``, ``mlobs.video_id``, ``mlobs.profile``,
  ``mlobs.pipeline_version``, ``mlobs.config_hash``, ``mlobs.status``,
  ``mlobs.error_code``, ``mlobs.resumed_from_run_id``;
* component: ``mlobs.component``, ``mlobs.attempt``, ``mlobs.required``, ``mlobs.status``,
  ``mlobs.empty_reason``, ``mlobs.error_code``, ``mlobs.cache_status``,
  ``mlobs.cache_miss_reason``, ``mlobs.model_signature``, ``mlobs.device``,
  ``mlobs.batch_size``, ``mlobs.batch_size_requested``, ``mlobs.oom_count``,
  ``mlobs.retry_count``, ``mlobs.peak_rss_bytes``, ``mlobs.peak_gpu_allocated_bytes``,
  ``mlobs.prediction_status``, ``mlobs.duration_ms``;

(absent values are left out). The component's events become span events named
``mlobs.<kind>`` (``mlobs.oom``, ``mlobs.retry``, ``mlobs.fallback``, ...), a cache miss
adds ``mlobs.cache_miss`` with its reason, and an ``error`` status sets the span status
``ERROR`` with the error code and message.

Spans are made on the sink's worker thread after the fact, with the recorded timestamps,
so the pipeline's thread pays only the sink queue's append. Components are held until
their run's final record arrives (bounded by ``max_open_runs``); a run still open when the
sink shuts down is exported as it stands (status ``running``).

The tracer provider is the one given, else the application's global provider when it set
one, else a provider built from the standard ``OTEL_*`` variables with the OTLP/HTTP span
exporter (``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_SERVICE_NAME`` default ``mlobs``).
"""

from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict
from datetime import datetime
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from mlobs import __version__ as mlobs_version
from mlobs.records import ComponentRecord, RunRecord
from mlobs.sinks.base import materialize

log = logging.getLogger("mlobs.otel")

RUN_SPAN_NAME = "mlobs.run"
_SCALARS = (str, bool, int, float)


def _ns(value: datetime) -> int:
    """Epoch nanoseconds of an aware datetime, exact to the microsecond."""
    seconds = int(value.timestamp())
    return seconds * 1_000_000_000 + value.microsecond * 1_000


def _attributes(pairs: dict[str, Any]) -> dict[str, Any]:
    """OpenTelemetry attribute values: scalars as is, other JSON as a string, None left out."""
    out = {}
    for key, value in pairs.items():
        if value is None:
            continue
        out[key] = value if isinstance(value, _SCALARS) else json.dumps(value, sort_keys=True)
    return out


def _run_attributes(run: RunRecord) -> dict[str, Any]:
    return _attributes({
        "mlobs.run_id": run.run_id, "mlobs.platform_id": run.platform_id,
        "mlobs.video_id": run.video_id, "mlobs.profile": run.profile,
        "mlobs.pipeline_version": run.pipeline_version, "mlobs.config_hash": run.config_hash,
        "mlobs.status": run.status, "mlobs.error_code": run.error_code,
        "mlobs.resumed_from_run_id": run.resumed_from_run_id})


def _component_attributes(c: ComponentRecord) -> dict[str, Any]:
    return _attributes({
        "mlobs.component": c.component, "mlobs.attempt": c.attempt,
        "mlobs.required": c.required, "mlobs.status": c.status,
        "mlobs.empty_reason": c.empty_reason, "mlobs.error_code": c.error_code,
        "mlobs.cache_status": c.cache_status, "mlobs.cache_miss_reason": c.cache_miss_reason,
        "mlobs.model_signature": c.model_signature, "mlobs.device": c.device_used,
        "mlobs.batch_size": c.batch_size, "mlobs.batch_size_requested": c.batch_size_requested,
        "mlobs.oom_count": c.oom_count, "mlobs.retry_count": c.retry_count,
        "mlobs.peak_rss_bytes": c.peak_rss_bytes,
        "mlobs.peak_gpu_allocated_bytes": c.peak_gpu_allocated_bytes,
        "mlobs.prediction_status": c.prediction_status, "mlobs.duration_ms": c.duration_ms})


def _provider_from_environment() -> tuple[Any, bool]:
    """The global provider when the application set one (owned: False), else an SDK
    provider exporting over OTLP/HTTP as the ``OTEL_*`` variables say (owned: True)."""
    current = trace.get_tracer_provider()
    if not isinstance(current, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
        return current, False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    resource = Resource.create(
        {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "mlobs"})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider, True


class OtelSink:
    """Exports mlobs records as spans (see the module docstring).

    Args:
        tracer_provider: where spans go; default: the global provider, else one built
            from the ``OTEL_*`` environment.
        max_open_runs: runs whose components are held while waiting for the run's end; past
            it the oldest open run is exported as it stands.
    """

    name = "otel"

    def __init__(self, tracer_provider: Any = None, *, max_open_runs: int = 10_000) -> None:
        if tracer_provider is None:
            tracer_provider, self._owned = _provider_from_environment()
        else:
            self._owned = False
        self._provider = tracer_provider
        self._tracer = tracer_provider.get_tracer("mlobs", mlobs_version)
        self._max_open_runs = max_open_runs
        # run_id -> (latest run snapshot, components waiting for the run's end)
        self._open: OrderedDict[str, tuple[RunRecord | None, list[ComponentRecord]]] = \
            OrderedDict()
        # run_id -> the ended run span's context, for components that arrive late
        self._ended: OrderedDict[str, Any] = OrderedDict()

    def export(self, items: list[Any]) -> None:
        for item in items:
            record = materialize(item)
            if isinstance(record, RunRecord):
                self._on_run(record)
            else:
                self._on_component(record)
        while len(self._open) > self._max_open_runs:
            run_id, (run, components) = self._open.popitem(last=False)
            log.warning("mlobs-otel: run %s still open after %d newer runs; exported as is",
                        run_id, self._max_open_runs)
            self._emit(run, components)

    def _on_run(self, run: RunRecord) -> None:
        _, components = self._open.pop(run.run_id, (None, []))
        if run.status == "running":
            self._open[run.run_id] = (run, components)
        else:
            self._emit(run, components)

    def _on_component(self, component: ComponentRecord) -> None:
        parent = self._ended.get(component.run_id)
        if parent is not None:
            self._component_span(component, parent)
            return
        run, components = self._open.setdefault(component.run_id, (None, []))
        components.append(component)

    def _emit(self, run: RunRecord | None, components: list[ComponentRecord]) -> None:
        if run is None:  # components of a run whose record never came: no parent
            for component in components:
                self._component_span(component, None)
            return
        end = run.finished_at or max((c.finished_at for c in components),
                                     default=run.started_at)
        span = self._tracer.start_span(RUN_SPAN_NAME, kind=SpanKind.INTERNAL,
                                       start_time=_ns(run.started_at),
                                       attributes=_run_attributes(run))
        if run.status == "error":
            span.set_status(Status(StatusCode.ERROR, f"{run.error_code}: "
                                                     f"{run.error_message or ''}"[:500]))
        context = trace.set_span_in_context(span)
        for component in components:
            self._component_span(component, context)
        span.end(end_time=_ns(end))
        self._ended[run.run_id] = context
        while len(self._ended) > self._max_open_runs:
            self._ended.popitem(last=False)

    def _component_span(self, c: ComponentRecord, context: Any) -> None:
        span = self._tracer.start_span(c.component, context=context, kind=SpanKind.INTERNAL,
                                       start_time=_ns(c.started_at),
                                       attributes=_component_attributes(c))
        for event in c.events:
            span.add_event(f"mlobs.{event.kind}", attributes=_attributes(event.attributes),
                           timestamp=_ns(event.occurred_at))
        if c.cache_status == "miss":
            span.add_event("mlobs.cache_miss",
                           attributes=_attributes({"reason": c.cache_miss_reason}),
                           timestamp=_ns(c.started_at))
        if c.status == "error":
            span.set_status(Status(StatusCode.ERROR,
                                   f"{c.error_code}: {c.error_message or ''}"[:500]))
        span.end(end_time=_ns(c.finished_at))

    def force_flush(self, timeout_s: float) -> bool:
        flush = getattr(self._provider, "force_flush", None)
        return bool(flush(int(timeout_s * 1000))) if flush is not None else True

    def shutdown(self, timeout_s: float) -> None:
        for run, components in list(self._open.values()):
            self._emit(run, components)
        self._open.clear()
        self.force_flush(timeout_s)
        if self._owned:
            self._provider.shutdown()


def create_sink(settings: Any) -> OtelSink:
    """Entry point of the ``mlobs.sinks`` group: the ``otel`` sink."""
    return OtelSink()
