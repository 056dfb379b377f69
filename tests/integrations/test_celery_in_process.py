"""Celery auto-instrumentation inside one process: eager tasks, headers a worker receives,
and instrument() / uninstrument(). (Real workers: test_celery_workers.py.)"""

from __future__ import annotations

import json
import logging
import time
import uuid
from types import SimpleNamespace

import pytest

pytest.importorskip("celery")

from celery import signals  # noqa: E402

import mlobs  # noqa: E402
from mlobs.core.propagation import RunContext, joined_context  # noqa: E402
from mlobs.integrations import celery as mlobs_celery  # noqa: E402
from mlobs.integrations import celery_body  # noqa: E402
from mlobs.testing import capture  # noqa: E402


@pytest.fixture
def ca():
    from support import celery_app

    celery_app.app.conf.task_always_eager = True
    yield celery_app
    celery_app.app.conf.task_always_eager = False
    mlobs_celery.instrument()


def test_an_eager_task_inside_a_run_is_a_component_of_that_run(ca):
    with capture() as records:
        with mlobs.run("youtube", "eager") as run:
            chunks = ca.chunk.delay({"text": "x" * 300}, size=100).get()
    component = records.component("chunking")
    assert component.run_id == run.run_id
    assert (component.status, component.items, component.attempt) == ("ok", len(chunks), 1)


def test_a_task_outside_any_run_records_nothing(ca):
    with capture() as records:
        assert ca.clean.delay({"text": " a "}).get()["text"] == "a"
    assert records.components == [] and records.runs == []


def test_a_task_received_with_a_run_context_joins_that_run(ca):
    context = RunContext(run_id=str(uuid.uuid4()), platform_id="youtube", video_id="v9",
                         profile="p", optional=("ocr",), config_hash="c" * 64,
                         carrier={"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"})
    task_id = str(uuid.uuid4())
    with capture() as records:
        result = ca.broken_ocr.apply(task_id=task_id,
                                     headers={mlobs_celery.HEADER: context.to_header()})
        assert result.failed()
    component = records.component("ocr")
    assert (component.run_id, component.required, component.status) == \
        (context.run_id, False, "error")
    assert component.component_run_id == mlobs_celery.task_component_run_id(task_id)
    assert records.runs == []  # a joined run's record belongs to the orchestrator
    assert joined_context(context.run_id) == context


def test_a_component_that_cannot_open_leaves_no_joined_run_behind(ca, caplog, monkeypatch):
    from mlobs.hooks.context import resolve_run

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(mlobs_celery, "_open_component", broken)
    context = RunContext(run_id=str(uuid.uuid4()), platform_id="youtube", video_id="v9",
                         profile="p", optional=(), config_hash="c" * 64, carrier={})
    with capture() as records, caplog.at_level(logging.ERROR, "mlobs"):
        result = ca.clean.apply(({"text": "b"},),
                                headers={mlobs_celery.HEADER: context.to_header()})
    assert result.get()["text"] == "b"  # the task ran, unrecorded
    assert records.components == []
    assert "could not start recording task" in caplog.text
    assert resolve_run() is None  # later tasks without the header join nothing


def test_a_malformed_run_context_leaves_the_task_running_unrecorded(ca, caplog):
    with capture() as records, caplog.at_level(logging.WARNING, "mlobs.celery"):
        result = ca.clean.apply(({"text": "b"},), headers={mlobs_celery.HEADER: "{not json"})
    assert result.get()["text"] == "b"
    assert records.components == []
    assert "runs unrecorded: run context header is not JSON" in caplog.text


def test_bad_task_options_are_named_and_the_task_still_runs(ca, caplog):
    @ca.app.task(mlobs={"component": "x", "colour": "red"})
    def odd() -> int:
        return 7

    with capture() as records, caplog.at_level(logging.WARNING, "mlobs.celery"):
        with mlobs.run("youtube", "odd"):
            assert odd.delay().get() == 7
    assert records.components == []
    assert "unknown keys in the task option mlobs: ['colour']" in caplog.text


def test_uninstrument_disconnects_and_instrument_reconnects(ca):
    mlobs_celery.uninstrument()
    mlobs_celery.uninstrument()  # idempotent
    with capture() as records:
        with mlobs.run("youtube", "off"):
            ca.chunk.delay({"text": "abc"}).get()
    assert records.components == []
    mlobs_celery.instrument()
    mlobs_celery.instrument()  # idempotent: one record per task, not two
    with capture() as records:
        with mlobs.run("youtube", "on"):
            ca.chunk.delay({"text": "abc"}).get()
    assert len(records.components) == 1


@pytest.mark.parametrize("timeouts, message", [
    ({"assemble_timeout_s": 0}, "assemble_timeout_s must be a finite number > 0, got 0"),
    ({"flush_timeout_s": float("inf")}, "flush_timeout_s must be a finite number > 0"),
    ({"flush_timeout_s": "10"}, "flush_timeout_s must be a finite number > 0, got '10'"),
])
def test_instrument_refuses_a_timeout_that_is_not_a_positive_number(timeouts, message):
    with pytest.raises(mlobs.ConfigError, match=message):
        mlobs_celery.instrument(**timeouts)


def test_run_context_header_round_trip_and_refusals():
    context = RunContext(run_id="r1", platform_id="youtube", video_id="v",
                         required=("asr",), pipeline_version="1.4.0",
                         carrier={"traceparent": "00-ab-cd-01"})
    assert RunContext.from_header(context.to_header()) == context
    with pytest.raises(mlobs.ConfigError, match="unknown version"):
        RunContext.from_header('{"v": 99}')
    with pytest.raises(mlobs.ConfigError, match="lacks a field"):
        RunContext.from_header('{"v": 1, "run_id": "r"}')
    with pytest.raises(mlobs.ConfigError, match="video_id"):
        RunContext.from_header({**json.loads(context.to_header()), "video_id": ""})
    with pytest.raises(mlobs.ConfigError, match="carrier"):
        RunContext(run_id="r", platform_id="p", video_id="v",
                   carrier={f"k{i}": "x" for i in range(17)}).check()


@pytest.fixture
def wrapped(ca):
    """The app's task bodies wrapped as a worker wraps them at worker_init."""
    mlobs_celery._on_worker_init(sender=SimpleNamespace(app=ca.app))
    yield ca
    celery_body.unwrap_bodies()


def _slow_receiver(**_):
    time.sleep(0.05)


@pytest.mark.parametrize("task, signal", [
    ("timed", signals.task_prerun),      # after mlobs's own set-up
    ("timed", signals.task_success),     # Celery's work after the body
    ("broken_ocr", signals.task_failure),
])
def test_a_wrapped_task_s_duration_is_its_body_alone(wrapped, task, signal):
    context = RunContext(run_id=str(uuid.uuid4()), platform_id="youtube", video_id="v9",
                         profile="p", optional=("ocr",), config_hash="c" * 64, carrier={})
    signal.connect(_slow_receiver, weak=False)
    try:
        with capture() as records:
            result = getattr(wrapped, task).apply(
                headers={mlobs_celery.HEADER: context.to_header()})
    finally:
        signal.disconnect(_slow_receiver)
    component = records.components[0]
    assert component.duration_ms < 20  # the receiver slept 50 ms, outside the interval
    if task == "timed":
        assert abs(component.duration_ms - result.get()["body_ms"]) < 2
    span_ms = (component.finished_at - component.started_at).total_seconds() * 1000
    assert abs(span_ms - component.duration_ms) < 0.01


def test_unwrapped_the_interval_ends_at_task_postrun_and_uninstrument_unwraps(wrapped):
    task = wrapped.timed
    assert getattr(task.run, "_mlobs_body", False) and "run" in task.__dict__
    assert celery_body.wrap_bodies(wrapped.app.tasks) == 0  # idempotent
    assert not getattr(wrapped.untracked_wrapper.run, "_mlobs_body", False)  # mlobs=False
    mlobs_celery.uninstrument()
    assert "run" not in task.__dict__ and not getattr(task.run, "_mlobs_body", False)
    mlobs_celery.instrument()
    signals.task_success.connect(_slow_receiver, weak=False)  # before task_postrun
    try:
        with capture() as records:
            with mlobs.run("youtube", "eager"):
                task.delay().get()
    finally:
        signals.task_success.disconnect(_slow_receiver)
    assert records.component("timed").duration_ms >= 50  # eager and unwrapped: to postrun
