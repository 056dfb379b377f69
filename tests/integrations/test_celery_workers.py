"""Celery auto-instrumentation against real workers: the local Redis as broker and result
backend, a prefork worker with 2 pool processes, and the local PostgreSQL warehouse.

Skipped when Redis is unreachable, except in CI (CI=true), where that fails.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytest.importorskip("celery")
redis = pytest.importorskip("redis")

from celery import chain, chord  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402

import mlobs  # noqa: E402
from mlobs.core.classify import classify_exception  # noqa: E402
from mlobs.core.manifest import read_manifest  # noqa: E402
from mlobs.integrations.celery import task_component_run_id  # noqa: E402
from mlobs.warehouse import migrate  # noqa: E402
from support.ci import unavailable  # noqa: E402

TESTS_DIR = Path(__file__).resolve().parents[1]
REPO = TESTS_DIR.parent
BROKER = os.environ.get("MLOBS_TEST_CELERY_BROKER", "redis://127.0.0.1:6379/0")



@pytest.fixture(scope="module")
def broker() -> str:
    try:
        redis.Redis.from_url(BROKER, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        reason = f"Redis is unreachable at {BROKER} ({exc}); start it or set " \
                 "MLOBS_TEST_CELERY_BROKER"
        unavailable(reason)
    return BROKER


@pytest.fixture
def celery_app(broker):
    from support import celery_app as module

    queue = f"mlobs-test-{uuid.uuid4().hex[:10]}"
    module.app.conf.task_default_queue = queue
    yield module
    with module.app.connection_for_write() as conn:  # leave nothing behind in Redis
        for name in (queue, f"{queue}-nobody"):
            conn.default_channel.queue_purge(name)


class Worker:
    """``celery worker`` (prefork, 2 pool processes) in a subprocess."""

    def __init__(self, queue: str, db_url: str, root: Path, spans_dir: Path) -> None:
        # The checkout's own mlobs first, whatever is installed (the tasks report theirs).
        path = os.pathsep.join(p for p in (str(TESTS_DIR), str(REPO),
                                           os.environ.get("PYTHONPATH")) if p)
        env = {**os.environ, "PYTHONPATH": path, "MLOBS_DB_URL": db_url,
               "MLOBS_ROOT": str(root), "MLOBS_SINKS": "manifest,warehouse,otel",
               "MLOBS_TEST_CELERY_QUEUE": queue, "MLOBS_TEST_CELERY_BROKER": BROKER,
               "MLOBS_TEST_SPANS_DIR": str(spans_dir)}
        self.log_path = root.parent / f"{root.name}.log"
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "support.celery_app", "worker",
             "--pool=prefork", "--concurrency=2", "-O", "fair", "--without-gossip",
             "--without-mingle", "--without-heartbeat", "--loglevel=INFO",
             "-n", f"mlobs-{queue}@%h"],
            env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        """Warm shutdown: pool processes exit through worker_process_shutdown."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def warehouse(pg_url) -> str:
    migrate.upgrade(pg_url)
    return pg_url


@pytest.fixture
def worker(celery_app, warehouse, tmp_path):
    spans_dir = tmp_path / "spans"
    spans_dir.mkdir()
    w = Worker(celery_app.app.conf.task_default_queue, warehouse, tmp_path / "worker",
               spans_dir)
    w.spans_dir = spans_dir
    try:
        # The first task answers once a pool process is up (imports take a few seconds).
        celery_app.ping.apply_async().get(timeout=60)
    except Exception:
        w.stop()
        pytest.fail(f"the celery worker did not answer:\n{w.log()[-3000:]}")
    yield w
    w.stop()


@pytest.fixture
def orchestrator(tmp_path, warehouse):
    pytest.importorskip("mlobs_otel")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from mlobs_otel import OtelSink

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    mlobs.configure(root=tmp_path / "orchestrator", db_url=warehouse,
                    sinks=["manifest", "warehouse"], extra_sinks=[OtelSink(provider)])
    yield exporter
    mlobs.configure(sinks=[])


def _rows(db_url: str, run_id: str) -> list:
    engine = create_engine(db_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return conn.execute(text(
                "SELECT component_run_id, component, attempt, status, error_code "
                "FROM component_runs WHERE run_id = :run_id"), {"run_id": run_id}).all()
    finally:
        engine.dispose()


def _run_row(db_url: str, run_id: str) -> tuple:
    """(status, error_code, warnings) of a stored run."""
    from mlobs.warehouse.store import WarehouseStore
    with WarehouseStore(db_url) as store:
        run, _ = store.get_run(run_id)
    return run.status, run.error_code, run.warnings


def _task_ids(result) -> list[str]:
    """Ids of a chain's tasks (a result and its parents)."""
    ids = []
    while result is not None:
        ids.append(result.id)
        result = result.parent
    return ids


def test_a_run_fanned_out_over_two_worker_processes_is_one_run_and_one_trace(
        celery_app, worker, orchestrator, warehouse):
    ca = celery_app
    with mlobs.run("youtube", "fanout-1", pipeline_version="1.4.0",
                   labels={"release": "rc-2"}) as run:
        head = chain(ca.transcribe.s("fanout-1"), ca.clean.s(), ca.chunk.s()).apply_async()
        chunks = head.get(timeout=60)
        fan = chord([ca.embed.s(c) for c in chunks])(ca.summarize.s())
        summary = fan.get(timeout=120)
    worker.stop()
    task_ids = _task_ids(head) + [r.id for r in fan.parent.results] + [fan.id]

    # The tasks really ran in two worker processes.
    assert summary["count"] == len(chunks) >= 4
    assert len(summary["pids"]) >= 2, worker.log()[-2000:]

    # Exactly one component row per task, each with the id derived from its task id.
    rows = _rows(warehouse, run.run_id)
    assert sorted(r.component_run_id for r in rows) == \
        sorted(task_component_run_id(t) for t in task_ids)
    by_component: dict[str, int] = {}
    for r in rows:
        by_component[r.component] = by_component.get(r.component, 0) + 1
        assert (r.status, r.attempt) == ("ok", 1)
    assert by_component == {"asr": 1, "cleaning": 1, "chunking": 1,
                            "embedding": len(chunks), "summary": 1}

    # One manifest, assembled by this process from the warehouse; no worker wrote one.
    stored_run, components = read_manifest(run.manifest_path)
    assert stored_run.status == "ok" and stored_run.warnings == []
    assert stored_run.labels == {"release": "rc-2"}
    assert sorted(c.component_run_id for c in components) == \
        sorted(r.component_run_id for r in rows)
    assert [c.finished_at for c in components] == sorted(c.finished_at for c in components)
    chunking = next(c for c in components if c.component == "chunking")
    assert chunking.items == len(chunks)
    asr = next(c for c in components if c.component == "asr")
    assert asr.model_signature is not None and asr.models_used[0].name == "whisper-small"
    assert list(Path(worker.log_path.parent, "worker").rglob("manifest.json")) == []
    assert "spooling" not in worker.log()

    # One trace: the run span here, a child span per task in the workers' processes.
    run_spans = [s for s in orchestrator.get_finished_spans() if s.name == "mlobs.run"]
    assert len(run_spans) == 1
    run_span = run_spans[0]
    dumps = sorted(worker.spans_dir.glob("*.json"))
    assert len(dumps) == 2  # one per pool process
    worker_spans = [s for d in dumps for s in json.loads(d.read_text())]
    assert len(worker_spans) == len(task_ids)
    for span in worker_spans:
        assert span["trace_id"] == run_span.context.trace_id
        assert span["parent_span_id"] == run_span.context.span_id
        assert span["attributes"]["mlobs.status"] == "ok"
        assert span["name"] == span["attributes"]["mlobs.component"]
    assert sorted(s["name"] for s in worker_spans) == sorted(r.component for r in rows)


def test_failed_retried_unrecorded_and_unfinished_tasks(celery_app, worker, orchestrator,
                                                        warehouse):
    ca = celery_app
    queue = ca.app.conf.task_default_queue
    with mlobs.run("youtube", "fanout-2",
                   profile=mlobs.AnalysisProfile("p", optional={"ocr"})) as run:
        flaky = ca.flaky.delay(1)
        assert flaky.get(timeout=60) == 1
        ocr = ca.broken_ocr.delay()
        with pytest.raises(ConnectionRefusedError):
            ocr.get(timeout=60)
        assert ca.untracked_wrapper.delay().get(timeout=60) > 0
        # No worker consumes this queue: the task is still pending when the run ends.
        stuck = ca.embed.apply_async(("never",), queue=f"{queue}-nobody")
    worker.stop()

    rows = {r.component_run_id: r for r in _rows(warehouse, run.run_id)}
    retried = rows.pop(task_component_run_id(flaky.id, 0))
    assert (retried.component, retried.attempt, retried.status, retried.error_code) == \
        ("flaky", 1, "error", classify_exception(TimeoutError("upstream timed out")))
    final = rows.pop(task_component_run_id(flaky.id))
    assert (final.component, final.attempt, final.status) == ("flaky", 2, "ok")
    failed = rows.pop(task_component_run_id(ocr.id))
    ocr_code = classify_exception(ConnectionRefusedError("refused"))
    assert (failed.component, failed.status, failed.error_code) == ("ocr", "error", ocr_code)
    assert rows == {}  # the mlobs=False task and the pending one left no row

    # The run status rule over the workers' final records: a retried attempt that failed
    # is not a failure, an optional task that failed is a warning.
    stored_run, components = read_manifest(run.manifest_path)
    assert stored_run.status == "ok"
    assert len(components) == 3
    assert [w for w in stored_run.warnings if "'ocr'" in w] == [
        f"optional component 'ocr' failed: {ocr_code}: triton at 127.0.0.1:8001 refused "
        "the connection"]
    assert [w for w in stored_run.warnings if stuck.id in w] == [
        f"task {ca.embed.name} [{stuck.id}] had not finished when the run ended (PENDING)"]
    assert _run_row(warehouse, run.run_id) == ("ok", None, stored_run.warnings)


def test_a_failed_required_task_fails_the_run_even_when_the_caller_swallows_it(
        celery_app, worker, orchestrator, warehouse):
    ca = celery_app
    with mlobs.run("youtube", "fanout-3") as run:
        doomed = ca.flaky.delay(5)  # fails past max_retries=2
        doomed.get(timeout=60, propagate=False)
    worker.stop()
    assert run.status == "ok"  # this process saw no failure

    final = next(r for r in _rows(warehouse, run.run_id)
                 if r.component_run_id == task_component_run_id(doomed.id))
    assert (final.status, final.attempt, final.error_code) == ("error", 3, "timeout")
    stored_run, _ = read_manifest(run.manifest_path)
    assert (stored_run.status, stored_run.error_code) == ("error", "timeout")
    assert stored_run.error_message == \
        "required component 'flaky' failed: upstream timed out"
    assert _run_row(warehouse, run.run_id)[:2] == ("error", "timeout")


def test_a_task_s_duration_is_its_body_the_first_task_of_each_pool_process_included(
        celery_app, worker, orchestrator, warehouse):
    ca = celery_app
    with mlobs.run("youtube", "timed-1") as run:
        # The pool processes are fresh: the first task each takes builds its recorder.
        sent = [ca.timed.delay(s) for s in (0.0, 0.0, 0.02, 0.0, 0.02, 0.0, 0.0, 0.02)]
        bodies = {task_component_run_id(r.id): r.get(timeout=60) for r in sent}
    worker.stop()

    assert {Path(b["mlobs"]).resolve().is_relative_to(REPO) for b in bodies.values()} \
        == {True}, "the worker ran another mlobs than this checkout's"
    engine = create_engine(warehouse, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT component_run_id, duration_ms, started_at, finished_at "
                "FROM component_runs WHERE run_id = :run_id ORDER BY started_at"),
                {"run_id": run.run_id}).all()
    finally:
        engine.dispose()
    assert sorted(r.component_run_id for r in rows) == sorted(bodies)
    firsts = {}  # pid -> component_run_id of the first task that process recorded
    for r in rows:
        firsts.setdefault(bodies[r.component_run_id]["pid"], r.component_run_id)
    assert len(firsts) == 2, worker.log()[-2000:]  # both pool processes' first tasks

    seen = [(r.component_run_id in firsts.values(), round(r.duration_ms, 3),
             round(bodies[r.component_run_id]["body_ms"], 3)) for r in rows]
    assert all(abs(recorded - body) <= 2.0 for _, recorded, body in seen), \
        f"(first of its process, recorded ms, body ms): {seen}"
    for r in rows:  # the timestamps bracket exactly the recorded duration
        span_ms = (r.finished_at - r.started_at).total_seconds() * 1000
        assert abs(span_ms - r.duration_ms) < 0.01, (span_ms, r.duration_ms)
