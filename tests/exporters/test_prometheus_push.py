"""Pushes to a Pushgateway, against a real local HTTP server standing in for one."""

import logging
import time

import pytest

from support.flaky_server import FlakyServer, refused_port

pytest.importorskip("mlobs_prometheus")

from prometheus_client import CollectorRegistry  # noqa: E402

import mlobs  # noqa: E402
from mlobs_prometheus import PrometheusSettings, PrometheusSink  # noqa: E402
from support.exposition import sample_sum  # noqa: E402

GROUP_PATH = "/metrics/job/nightly/pipeline/text"


def pushing_sink(url: str) -> PrometheusSink:
    return PrometheusSink(CollectorRegistry(), PrometheusSettings(
        pushgateway=url, job="nightly", grouping_key={"pipeline": "text"}))


def test_a_flush_pushes_everything_under_the_job_and_grouping_key(make_run):
    run, components = make_run()
    with FlakyServer(default="200") as gateway:
        sink = pushing_sink(gateway.url())
        assert sink.force_flush(5)  # nothing recorded yet: nothing to push
        assert gateway.count() == 0
        sink.export(components)
        assert sink.force_flush(5)
        sink.export([run])
        assert sink.force_flush(5)
        assert sink.force_flush(5)  # unchanged since the last push: no request
        sink.shutdown(5)  # unchanged: no request either
        hits = gateway.hits()
    assert [(h.method, h.path) for h in hits] == [("PUT", GROUP_PATH)] * 2
    first, last = hits[0].body, hits[1].body
    assert sample_sum(first, "mlobs_component_runs_total", component="asr",
                      status="ok") == 1
    assert sample_sum(first, "mlobs_runs_total") == 0
    # each push carries the cumulative state (PUT replaces the group)
    assert sample_sum(last, "mlobs_component_runs_total") == len(components)
    assert sample_sum(last, "mlobs_runs_total", status="ok") == 1
    [summary] = [c for c in components if c.component == "summarization"]
    assert sample_sum(last, "mlobs_component_duration_seconds_sum",
                      component="summarization") == pytest.approx(summary.duration_ms / 1000)


def test_shutdown_pushes_what_changed(make_run):
    run, components = make_run()
    with FlakyServer(default="200") as gateway:
        sink = pushing_sink(gateway.url())
        sink.export([*components, run])
        sink.shutdown(5)
        [hit] = gateway.hits()
    assert sample_sum(hit.body, "mlobs_runs_total", status="ok") == 1


def test_a_failed_push_is_raised_to_the_worker_then_not_retried_for_a_while(make_run):
    run, components = make_run()
    with FlakyServer({GROUP_PATH: ["503"]}, default="200") as gateway:
        sink = pushing_sink(gateway.url())
        sink.export(components)
        with pytest.raises(OSError, match="503"):
            sink.force_flush(5)
        assert sink.push_failures == 1
        assert sink.force_flush(5) is False  # backing off: no request
        assert gateway.count() == 1
        sink.shutdown(5)  # the last push is always tried
        assert gateway.count() == 2
        assert sample_sum(gateway.hits()[1].body, "mlobs_component_runs_total") \
            == len(components)


def test_an_unreachable_pushgateway_does_not_disturb_the_pipeline(tmp_path, caplog):
    with refused_port() as port:
        sink = pushing_sink(f"http://127.0.0.1:{port}")
        mlobs.configure(root=tmp_path, sinks=[], extra_sinks=[sink])
        try:
            started = time.monotonic()
            for video in ("a", "b"):
                with mlobs.run("youtube", video) as run:
                    with run.component("asr"):
                        pass
            elapsed = time.monotonic() - started
            [stats] = [s for s in mlobs.sink_stats() if s.name == "prometheus"]
        finally:
            with caplog.at_level(logging.WARNING, logger="mlobs.prometheus"):
                mlobs.configure(sinks=[])
    assert run.status == "ok"
    assert run.record.warnings == []
    assert elapsed < 5
    assert stats.failed == 0 and stats.exported >= 4  # records are not lost: only pushes
    assert "Connection refused" in stats.last_error
    assert sink.push_failures == 2  # the first flush, then the last push at shutdown
    assert any("last push" in r.getMessage() for r in caplog.records)
