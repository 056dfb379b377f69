"""The ``prometheus`` exporter: records → metrics (ARCHITECTURE §8), the label guard, the
registry it is given, its HTTP exposition."""

import logging
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from dataclasses import replace

import pytest

pytest.importorskip("mlobs_prometheus")

from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

import mlobs  # noqa: E402
from mlobs_prometheus import PrometheusSink  # noqa: E402
from mlobs_prometheus import OVERFLOW_VALUE, LabelGuard, PrometheusSettings  # noqa: E402
from mlobs_prometheus.sink import RecordsNotExported  # noqa: E402
from support.ports import free_port  # noqa: E402

WHISPER = mlobs.ModelRef("whisper-small", "r1", "sha256:" + "a" * 64, engine="torch",
                         device="cuda:1")


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """(sample name, its labels) → value, from an exposition text."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(parsed: dict, name: str, **labels: str) -> float:
    """The sum of the samples ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    found = [v for (n, lab), v in parsed.items() if n == name and wanted <= lab]
    assert found, f"no sample {name} {labels}"
    return sum(found)


def exposition(registry) -> dict:
    return samples(generate_latest(registry).decode())


@pytest.fixture
def registry():
    return CollectorRegistry()


def test_sub_millisecond_components_get_buckets_of_their_own_and_bounds_are_settable(
        registry, make_run):
    run, components = make_run()
    fast = [replace(c, component_run_id=f"{i:08d}-0000-4000-8000-000000000000",
                    component="cleaning", duration_ms=ms)
            for i, (c, ms) in enumerate(zip(components, (0.2, 0.4, 0.9, 3.0)))]
    PrometheusSink(registry).export(fast)
    got = exposition(registry)

    def below(le: str, reg=got) -> float:
        return value(reg, "mlobs_component_duration_seconds_bucket", component="cleaning",
                     le=le)

    # The default bounds tell 0.2, 0.4, 0.9 and 3 ms apart (one 5 ms bucket held all four).
    assert [below(le) for le in ("0.00025", "0.0005", "0.001", "0.005")] == [1, 2, 3, 4]
    other = CollectorRegistry()
    PrometheusSink(other, PrometheusSettings(duration_buckets_s=(0.001, 1.0))).export(fast)
    shown = exposition(other)
    assert [below(le, shown) for le in ("0.001", "1.0", "+Inf")] == [3, 4, 4]
    assert not [k for k in shown if ("le", "0.0005") in k[1]]


def test_records_become_metrics_with_bounded_labels(registry, make_run):
    run, components = make_run()
    sink = PrometheusSink(registry)
    sink.export([replace(run, status="running", finished_at=None), *components, run])
    got = exposition(registry)
    by_name = {c.component: c for c in components}

    for c in components:
        assert value(got, "mlobs_component_duration_seconds_count", component=c.component) == 1
        assert value(got, "mlobs_component_duration_seconds_sum", component=c.component) \
            == pytest.approx(c.duration_ms / 1000)
        assert value(got, "mlobs_component_runs_total", component=c.component,
                     status=c.status) == 1
    # asr ran 5.234 s on cuda:0: in the 10 s bucket, not in the 5 s one; labels say where
    asr = by_name["asr"]
    asr_labels = {"component": "asr", "status": "ok", "device": "cuda",
                  "model_signature": asr.model_signature[:12]}
    assert value(got, "mlobs_component_duration_seconds_bucket", le="5.0", **asr_labels) == 0
    assert value(got, "mlobs_component_duration_seconds_bucket", le="10.0", **asr_labels) == 1
    assert value(got, "mlobs_component_duration_seconds_bucket", le="3600.0",
                 **asr_labels) == 1
    # embedding ran on cuda:1: the device kind only
    assert value(got, "mlobs_component_duration_seconds_count", component="embedding",
                 device="cuda") == 1
    # counters start at 0 for every status of a component seen
    assert value(got, "mlobs_component_runs_total", component="asr", status="error") == 0

    assert value(got, "mlobs_cache_lookups_total", component="asr", result="miss") == 1
    assert value(got, "mlobs_cache_lookups_total", component="cleaning", result="hit") == 1
    assert value(got, "mlobs_cache_lookups_total", component="cleaning", result="miss") == 0
    assert not [k for k in got if k[0] == "mlobs_cache_lookups_total"
                and ("component", "embedding") in k[1]]  # no cache used: no lookups

    summary = by_name["summarization"]
    assert value(got, "mlobs_oom_total", component="summarization", device="cpu") == 1
    assert value(got, "mlobs_retries_total", component="summarization") == 1
    assert value(got, "mlobs_oom_total", component="asr") == 0

    assert value(got, "mlobs_component_peak_memory_bytes_sum", component="asr",
                 kind="rss") == asr.peak_rss_bytes
    assert value(got, "mlobs_component_peak_memory_bytes_sum", component="asr",
                 kind="gpu_allocated") == asr.peak_gpu_allocated_bytes
    assert value(got, "mlobs_component_peak_memory_bytes_sum", component="asr",
                 kind="gpu_reserved") == asr.peak_gpu_reserved_bytes
    assert value(got, "mlobs_component_peak_memory_bytes_count",
                 component="summarization", kind="rss") == 1
    assert summary.peak_gpu_allocated_bytes is None
    assert not [k for k in got if ("kind", "gpu_allocated") in k[1]
                and ("component", "summarization") in k[1]]

    # the run counts once: the "running" snapshot at its start is not a finished run
    assert value(got, "mlobs_runs_total", status="ok") == 1
    assert value(got, "mlobs_runs_total", status="error") == 0

    label_names = {name for _, labels in got for name, _ in labels}
    assert label_names <= {"component", "status", "device", "model_signature", "result",
                           "kind", "le", "label"}
    label_values = {v for _, labels in got for _, v in labels}
    assert not label_values & {run.run_id, run.video_id, run.platform_id}


def test_a_real_pipeline_is_counted_through_the_sink_worker(tmp_path, registry):
    sink = PrometheusSink(registry)
    mlobs.configure(root=tmp_path, sinks=[], extra_sinks=[sink])
    try:
        with mlobs.run("youtube", "abc", profile=mlobs.AnalysisProfile("p", optional={"ocr"})
                       ) as run:
            with run.component("asr", models=[WHISPER], batch_size=8,
                               on_oom=mlobs.HalveBatch(), cache=True,
                               producer_version="1", schema_version="1") as c:
                for attempt in c.attempts():
                    with attempt:
                        if c.batch_size == 8:
                            raise MemoryError("Unable to allocate 8.00 GiB for an array")
                        c.set_result(["hello"])
            for _ in range(3):
                with run.component("cleaning"):
                    pass
            with run.component("ocr"):
                raise mlobs.ComponentError("model_load_failed", "weights missing")
        mlobs.flush()
    finally:
        mlobs.configure(sinks=[])
    got = exposition(registry)
    assert run.status == "ok"
    assert value(got, "mlobs_component_runs_total", component="cleaning", status="ok") == 3
    assert value(got, "mlobs_component_runs_total", component="ocr", status="error") == 1
    assert value(got, "mlobs_oom_total", component="asr", device="cuda") == 1
    assert value(got, "mlobs_cache_lookups_total", component="asr", result="miss") == 1
    assert value(got, "mlobs_component_duration_seconds_count", component="asr",
                 model_signature=mlobs.model_signature([WHISPER])[:12]) == 1
    assert value(got, "mlobs_component_peak_memory_bytes_count", component="cleaning",
                 kind="rss") == 3
    assert value(got, "mlobs_runs_total", status="ok") == 1


def test_the_label_guard_caps_values_and_refuses_odd_ones(caplog):
    refused = []
    guard = LabelGuard(max_values=2, on_overflow=refused.append)
    assert guard.value("component", "asr") == "asr"
    assert guard.value("component", None) == ""
    with caplog.at_level(logging.WARNING, logger="mlobs.prometheus"):
        assert guard.value("component", "ocr") == OVERFLOW_VALUE  # a third value
        assert guard.value("component", "faces") == OVERFLOW_VALUE
    assert guard.value("component", "asr") == "asr"  # accepted values stay accepted
    assert guard.value("device", "weird device!") == OVERFLOW_VALUE  # charset
    assert guard.value("device", "x" * 65) == OVERFLOW_VALUE  # length
    assert guard.value("device", "cuda") == "cuda"
    assert refused == ["component", "component", "device", "device"]
    assert guard.refused == {"component": 2, "device": 2}
    warnings = [r for r in caplog.records if "component" in r.getMessage()]
    assert len(warnings) == 1  # logged once per label
    with pytest.raises(ValueError):
        LabelGuard(max_values=0)


def test_refused_label_values_lose_no_record(registry, make_run, caplog):
    run, components = make_run()
    sink = PrometheusSink(registry, PrometheusSettings(max_label_values=3))
    names = ["asr", "cleaning", "embedding", "video_abc123_faces", "video_def456_faces"]
    many = [replace(components[1], component=name, component_run_id=str(i))
            for i, name in enumerate(names)]
    many.append(replace(components[1], component="title: Ünïcode!", component_run_id="x"))
    with caplog.at_level(logging.WARNING, logger="mlobs.prometheus"):
        sink.export(many)
    got = exposition(registry)
    assert value(got, "mlobs_component_runs_total", status="ok") == len(many)
    assert value(got, "mlobs_component_runs_total", component=OVERFLOW_VALUE) == 3
    assert value(got, "mlobs_component_duration_seconds_count",
                 component=OVERFLOW_VALUE) == 3
    assert {dict(lab).get("component") for n, lab in got
            if n == "mlobs_component_runs_total"} == {"asr", "cleaning", "embedding",
                                                     OVERFLOW_VALUE}
    # refused once per record and label: 3 components (the cache label of the same
    # records was accepted: "hit")
    assert value(got, "mlobs_prometheus_label_overflow_total", label="component") == 3
    assert len([r for r in caplog.records if "refused" in r.getMessage()]) == 1


def test_a_record_that_cannot_be_observed_fails_alone(registry, make_run):
    run, components = make_run()
    broken = replace(components[0], duration_ms=None)
    sink = PrometheusSink(registry)
    with pytest.raises(RecordsNotExported) as raised:
        sink.export([broken, *components[1:], run])
    assert raised.value.run_ids == {run.run_id}
    got = exposition(registry)
    assert value(got, "mlobs_component_runs_total", component="cleaning") == 1
    assert value(got, "mlobs_runs_total", status="ok") == 1
    # counted whole or not at all: nothing of the broken asr record
    assert not [k for k in got if ("component", "asr") in k[1]]


def test_a_failing_export_is_counted_by_the_worker_not_raised(tmp_path, registry, make_run):
    run, components = make_run()
    sink = PrometheusSink(registry)
    mlobs.configure(root=tmp_path, sinks=[], extra_sinks=[sink])
    try:
        recorder = mlobs.recording.recorder.get_recorder()
        recorder.emit(replace(components[0], duration_ms="soon"))  # what emit() queues
        recorder.emit(components[1])
        assert mlobs.flush()
        [stats] = [s for s in mlobs.sink_stats() if s.name == "prometheus"]
    finally:
        mlobs.configure(sinks=[])
    assert stats.failed == 2  # the batch's records of that run
    assert "RecordsNotExported" in stats.last_error
    assert value(exposition(registry), "mlobs_component_runs_total",
                 component="cleaning") == 1


def test_importing_the_exporter_registers_nothing_globally():
    child = textwrap.dedent("""
        import prometheus_client
        from prometheus_client import REGISTRY
        before = sorted(REGISTRY._names_to_collectors)
        import mlobs_prometheus
        from mlobs_prometheus import PrometheusSink
        PrometheusSink(prometheus_client.CollectorRegistry())
        from mlobs.recording.plugins import create_plugin_sink
        from mlobs.core.config import settings_from_env
        create_plugin_sink("prometheus", settings_from_env({}))
        after = sorted(REGISTRY._names_to_collectors)
        print(before == after, [n for n in after if n.startswith("mlobs")])
    """)
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True []"


def test_one_registry_serves_one_sink(registry):
    PrometheusSink(registry)
    with pytest.raises(ValueError, match="Duplicated"):
        PrometheusSink(registry)


def test_the_http_server_serves_the_registry_and_stops_at_shutdown(registry, make_run):
    run, components = make_run()
    sink = PrometheusSink(registry, PrometheusSettings(port=0))
    sink.export(components)
    url = f"http://127.0.0.1:{sink.http_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        got = samples(response.read().decode())
    assert value(got, "mlobs_component_runs_total", component="asr", status="ok") == 1
    sink.shutdown(1)
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=2)


def test_a_new_sink_takes_the_port_over_from_the_one_it_replaces(make_run):
    # configure() builds the new sinks before it shuts the old ones down
    port = free_port()
    old_registry, new_registry = CollectorRegistry(), CollectorRegistry()
    old = PrometheusSink(old_registry, PrometheusSettings(port=port))
    run, components = make_run()
    old.export(components)
    new = PrometheusSink(new_registry, PrometheusSettings(port=port))
    old.shutdown(1)
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        got = samples(response.read().decode())
    assert not [k for k in got if k[0] == "mlobs_component_runs_total"]  # the new registry
    new.shutdown(1)
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=2)


def test_a_long_transcription_lands_in_the_hour_bucket(registry, make_run):
    """Durations up to an hour fall in a finite bucket (ARCHITECTURE §8)."""
    _, components = make_run()
    long_asr = replace(components[0], duration_ms=3000 * 1000.0)  # 50 minutes
    PrometheusSink(registry).export([long_asr])
    got = exposition(registry)
    labels = {"component": long_asr.component}
    assert value(got, "mlobs_component_duration_seconds_bucket", le="1800.0", **labels) == 0
    assert value(got, "mlobs_component_duration_seconds_bucket", le="3600.0", **labels) == 1
