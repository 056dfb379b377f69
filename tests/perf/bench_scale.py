"""The whole cost of recording, on every thread, as a run grows.

One ``mlobs.run`` of N components, each body 0.5 ms, timed from the run's start until
everything recorded is exported (``mlobs.flush()`` returns; for OpenTelemetry
``force_flush()``), against the same loop run bare, all in this process and this run:

* bare:          the loop of bodies alone
* otel:          an OpenTelemetry SDK span per component, a BatchSpanProcessor, and an
                 exporter that encodes each batch to OTLP protobuf on the export thread
                 (what an OTLP exporter does before it sends)
* mlobs, off:    ``@mlobs.component`` with sinks off (memory probes on, as by default)
* mlobs:         the default sinks (manifest + warehouse) on an existing SQLite warehouse

Two bodies: a CPU-bound Python loop (holds the GIL, so any work on another thread of the
process delays it) and ``time.sleep`` (releases the GIL; the pipeline thread then waits
for it on waking whenever another thread holds it). Figures are wall time per component
over bare (the overhead a pipeline sees) and the process's CPU time (every thread) per
component over bare, for N = 100, 1,000 and 10,000; small N are repeated so that each
figure covers at least ``MIN_COMPONENTS`` components, and the variants are interleaved so
that drift in machine load hits them alike.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

BODY_S = 0.0005
SIZES = (100, 1_000, 10_000)
MIN_COMPONENTS = 10_000
VARIANTS = ("bare", "otel", "mlobs_off", "mlobs")


def cpu_body() -> None:
    end = time.perf_counter() + BODY_S
    while time.perf_counter() < end:
        pass


def sleep_body() -> None:
    time.sleep(BODY_S)


BODIES: dict[str, Callable[[], None]] = {"cpu": cpu_body, "sleep": sleep_body}


def _otel_provider():
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class EncodingExporter(SpanExporter):
        """Encodes every batch to OTLP protobuf bytes and drops them (no network)."""

        encoded_bytes = 0

        def export(self, spans):
            self.encoded_bytes += len(encode_spans(spans).SerializeToString())
            return SpanExportResult.SUCCESS

        def shutdown(self):
            pass

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(EncodingExporter()))
    return provider


class Timed:
    """Wall and process CPU (all threads) of one measured block, in seconds."""

    def __enter__(self) -> Timed:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_s = time.perf_counter() - self._wall
        self.cpu_s = time.process_time() - self._cpu


def run_bare(body: Callable[[], None], n: int) -> Timed:
    with Timed() as timed:
        for _ in range(n):
            body()
    return timed


def run_otel(provider, body: Callable[[], None], n: int) -> Timed:
    tracer = provider.get_tracer("bench")
    with Timed() as timed:
        with tracer.start_as_current_span("run"):
            for _ in range(n):
                with tracer.start_as_current_span("component"):
                    body()
        provider.force_flush()
    return timed


def run_mlobs(body: Callable[[], None], n: int) -> Timed:
    import mlobs
    instrumented = mlobs.component("body")(body)
    with Timed() as timed:
        with mlobs.run("bench", "video"):
            for _ in range(n):
                instrumented()
        mlobs.flush()
    return timed


def configure(variant: str, root: Path) -> None:
    import mlobs
    if variant == "mlobs_off":
        mlobs.configure(root=root, sinks=[])
    else:
        mlobs.configure(root=root, sinks=["manifest", "warehouse"])


def measure(body_name: str, n: int, reps: int, roots: dict[str, Path], provider
            ) -> dict[str, list[Timed]]:
    body = BODIES[body_name]
    results: dict[str, list[Timed]] = {v: [] for v in VARIANTS}
    for _ in range(reps):
        for variant in VARIANTS:
            if variant == "bare":
                results[variant].append(run_bare(body, n))
            elif variant == "otel":
                results[variant].append(run_otel(provider, body, n))
            else:
                configure(variant, roots[variant])
                results[variant].append(run_mlobs(body, n))
    return results


def main() -> dict[str, float]:
    import mlobs
    from mlobs.recording.recorder import set_recorder
    figures: dict[str, float] = {}
    provider = _otel_provider()
    with tempfile.TemporaryDirectory(prefix="mlobs-bench-scale-") as tmp:
        roots = {v: Path(tmp) / v for v in VARIANTS}
        for variant in ("mlobs", "mlobs_off"):  # the warehouse exists before timing
            configure(variant, roots[variant])
            run_mlobs(cpu_body, 10)
        print("whole cost of recording per component, all threads (body 0.5 ms; µs over "
              "the bare loop; wall | process CPU)")
        for body_name in BODIES:
            print(f"  {body_name} body")
            print(f"    {'N':>6} {'otel':>17} {'mlobs sinks off':>17} {'mlobs default':>17}"
                  f" {'mlobs/otel':>11}")
            for n in SIZES:
                reps = max(1, MIN_COMPONENTS // n)
                results = measure(body_name, n, reps, roots, provider)
                bare_wall = statistics.median(t.wall_s for t in results["bare"])
                bare_cpu = statistics.median(t.cpu_s for t in results["bare"])
                over: dict[str, tuple[float, float]] = {}
                for variant in VARIANTS[1:]:
                    wall = statistics.median(t.wall_s for t in results[variant])
                    cpu = statistics.median(t.cpu_s for t in results[variant])
                    over[variant] = ((wall - bare_wall) / n * 1e6, (cpu - bare_cpu) / n * 1e6)
                ratio = over["mlobs"][0] / over["otel"][0] if over["otel"][0] > 0 else None
                cells = " ".join(f"{w:8.1f} | {c:6.1f}" for w, c in over.values())
                print(f"    {n:>6} {cells} {ratio if ratio is None else f'{ratio:10.2f}×'}")
                for variant, (wall_us, cpu_us) in over.items():
                    figures[f"{body_name}_{n}_{variant}_overhead_us"] = wall_us
                    figures[f"{body_name}_{n}_{variant}_cpu_us"] = cpu_us
                if ratio is not None:
                    figures[f"{body_name}_{n}_vs_otel"] = ratio
            small, large = (figures[f"{body_name}_{n}_mlobs_overhead_us"]
                            for n in (SIZES[0], SIZES[-1]))
            growth = large / small if small > 0 else float("inf")
            figures[f"{body_name}_growth_{SIZES[-1]}_vs_{SIZES[0]}"] = growth
            print(f"    overhead at N={SIZES[-1]:,} / at N={SIZES[0]}: {growth:.2f}× "
                  "(target ≤ 1.2×: flat in run size)")
    set_recorder(None)
    mlobs.configure  # noqa: B018 - keep the import used when mlobs is reconfigured later
    provider.shutdown()
    return figures


if __name__ == "__main__":
    main()
