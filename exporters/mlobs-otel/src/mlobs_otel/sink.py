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

Spans are made on the sink's worker thread with the recorded timestamps, so the
pipeline's thread pays only the sink queue's append. The run's span starts at the run's
first record and ends at its final one; each component's span is made when its record
arrives. A run still open when the sink shuts down (or past ``max_open_runs``) is ended
as it stands (status ``running``), at its latest recorded time.

Across processes: the run span's W3C ``traceparent`` is offered as a carrier field of the
run's context (:mod:`mlobs.core.propagation`), which the Celery integration sends with each
task; in a worker, components of a joined run become children of that remote span, so a
run spread over many workers is one trace.

The tracer provider is the one given, else the application's global provider when it set
one, else a provider built from the standard ``OTEL_*`` variables: the exporters
``OTEL_TRACES_EXPORTER`` names (default ``otlp``: OTLP over HTTP to
``OTEL_EXPORTER_OTLP_ENDPOINT``; ``console`` prints spans; ``none``), ``service.name``
from ``OTEL_SERVICE_NAME`` or ``OTEL_RESOURCE_ATTRIBUTES`` (default ``mlobs``).
"""

from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict
from datetime import datetime
from importlib.metadata import entry_points
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from mlobs import __version__ as mlobs_version
from mlobs.core.errors import ConfigError
from mlobs.core.propagation import (
    joined_context,
    register_carrier_provider,
    unregister_carrier_provider,
)
from mlobs.core.records import ComponentRecord, Record, RunRecord

log = logging.getLogger("mlobs.otel")

RUN_SPAN_NAME = "mlobs.run"
_PROPAGATOR = TraceContextTextMapPropagator()
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


def _error_status(error_code: str | None, error_message: str | None) -> Status:
    return Status(StatusCode.ERROR, f"{error_code}: {error_message or ''}"[:500])


#: The entry point group of span exporters (the SDK's own configuration reads it too).
_EXPORTER_GROUP = "opentelemetry_traces_exporter"


def _exporters_from_environment() -> list[Any]:
    """The span exporters ``OTEL_TRACES_EXPORTER`` names: a comma-separated list of
    entry point names in ``opentelemetry_traces_exporter`` (``console``, ...); ``otlp``
    (the default) is OTLP over HTTP, the protocol this package installs; ``none`` is none.

    Raises:
        ConfigError: a name no installed package provides (the message lists those that
            are installed).
    """
    names = [name.strip() for name in os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")
             if name.strip() and name.strip() != "none"]
    installed = {point.name: point for point in entry_points(group=_EXPORTER_GROUP)}
    exporters = []
    for name in names:
        point = installed.get("otlp_proto_http" if name == "otlp" else name)
        if point is None:
            raise ConfigError(f"OTEL_TRACES_EXPORTER names {name!r}, which no installed "
                              f"package provides; installed: otlp, none, "
                              f"{', '.join(sorted(installed))}")
        exporters.append(point.load()())
    return exporters


def _provider_from_environment() -> tuple[Any, bool]:
    """The global provider when the application set one (owned: False), else an SDK
    provider exporting as the ``OTEL_*`` variables say (owned: True; see
    :func:`_exporters_from_environment`)."""
    current = trace.get_tracer_provider()
    if not isinstance(current, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
        return current, False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    exporters = _exporters_from_environment()
    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": "mlobs"}))
    provider = TracerProvider(resource=resource)
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider, True


class OtelSink:
    """Exports mlobs records as spans (see the module docstring).

    Args:
        tracer_provider: where spans go; default: the global provider, else one built
            from the ``OTEL_*`` environment.
        max_open_runs: runs whose span is open (or whose components wait for the run's
            first record); past it the oldest is exported as it stands.
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
        # run_id -> the run's span, started at its first record and ended at its last
        self._live: OrderedDict[str, Any] = OrderedDict()
        # run_id -> the latest recorded time (ns) of a live run: where its span ends if its
        # final record never comes
        self._last_ns: dict[str, int] = {}
        # run_id -> components that came before any record of their run
        self._held: OrderedDict[str, list[ComponentRecord]] = OrderedDict()
        # run_id -> the ended run span's context, for components that arrive late
        self._ended: OrderedDict[str, Any] = OrderedDict()
        register_carrier_provider(self._carrier_of)

    def _carrier_of(self, run_id: str) -> dict[str, str]:
        """The live run span's ``traceparent`` for a run context sent to other processes
        (called on the sending thread; a dict lookup is safe beside the sink thread)."""
        carrier: dict[str, str] = {}
        span = self._live.get(run_id)
        if span is not None:
            _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
        return carrier

    def export(self, records: list[Record]) -> None:
        for record in records:
            if isinstance(record, RunRecord):
                self._on_run(record)
            else:
                self._on_component(record)
        self._end_oldest(keep=self._max_open_runs)

    def _end_oldest(self, keep: int) -> None:
        """End the live runs, and emit the held components (as root spans), beyond the
        ``keep`` newest: a run that never finishes must not hold memory forever."""
        while len(self._live) > keep:
            run_id, span = self._live.popitem(last=False)
            if keep:
                log.warning("mlobs-otel: run %s still open after %d newer runs; ended as "
                            "is", run_id, keep)
            self._end_run(run_id, span, None)
        while len(self._held) > keep:
            _, components = self._held.popitem(last=False)
            for component in components:
                self._component_span(component, None)

    def _on_run(self, run: RunRecord) -> None:
        span = self._live.get(run.run_id)  # kept while running: _carrier_of reads it
        if span is None:
            span = self._tracer.start_span(RUN_SPAN_NAME, kind=SpanKind.INTERNAL,
                                           start_time=_ns(run.started_at),
                                           attributes=_run_attributes(run))
            self._last_ns[run.run_id] = _ns(run.started_at)
        else:
            span.set_attributes(_run_attributes(run))
        context = trace.set_span_in_context(span)
        for component in self._held.pop(run.run_id, ()):
            self._note_end(run.run_id, component)
            self._component_span(component, context)
        if run.status == "running":
            self._live[run.run_id] = span
        else:
            self._live.pop(run.run_id, None)
            self._end_run(run.run_id, span, run)

    def _end_run(self, run_id: str, span: Any, run: RunRecord | None) -> None:
        if run is not None and run.status == "error":
            span.set_status(_error_status(run.error_code, run.error_message))
        last_ns = self._last_ns.pop(run_id, None)
        span.end(end_time=_ns(run.finished_at) if run is not None and run.finished_at
                 else last_ns)
        self._ended[run_id] = trace.set_span_in_context(span)
        while len(self._ended) > self._max_open_runs:
            self._ended.popitem(last=False)

    def _on_component(self, component: ComponentRecord) -> None:
        run_id = component.run_id
        span = self._live.get(run_id)
        if span is not None:
            self._note_end(run_id, component)
        parent = trace.set_span_in_context(span) if span is not None else \
            self._ended.get(run_id)
        if parent is None:
            joined = joined_context(run_id)
            if joined is not None:  # a run opened in another process: its span is there
                parent = _PROPAGATOR.extract(dict(joined.carrier))
        if parent is not None:
            self._component_span(component, parent)
        else:
            self._held.setdefault(run_id, []).append(component)

    def _note_end(self, run_id: str, component: ComponentRecord) -> None:
        end_ns = _ns(component.finished_at)
        if end_ns > self._last_ns.get(run_id, 0):
            self._last_ns[run_id] = end_ns

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
            span.set_status(_error_status(c.error_code, c.error_message))
        span.end(end_time=_ns(c.finished_at))

    def force_flush(self, timeout_s: float) -> bool:
        flush = getattr(self._provider, "force_flush", None)
        return bool(flush(int(timeout_s * 1000))) if flush is not None else True

    def shutdown(self, timeout_s: float) -> None:
        unregister_carrier_provider(self._carrier_of)
        self._end_oldest(keep=0)
        self.force_flush(timeout_s)
        if self._owned:
            self._provider.shutdown()


def create_sink(settings: Any) -> OtelSink:
    """Entry point of the ``mlobs.sinks`` group: the ``otel`` sink."""
    return OtelSink()
