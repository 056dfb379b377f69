"""The ``otel`` exporter: one trace per run, one child span per component, ``mlobs.*``."""

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("mlobs_otel")

from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)
from opentelemetry.trace import StatusCode  # noqa: E402

import mlobs  # noqa: E402
from mlobs_otel import OtelSink  # noqa: E402

VERSIONS = {"producer_version": "1", "schema_version": "1"}
WHISPER = mlobs.ModelRef("whisper-small", "r1", "sha256:" + "a" * 64, engine="torch",
                         device="cuda:0")


@pytest.fixture
def spans(tmp_path):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    mlobs.configure(root=tmp_path, sinks=[], extra_sinks=[OtelSink(provider)])
    yield exporter
    mlobs.configure(sinks=[])


def pipeline() -> str:
    with mlobs.run("youtube", "abc", profile=mlobs.AnalysisProfile("p", optional={"ocr"}),
                   pipeline_version="1.4.0") as run:
        with run.component("asr", models=[WHISPER], batch_size=8,
                           on_oom=mlobs.HalveBatch(), cache=True, **VERSIONS) as c:
            for attempt in c.attempts():
                with attempt:
                    if c.batch_size == 8:
                        raise MemoryError("Unable to allocate 8.00 GiB for an array")
                    c.set_result(["hello"])
        with run.component("ocr"):
            raise mlobs.ComponentError("model_load_failed", "weights missing")
    mlobs.flush()
    return run.run_id


def test_one_trace_per_run_with_a_child_per_component(spans):
    run_id = pipeline()
    finished = spans.get_finished_spans()
    [root] = [s for s in finished if s.name == "mlobs.run"]
    children = {s.name: s for s in finished if s.name != "mlobs.run"}
    assert set(children) == {"asr", "ocr"}
    assert {s.context.trace_id for s in finished} == {root.context.trace_id}
    assert all(s.parent.span_id == root.context.span_id for s in children.values())
    assert root.attributes["mlobs.run_id"] == run_id
    assert root.attributes["mlobs.status"] == "ok"
    assert root.start_time <= min(s.start_time for s in children.values())
    assert root.end_time >= max(s.end_time for s in children.values())

    asr = children["asr"]
    assert asr.attributes["mlobs.component"] == "asr"
    assert asr.attributes["mlobs.status"] == "ok"
    assert asr.attributes["mlobs.batch_size"] == 4
    assert asr.attributes["mlobs.oom_count"] == 1
    assert asr.attributes["mlobs.device"] == "cuda:0"
    assert asr.attributes["mlobs.model_signature"] == mlobs.model_signature([WHISPER])
    assert asr.attributes["mlobs.cache_status"] == "miss"
    assert [e.name for e in asr.events] == ["mlobs.oom", "mlobs.cache_miss"]
    assert asr.events[0].attributes["batch_size"] == 8
    assert asr.events[1].attributes["reason"] == "no_entry"

    ocr = children["ocr"]
    assert ocr.status.status_code is StatusCode.ERROR
    assert ocr.attributes["mlobs.error_code"] == "model_load_failed"
    assert "mlobs.empty_reason" not in ocr.attributes


def test_a_failed_run_is_an_error_span(spans):
    with pytest.raises(RuntimeError):
        with mlobs.run("youtube", "abc") as run:
            with run.component("asr"):
                raise RuntimeError("boom")
    mlobs.flush()
    [root] = [s for s in spans.get_finished_spans() if s.name == "mlobs.run"]
    assert root.status.status_code is StatusCode.ERROR
    assert root.attributes["mlobs.error_code"] == "internal"


def test_the_sink_is_found_by_name_and_uses_the_global_provider(tmp_path):
    child = textwrap.dedent("""
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        import mlobs
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        mlobs.configure(root=__import__("sys").argv[1], sinks=["manifest", "otel"])
        with mlobs.run("youtube", "abc") as run:
            for name in ("cleaning", "chunking"):
                with run.component(name):
                    pass
        mlobs.flush()
        print(sorted(s.name for s in exporter.get_finished_spans()))
    """)
    done = subprocess.run([sys.executable, "-c", child, str(tmp_path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['chunking', 'cleaning', 'mlobs.run']"


def test_an_unknown_sink_name_lists_the_installed_ones():
    with pytest.raises(mlobs.ConfigError, match=r"unknown sink\(s\) \['nope'\].*'otel'"):
        mlobs.configure(sinks=["manifest", "nope"])


def test_the_run_context_carries_the_live_run_spans_traceparent(spans):

    with mlobs.run("youtube", "carrier") as run:
        mlobs.flush()  # the sink starts the run's span at the run's first record
        carrier = run.run_context().carrier
    [root] = spans.get_finished_spans()
    assert carrier == {"traceparent": f"00-{root.context.trace_id:032x}-"
                                      f"{root.context.span_id:016x}-"
                                      f"{root.context.trace_flags:02x}"}


def test_components_of_a_joined_run_are_children_of_its_remote_span(spans):
    import uuid

    from mlobs.core.propagation import RunContext
    from mlobs.hooks.joined_run import JoinedRun
    from mlobs.recording.recorder import get_recorder

    trace_id, span_id = 0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331
    context = RunContext(run_id=str(uuid.uuid4()), platform_id="youtube", video_id="joined",
                         carrier={"traceparent": f"00-{trace_id:032x}-{span_id:016x}-01"})
    with JoinedRun(get_recorder(), context) as run:
        with run.component("embedding", **VERSIONS):
            pass
    mlobs.flush()
    [span] = spans.get_finished_spans()  # no run span here: it belongs to the orchestrator
    assert span.name == "embedding"
    assert span.context.trace_id == trace_id
    assert (span.parent.span_id, span.parent.is_remote) == (span_id, True)


@pytest.fixture
def no_global_provider(monkeypatch):
    monkeypatch.setattr("opentelemetry.trace.get_tracer_provider",
                        lambda: trace.NoOpTracerProvider())


@pytest.mark.parametrize("env, service", [
    ({}, "mlobs"),
    ({"OTEL_SERVICE_NAME": "asr-worker"}, "asr-worker"),
    ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=video-pipeline,team=ml"}, "video-pipeline"),
])
def test_without_a_global_provider_the_service_name_follows_the_otel_variables(
        monkeypatch, no_global_provider, env, service):
    from mlobs_otel.sink import _provider_from_environment
    for name in ("OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    provider, owned = _provider_from_environment()
    try:
        assert owned and provider.resource.attributes["service.name"] == service
    finally:
        provider.shutdown()


def test_otel_traces_exporter_console_prints_the_spans(tmp_path):
    """Without a collector: the spans of a pipeline run, printed on its stdout."""
    script = textwrap.dedent("""
        import mlobs
        with mlobs.run("youtube", "abc") as run:
            with run.component("asr"):
                pass
    """)
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "console", "MLOBS_SINKS": "otel",
           "MLOBS_ROOT": str(tmp_path)}
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert '"name": "mlobs.run"' in result.stdout and '"name": "asr"' in result.stdout


@pytest.mark.parametrize("value, exporters", [("none", []), ("otlp", ["OTLPSpanExporter"]),
                                              ("console,otlp", ["ConsoleSpanExporter",
                                                                "OTLPSpanExporter"])])
def test_otel_traces_exporter_names_the_exporters(monkeypatch, value, exporters):
    from mlobs_otel.sink import _exporters_from_environment
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", value)
    assert [type(e).__name__ for e in _exporters_from_environment()] == exporters


def test_an_unknown_otel_traces_exporter_is_a_config_error_listing_the_installed_ones(
        monkeypatch, no_global_provider):
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin_json")
    with pytest.raises(mlobs.ConfigError, match="'zipkin_json'.*installed: otlp, none, console"):
        mlobs.configure(sinks=["otel"])


def test_runs_past_max_open_runs_are_ended_and_shutdown_ends_the_rest(make_run, caplog):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    sink = OtelSink(provider, max_open_runs=2)
    runs = [make_run(status="running") for _ in range(3)]
    sink.export([run for run, _ in runs])  # three runs still open: the oldest is ended
    assert [s.attributes["mlobs.run_id"] for s in exporter.get_finished_spans()] == \
        [runs[0][0].run_id]
    assert f"run {runs[0][0].run_id} still open after 2 newer runs" in caplog.text
    orphans = [make_run()[1] for _ in range(3)]  # components of runs never seen here
    sink.export([component for components in orphans for component in components])
    assert len(exporter.get_finished_spans()) == 1 + len(orphans[0])  # as root spans
    sink.shutdown(1)
    finished = exporter.get_finished_spans()
    assert len(finished) == 3 + sum(len(components) for components in orphans)
    assert len(caplog.records) == 1  # shutdown ends the others without a warning
    assert all(s.parent is None for s in finished if s.name != "mlobs.run")


def test_a_run_ended_without_its_final_record_ends_at_its_latest_recorded_time(make_run):
    from datetime import timezone
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    sink = OtelSink(provider, max_open_runs=1)
    (run, components), (newer, _) = make_run(status="running"), make_run(status="running")
    sink.export([run, *components])
    sink.export([newer])  # past max_open_runs: the first run is ended as it stands
    [ended] = [s for s in exporter.get_finished_spans() if s.name == "mlobs.run"]
    latest = max(c.finished_at for c in components).astimezone(timezone.utc)
    assert ended.end_time == int(latest.timestamp()) * 10**9 + latest.microsecond * 1000
    sink.shutdown(1)  # no component: the newer run ends where it started
    [_, last] = [s for s in exporter.get_finished_spans() if s.name == "mlobs.run"]
    assert last.end_time == last.start_time
