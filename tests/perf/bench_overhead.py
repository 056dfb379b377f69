"""Caller-thread overhead per component (ARCHITECTURE §1: "cheap on the caller's thread").

Compares, per call of a no-op function, in microseconds (median over batches):

* bare:        the undecorated no-op
* two clocks:  a bare decorator reading ``perf_counter_ns`` twice
* otel span:   an OpenTelemetry SDK span with no span processors
* mlobs:       ``@mlobs.component`` inside a run, manifest and warehouse sinks on
* memory probes: the same with memory probes on (GPU probes off) against memory probes
  off; their difference is what the start/end RSS readings and the sampler's bookkeeping
  cost the caller's thread (target ≤ 2 µs)
* exporter sinks (otel, prometheus): the same with the exporter's sink added, against
  without it; the difference is what the exporter costs the caller's thread

Runs of ``COMPONENTS_PER_RUN`` components each, so run start/end is not in the figures.
"""

from __future__ import annotations

import functools
import statistics
import tempfile
import time
from collections.abc import Callable

BATCH = 100
BATCHES = 300
COMPONENTS_PER_RUN = 100


def per_call_us(call: Callable[[], None], batches: int = BATCHES) -> float:
    """Median over ``batches`` of the mean time of ``BATCH`` calls, in µs."""
    for _ in range(BATCH):
        call()
    samples = []
    for _ in range(batches):
        start = time.perf_counter_ns()
        for _ in range(BATCH):
            call()
        samples.append((time.perf_counter_ns() - start) / BATCH / 1000)
    return statistics.median(samples)


def noop() -> None:
    return None


def two_clocks(fn: Callable[[], None]) -> Callable[[], None]:
    @functools.wraps(fn)
    def wrapper() -> None:
        start = time.perf_counter_ns()
        try:
            fn()
        finally:
            wrapper.last_ns = time.perf_counter_ns() - start  # type: ignore[attr-defined]
    return wrapper


def otel_span_call() -> Callable[[], None]:
    from opentelemetry.sdk.trace import TracerProvider
    tracer = TracerProvider().get_tracer("bench")

    def call() -> None:
        with tracer.start_as_current_span("noop"):
            noop()
    return call


def mlobs_per_call_us(root: str, extra_sinks: tuple = (), **settings: bool
                      ) -> tuple[float, dict[str, int]]:
    import mlobs
    mlobs.configure(root=root, sinks=["manifest", "warehouse"], extra_sinks=extra_sinks,
                    **settings)
    instrumented = mlobs.component("noop")(noop)
    samples = []
    for _ in range(BATCHES // (COMPONENTS_PER_RUN // BATCH) + 5):
        with mlobs.run("bench", "video"):
            for _ in range(COMPONENTS_PER_RUN // BATCH):
                start = time.perf_counter_ns()
                for _ in range(BATCH):
                    instrumented()
                samples.append((time.perf_counter_ns() - start) / BATCH / 1000)
    stats = {s.name: s.failed + s.dropped for s in mlobs.sink_stats()}
    return statistics.median(samples[5:]), stats


def root_for_sinks() -> str:
    return tempfile.mkdtemp(prefix="mlobs-bench-")


def exporter_sink_extra_us(root: str, name: str, make_sink: Callable[[], object] | None,
                           what: str) -> float | None:
    """Caller-thread cost the exporter sink ``name`` adds per component (median of 3
    alternating rounds with and without it); None when its package is not installed
    (``make_sink`` None)."""
    if make_sink is None:
        print(f"{name} sink: mlobs-{name} not installed, not measured")
        return None
    with_sink, without = [], []
    for _ in range(3):
        without.append(mlobs_per_call_us(root)[0])
        with_sink.append(mlobs_per_call_us(root, extra_sinks=(make_sink(),))[0])
    on, off = statistics.median(with_sink), statistics.median(without)
    print(f"{name} exporter sink ({what}; median of 3 rounds, µs)")
    print(f"  manifest + warehouse sinks                     {off:8.3f} µs")
    print(f"  {f'manifest + warehouse + {name} sinks':<47}{on:8.3f} µs")
    print(f"  the {name} sink's extra caller-thread cost: {on - off:.3f} µs per component")
    return on - off


def otel_sink() -> Callable[[], object] | None:
    try:
        from opentelemetry.sdk.trace import TracerProvider

        from mlobs_otel import OtelSink
    except ImportError:
        return None
    return lambda: OtelSink(TracerProvider())


def prometheus_sink() -> Callable[[], object] | None:
    try:
        from prometheus_client import CollectorRegistry

        from mlobs_prometheus import PrometheusSink
    except ImportError:
        return None
    return lambda: PrometheusSink(CollectorRegistry())


def main() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as root:
        bare = per_call_us(noop)
        clocks = per_call_us(two_clocks(noop))
        otel = per_call_us(otel_span_call())
        instrumented, lost = mlobs_per_call_us(root)
        # Alternate the two settings so drift in machine load hits both alike.
        probes_on, probes_off = [], []
        for _ in range(3):
            probes_off.append(mlobs_per_call_us(root, memory_probes=False)[0])
            probes_on.append(mlobs_per_call_us(root, memory_probes=True, gpu_probes=False)[0])
    print("caller-thread cost per component call (median, µs)")
    rows = [("bare no-op", bare), ("decorator + 2 perf_counter_ns", clocks),
            ("OpenTelemetry SDK span (no processors)", otel),
            ("mlobs component (manifest + warehouse sinks)", instrumented)]
    for label, value in rows:
        print(f"  {label:<46} {value:8.3f} µs   {value / otel:5.2f}× otel span")
    overhead = instrumented - bare
    print(f"  mlobs overhead over the bare call: {overhead:.3f} µs "
          f"(target ≤ 5 µs: {'met' if overhead <= 5 else 'NOT met'}); "
          f"{overhead / (otel - bare):.2f}× an otel span's overhead")
    print(f"  records failed or dropped by sinks during the run: {lost}")
    from mlobs.probes.rss import make_rss_reader
    read_us = per_call_us(make_rss_reader())
    on, off = statistics.median(probes_on), statistics.median(probes_off)
    extra = on - off
    print("memory probes (median of 3 alternating rounds, µs per component)")
    print(f"  memory probes off                              {off:8.3f} µs")
    print(f"  memory probes on, GPU probes off               {on:8.3f} µs")
    print(f"  memory probes' extra cost: {extra:.3f} µs "
          f"(target ≤ 2 µs: {'met' if extra <= 2 else 'NOT met'}); "
          f"{on / off:.2f}× the cost without them")
    print(f"  one RSS reading (/proc/self/statm pread) on this machine: {read_us:.3f} µs; "
          "back-to-back components take about one per component")
    otel_sink_extra = exporter_sink_extra_us(root_for_sinks(), "otel", otel_sink(),
                                             "spans made on its worker thread")
    prometheus_sink_extra = exporter_sink_extra_us(
        root_for_sinks(), "prometheus", prometheus_sink(),
        "metrics updated on its worker thread")
    return {"bare_us": bare, "two_clocks_us": clocks, "otel_span_us": otel,
            "mlobs_us": instrumented, "overhead_us": overhead,
            "overhead_vs_otel_span": overhead / (otel - bare) if otel > bare else None,
            "memory_probes_extra_us": extra,
            "rss_read_us": read_us, "otel_sink_extra_us": otel_sink_extra,
            "prometheus_sink_extra_us": prometheus_sink_extra}


if __name__ == "__main__":
    main()
