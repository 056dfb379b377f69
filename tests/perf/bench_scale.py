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
component over bare, for N = 100, 1,000 and 10,000, and the CPU time of mlobs's
warehouse writer process per component (work moved off the pipeline's process is still
work), and, for the default sinks, the milliseconds from the last component's end until
the flush returns (the run's end waits for the writer's load into the warehouse: at small
N this fixed cost is most of the overhead). Each mlobs variant is
configured once, as a pipeline process is; small N are repeated so that each figure covers
at least ``MIN_COMPONENTS`` components, and the variants are interleaved so that drift in
machine load hits them alike.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cpu_accounting import children_cpu_s  # noqa: E402 - same folder

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
    """Wall, this process's CPU (all threads) and its children's CPU (the warehouse
    writer) over one measured block, in seconds."""

    #: mlobs runs: from the last component's end until the flush returned, in seconds.
    end_s = 0.0

    def __enter__(self) -> Timed:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        self._children = children_cpu_s()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_s = time.perf_counter() - self._wall
        self.cpu_s = time.process_time() - self._cpu
        self.children_cpu_s = children_cpu_s() - self._children


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
            loop_end = time.perf_counter()
        mlobs.flush()
    timed.end_s = time.perf_counter() - loop_end  # the run's end and the flush
    return timed


def make_recorders(tmp: Path):
    """One recorder per mlobs variant, made once, as a pipeline process configures once
    (its warehouse writer then starts once, not per run)."""
    import mlobs
    from mlobs.recording.recorder import get_recorder, set_recorder
    recorders = {}
    for variant, sinks in (("mlobs_off", []), ("mlobs", ["manifest", "warehouse"])):
        mlobs.configure(root=tmp / variant, sinks=sinks)
        recorders[variant] = get_recorder()
        run_mlobs(cpu_body, 10)  # the warehouse and its writer exist before timing
        set_recorder(None, shutdown_previous=False)
    return recorders


def measure(body_name: str, n: int, reps: int, recorders, provider
            ) -> dict[str, list[Timed]]:
    from mlobs.recording.recorder import set_recorder
    body = BODIES[body_name]
    results: dict[str, list[Timed]] = {v: [] for v in VARIANTS}
    for _ in range(reps):
        for variant in VARIANTS:
            if variant == "bare":
                results[variant].append(run_bare(body, n))
            elif variant == "otel":
                results[variant].append(run_otel(provider, body, n))
            else:
                set_recorder(recorders[variant], shutdown_previous=False)
                results[variant].append(run_mlobs(body, n))
                set_recorder(None, shutdown_previous=False)
    return results


def main() -> dict[str, float]:
    figures: dict[str, float] = {}
    provider = _otel_provider()
    with tempfile.TemporaryDirectory(prefix="mlobs-bench-scale-") as tmp:
        recorders = make_recorders(Path(tmp))
        print("whole cost of recording per component (body 0.5 ms; µs over the bare loop: "
              "wall | CPU of the pipeline's process, all threads; writer: CPU of mlobs's "
              "warehouse writer process; run end: ms from the last component's end until "
              "mlobs.flush() returns, default sinks)")
        for body_name in BODIES:
            print(f"  {body_name} body")
            print(f"    {'N':>6} {'otel':>17} {'mlobs sinks off':>17} {'mlobs default':>17}"
                  f" {'writer':>7} {'run end':>8} {'mlobs/otel':>11}")
            walls: dict[int, float] = {}
            for n in SIZES:
                reps = max(1, MIN_COMPONENTS // n)
                results = measure(body_name, n, reps, recorders, provider)
                bare_wall = statistics.median(t.wall_s for t in results["bare"])
                bare_cpu = statistics.median(t.cpu_s for t in results["bare"])
                over: dict[str, tuple[float, float]] = {}
                for variant in VARIANTS[1:]:
                    wall = statistics.median(t.wall_s for t in results[variant])
                    cpu = statistics.median(t.cpu_s for t in results[variant])
                    over[variant] = ((wall - bare_wall) / n * 1e6, (cpu - bare_cpu) / n * 1e6)
                # A figure at or below the bare loop's is noise (a busy machine): not reported,
                # so that its budget says "unknown" rather than pass on a negative.
                ratio = (over["mlobs"][0] / over["otel"][0]
                         if over["otel"][0] > 0 and over["mlobs"][0] > 0 else None)
                walls[n] = over["mlobs"][0]
                writer_us = statistics.median(
                    t.children_cpu_s for t in results["mlobs"]) / n * 1e6
                figures[f"{body_name}_{n}_writer_cpu_us"] = writer_us
                end_ms = statistics.median(t.end_s for t in results["mlobs"]) * 1e3
                figures[f"{body_name}_{n}_run_end_ms"] = end_ms
                cells = " ".join(f"{w:8.1f} | {c:6.1f}" for w, c in over.values())
                shown = "n/a" if ratio is None else f"{ratio:10.2f}×"
                print(f"    {n:>6} {cells} {writer_us:7.1f} {end_ms:8.1f} {shown:>11}")
                for variant, (wall_us, cpu_us) in over.items():
                    if wall_us > 0:
                        figures[f"{body_name}_{n}_{variant}_overhead_us"] = wall_us
                    figures[f"{body_name}_{n}_{variant}_cpu_us"] = cpu_us
                if ratio is not None:
                    figures[f"{body_name}_{n}_vs_otel"] = ratio
            small, large = walls[SIZES[0]], walls[SIZES[-1]]
            if small <= 0 or large <= 0:
                # An overhead below the bare loop's is the machine's noise, not a figure:
                # the growth is left unreported (the budget then says "unknown").
                print(f"    overhead at N={SIZES[-1]:,} / at N={SIZES[0]}: not measurable "
                      "(an overhead came out below the bare loop's: the machine is busy)")
                continue
            growth = large / small
            figures[f"{body_name}_growth_{SIZES[-1]}_vs_{SIZES[0]}"] = growth
            print(f"    overhead at N={SIZES[-1]:,} / at N={SIZES[0]}: {growth:.2f}× "
                  "(target ≤ 1.2×: flat in run size)")
        for recorder in recorders.values():
            recorder.shutdown()
    provider.shutdown()
    return figures


if __name__ == "__main__":
    main()
