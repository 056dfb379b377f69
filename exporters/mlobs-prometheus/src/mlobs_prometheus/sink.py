"""The ``prometheus`` sink: mlobs records as Prometheus metrics (ARCHITECTURE §5, §8).

Each finished component invocation observes its duration and memory peaks and counts its
status, cache lookup, OOMs and retries; each finished run (a RunRecord whose status is no
longer ``running``) counts its status. The metrics are listed in
:mod:`mlobs_prometheus.metrics`; every label value passes the label guard
(:mod:`mlobs_prometheus.labels`).

Like every sink it runs on its own worker thread (``mlobs.sinks.base.BatchWorker``): the
pipeline's thread pays only the queue append, and an error here is logged and counted by
the worker, never raised into the pipeline.

The metrics live on the ``registry`` given, or, in prometheus_client's multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``), in that directory's files, which a ``MultiProcessCollector``
on ``registry`` sums over every process. They go out through an HTTP ``/metrics`` server
and/or pushes to a Pushgateway, as the settings say (:mod:`mlobs_prometheus.settings`).
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Iterable
from typing import Any

from mlobs.core.errors import ConfigError
from mlobs.core.records import STATUSES, ComponentRecord, Record, RunRecord, device_kind_of
from mlobs_prometheus.exposition import Exposition, push, serve
from mlobs_prometheus.labels import LabelGuard
from mlobs_prometheus.metrics import MEMORY_KINDS, MlobsMetrics
from mlobs_prometheus.settings import PrometheusSettings, settings_from_env

log = logging.getLogger("mlobs.prometheus")

#: hex characters of the model_signature kept as a label (the signature's short form).
SIGNATURE_LABEL_CHARS = 12
CACHE_RESULTS = ("hit", "miss", "bypass")
#: after a failed push, flushes skip pushing this long (a dead Pushgateway must not slow
#: every run's end); shutdown always tries.
PUSH_RETRY_AFTER_S = 30.0


class RecordsNotExported(Exception):
    """Some records of a batch could not be turned into metrics; the others were.

    ``run_ids`` tells the worker which runs to count as failed.
    """

    def __init__(self, run_ids: set[str], first_error: BaseException) -> None:
        super().__init__(f"{len(run_ids)} run(s) with records not exported; first error: "
                         f"{type(first_error).__name__}: {first_error}")
        self.run_ids = run_ids


def device_kind(device: str | None) -> str:
    """``"cuda:1"`` → ``"cuda"``; ``None`` → ``""`` (the index never becomes a label)."""
    return device_kind_of(device).strip().lower() if device else ""


def short_signature(signature: str | None) -> str:
    """The first 12 hex characters of a model_signature (``""`` without models)."""
    return "" if not signature else signature[:SIGNATURE_LABEL_CHARS]


class PrometheusSink:
    """Turns mlobs records into Prometheus metrics (see the module docstring).

    Args:
        registry: a ``prometheus_client.CollectorRegistry`` this sink alone uses. Its
            metrics are registered on it, or, in multiprocess mode, a
            ``MultiProcessCollector`` over ``settings.multiprocess_dir`` is. The HTTP server
            and the pushes expose this registry.
        settings: exposition, push and label-guard settings; default: no server, no
            pushes, 200 values per label, single-process mode.

    Raises:
        ConfigError: multiprocess mode is asked for but prometheus_client was imported
            before ``PROMETHEUS_MULTIPROC_DIR`` was set (or the reverse), or the HTTP port
            cannot be bound outside multiprocess mode.
        ValueError: ``registry`` already holds mlobs metrics.
    """

    name = "prometheus"

    def __init__(self, registry: Any, settings: PrometheusSettings | None = None) -> None:
        self.settings = settings = settings or PrometheusSettings()
        self.registry = registry
        multiprocess = _check_multiprocess_mode(settings)
        if multiprocess:
            from prometheus_client.multiprocess import MultiProcessCollector

            # Metrics are registered nowhere in this mode; the collector reads every
            # process's files (prometheus_client's multiprocess documentation).
            self.metrics = MlobsMetrics(None, **_buckets_of(settings))
            MultiProcessCollector(registry, path=str(settings.multiprocess_dir))
        else:
            self.metrics = MlobsMetrics(registry, **_buckets_of(settings))
        self.guard = LabelGuard(settings.max_label_values,
                                on_overflow=lambda label: self.metrics.label_overflow
                                .labels(label).inc())
        for status in ("ok", "error"):  # zero series, so the first error is an increase
            self.metrics.runs.labels(status)
        self._seen_components: set[tuple[str, str]] = set()
        self._cached_components: set[str] = set()
        self._changed_since_push = False
        self._push_blocked_until = 0.0
        #: failed pushes since the sink was made.
        self.push_failures = 0
        self._exposition = self._serve(multiprocess)

    def _serve(self, multiprocess: bool) -> Exposition | None:
        port = self.settings.port
        if port is None:
            return None
        try:
            return serve(self.settings.addr, port, self.registry)
        except OSError as exc:
            if multiprocess and exc.errno == errno.EADDRINUSE:
                # Every worker process tries; one serves the sum of all of them.
                log.info("mlobs-prometheus: %s:%d is in use; in multiprocess mode another "
                         "process serves the summed metrics", self.settings.addr, port)
                return None
            raise ConfigError(f"MLOBS_PROMETHEUS_PORT: cannot serve metrics on "
                              f"{self.settings.addr}:{port}: {exc}") from exc

    @property
    def http_port(self) -> int | None:
        """The port this sink's ``/metrics`` server listens on (None: no server)."""
        return None if self._exposition is None else self._exposition.port

    # -- sink contract (worker thread) -----------------------------------------------
    def export(self, records: list[Record]) -> None:
        """Update the metrics from a batch of run and component records.

        Raises:
            RecordsNotExported: some records could not be observed (the rest were).
        """
        failed: set[str] = set()
        first_error: BaseException | None = None
        for record in records:
            try:
                if isinstance(record, RunRecord):
                    self._observe_run(record)
                else:
                    self._observe_component(record)
            except Exception as exc:  # one odd record must not cost the batch
                failed.add(getattr(record, "run_id", "?"))
                first_error = first_error or exc
        self._changed_since_push = True
        if first_error is not None:
            raise RecordsNotExported(failed, first_error)

    def force_flush(self, timeout_s: float) -> bool:
        """Push to the Pushgateway when one is set and something changed since the last
        push (not within ``PUSH_RETRY_AFTER_S`` of a failed push).

        Raises:
            OSError: the push failed (the worker logs it and keeps it as ``last_error``).
        """
        if self.settings.pushgateway is None or not self._changed_since_push:
            return True
        if time.monotonic() < self._push_blocked_until:
            return False
        self._push(min(timeout_s, self.settings.push_timeout_s))
        return True

    def shutdown(self, timeout_s: float) -> None:
        """Push one last time (when a Pushgateway is set) and stop the HTTP server."""
        try:
            if self.settings.pushgateway is not None and self._changed_since_push:
                self._push(min(timeout_s, self.settings.push_timeout_s))
        except OSError as exc:
            log.warning("mlobs-prometheus: last push to %s failed: %s",
                        self.settings.pushgateway, exc)
        finally:
            if self._exposition is not None:
                self._exposition.release()
                self._exposition = None

    # -- records ---------------------------------------------------------------------
    def _observe_run(self, run: RunRecord) -> None:
        if run.status == "running":  # a run still going: its start or a heartbeat
            return
        self.metrics.runs.labels(self.guard.value("status", run.status)).inc()

    def _observe_component(self, c: ComponentRecord) -> None:
        guard, m = self.guard, self.metrics
        # Everything that can fail comes first, so a record is counted whole or not at all.
        duration_s = float(c.duration_ms) / 1000.0
        peaks = [(kind, float(value)) for kind, value in _memory_peaks(c)]
        oom_count, retry_count = int(c.oom_count or 0), int(c.retry_count or 0)
        component = guard.value("component", c.component)
        status = guard.value("status", c.status)
        device = guard.value("device", device_kind(c.device_used))
        signature = guard.value("model_signature", short_signature(c.model_signature))
        result = guard.value("result", c.cache_status) if c.cache_status else None

        self._zero_series(component, device, cached=result is not None)
        m.component_duration.labels(component, status, device, signature).observe(duration_s)
        m.component_runs.labels(component, status).inc()
        if result is not None:
            m.cache_lookups.labels(component, result).inc()
        if oom_count:
            m.oom.labels(component, device).inc(oom_count)
        if retry_count:
            m.retries.labels(component).inc(retry_count)
        for kind, value in peaks:
            m.peak_memory.labels(component, kind).observe(value)

    def _zero_series(self, component: str, device: str, *, cached: bool) -> None:
        """Create a component's counters at 0 when it is first seen, so that the first
        error, OOM or retry is an increase (a series that appears at 1 is not)."""
        m = self.metrics
        if (component, device) not in self._seen_components:
            self._seen_components.add((component, device))
            for status in STATUSES:
                m.component_runs.labels(component, status)
            m.oom.labels(component, device)
            m.retries.labels(component)
        if cached and component not in self._cached_components:
            self._cached_components.add(component)
            for result in CACHE_RESULTS:
                m.cache_lookups.labels(component, result)

    def _push(self, timeout_s: float) -> None:
        settings = self.settings
        assert settings.pushgateway is not None
        try:
            push(settings.pushgateway, settings.job, self.registry,
                 grouping_key=settings.grouping_key, timeout_s=timeout_s)
        except OSError:
            self.push_failures += 1
            self._push_blocked_until = time.monotonic() + PUSH_RETRY_AFTER_S
            raise
        self._changed_since_push = False


def _memory_peaks(c: ComponentRecord) -> Iterable[tuple[str, Any]]:
    for kind, field_name in MEMORY_KINDS.items():
        value = getattr(c, field_name)
        if value is not None:
            yield kind, value


def _check_multiprocess_mode(settings: PrometheusSettings) -> bool:
    """Whether to use multiprocess mode; refuses a mode prometheus_client is not in."""
    from prometheus_client import values

    # prometheus_client picks its value storage once, when it is first imported.
    client_multiprocess = bool(getattr(values.ValueClass, "_multiprocess", False))
    wanted = settings.multiprocess_dir is not None
    if wanted and not client_multiprocess:
        raise ConfigError("PROMETHEUS_MULTIPROC_DIR was set after prometheus_client was "
                          "imported, so it is not in multiprocess mode; set the variable "
                          "before the process starts")
    if client_multiprocess and not wanted:
        raise ConfigError("prometheus_client is in multiprocess mode (PROMETHEUS_MULTIPROC_DIR "
                          "was set when it was imported) but no multiprocess directory was "
                          "given to the prometheus sink")
    return wanted


def create_sink(settings: Any) -> PrometheusSink:
    """Entry point of the ``mlobs.sinks`` group: the ``prometheus`` sink.

    Args:
        settings: the resolved ``mlobs.core.config.Settings`` (unused: the exporter's own
            settings come from ``MLOBS_PROMETHEUS_*`` and ``PROMETHEUS_MULTIPROC_DIR``).

    Raises:
        ConfigError: invalid exporter settings (see :mod:`mlobs_prometheus.settings`).
    """
    from prometheus_client import CollectorRegistry
    return PrometheusSink(CollectorRegistry(), settings_from_env())


def _buckets_of(settings: PrometheusSettings) -> dict[str, tuple[float, ...]]:
    return {"duration_buckets_s": settings.duration_buckets_s,
            "memory_buckets_bytes": settings.memory_buckets_bytes}
