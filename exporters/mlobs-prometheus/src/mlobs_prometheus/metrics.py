"""The metrics the ``prometheus`` sink exports: names, types, labels, buckets.

Base units with suffixes; labels are bounded (see :mod:`mlobs_prometheus.labels`):

=======================================  =========  ===========================================
metric                                   type       labels
=======================================  =========  ===========================================
mlobs_component_duration_seconds         histogram  component, status, device, model_signature
mlobs_component_runs_total               counter    component, status
mlobs_cache_lookups_total                counter    component, result (hit / miss / bypass)
mlobs_oom_total                          counter    component, device
mlobs_retries_total                      counter    component
mlobs_component_peak_memory_bytes        histogram  component, kind (rss / gpu_allocated /
                                                    gpu_reserved)
mlobs_runs_total                         counter    status (ok / error)
mlobs_prometheus_label_overflow_total    counter    label
=======================================  =========  ===========================================

``device`` is the device kind (``cpu``, ``cuda``, ...), never its index; ``model_signature``
is the signature's first 12 hex characters. Memory peaks are a histogram, not a gauge:
histograms add up across processes in prometheus_client's multiprocess mode, where a
gauge would need a per-pid label or keep only a max or the latest value.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Histogram

#: component durations: 0.25 ms (a text cleaning step, a cache hit) up to an hour (a long
#: transcription), roughly ×2–2.5 apart, so that a p95 read by histogram_quantile is
#: within a bucket's width of the true one at every scale. Settable per exporter:
#: ``MLOBS_PROMETHEUS_DURATION_BUCKETS_S`` (:mod:`mlobs_prometheus.settings`).
DURATION_BUCKETS_S = (0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                      0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0,
                      1800.0, 3600.0)
_MIB = 1 << 20
_GIB = 1 << 30
#: memory peaks: 1 MiB up to 128 GiB (a large host's RSS, the largest GPUs); settable:
#: ``MLOBS_PROMETHEUS_MEMORY_BUCKETS_BYTES``.
MEMORY_BUCKETS_BYTES = (1 * _MIB, 4 * _MIB, 16 * _MIB, 64 * _MIB, 256 * _MIB, 512 * _MIB,
                        1 * _GIB, 2 * _GIB, 4 * _GIB, 8 * _GIB, 16 * _GIB, 32 * _GIB,
                        64 * _GIB, 128 * _GIB)

#: ``kind`` label value → ComponentRecord field.
MEMORY_KINDS = {"rss": "peak_rss_bytes",
                "gpu_allocated": "peak_gpu_allocated_bytes",
                "gpu_reserved": "peak_gpu_reserved_bytes"}


class MlobsMetrics:
    """The sink's metric objects, made on ``registry``.

    Args:
        registry: a ``prometheus_client.CollectorRegistry`` to register them on, or
            ``None`` to register them nowhere (prometheus_client's multiprocess mode, where
            a ``MultiProcessCollector`` reads them from ``PROMETHEUS_MULTIPROC_DIR``).
        duration_buckets_s: upper bounds of the duration histogram's buckets, seconds,
            increasing (``+Inf`` is added).
        memory_buckets_bytes: upper bounds of the memory histogram's buckets, bytes.

    Raises:
        ValueError: ``registry`` already holds metrics of these names.
    """

    def __init__(self, registry: Any, *,
                 duration_buckets_s: tuple[float, ...] = DURATION_BUCKETS_S,
                 memory_buckets_bytes: tuple[float, ...] = MEMORY_BUCKETS_BYTES) -> None:
        self.component_duration = Histogram(
            "mlobs_component_duration_seconds",
            "Duration of component invocations in seconds.",
            ["component", "status", "device", "model_signature"],
            buckets=duration_buckets_s, registry=registry)
        self.component_runs = Counter(
            "mlobs_component_runs_total",
            "Component invocations by final status (ok, empty, error).",
            ["component", "status"], registry=registry)
        self.cache_lookups = Counter(
            "mlobs_cache_lookups_total",
            "Component cache lookups by result (hit, miss, bypass).",
            ["component", "result"], registry=registry)
        self.oom = Counter(
            "mlobs_oom_total",
            "Out-of-memory events inside component invocations.",
            ["component", "device"], registry=registry)
        self.retries = Counter(
            "mlobs_retries_total",
            "Transient retries inside component invocations.",
            ["component"], registry=registry)
        self.peak_memory = Histogram(
            "mlobs_component_peak_memory_bytes",
            "Memory peak of each component invocation in bytes, by kind (rss, "
            "gpu_allocated, gpu_reserved).",
            ["component", "kind"], buckets=memory_buckets_bytes, registry=registry)
        self.runs = Counter(
            "mlobs_runs_total",
            "Finished pipeline runs by status (ok, error).",
            ["status"], registry=registry)
        self.label_overflow = Counter(
            "mlobs_prometheus_label_overflow_total",
            "Label values refused by the label guard and recorded as __other__.",
            ["label"], registry=registry)
