"""A Celery app for the integration tests: a small video pipeline as tasks.

The broker is ``MLOBS_TEST_CELERY_BROKER`` (default: the local Redis,
``redis://127.0.0.1:6379/0``; RabbitMQ works too: ``amqp://guest:guest@127.0.0.1:5672//``),
the result backend ``MLOBS_TEST_CELERY_BACKEND`` (default: the local Redis); tasks go to the queue ``MLOBS_TEST_CELERY_QUEUE``, unique
per test session, so sessions sharing the broker never take each other's tasks.

With ``MLOBS_TEST_SPANS_DIR`` set, every pool process sets a global TracerProvider with
the OpenTelemetry SDK's in-memory exporter, and writes the spans it captured to
``<dir>/<pid>.json`` when it exits. Workers load it as ``-A support.celery_app`` with
``tests/`` on ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from celery import Celery, signals

import mlobs
from mlobs.integrations import celery as mlobs_celery

BROKER = os.environ.get("MLOBS_TEST_CELERY_BROKER", "redis://127.0.0.1:6379/0")
BACKEND = os.environ.get("MLOBS_TEST_CELERY_BACKEND", "redis://127.0.0.1:6379/0")
QUEUE = os.environ.get("MLOBS_TEST_CELERY_QUEUE", "mlobs-test")
VERSIONS = {"producer_version": "1", "schema_version": "1"}

app = Celery("mlobs_test", broker=BROKER, backend=BACKEND)
app.conf.update(task_default_queue=QUEUE, worker_prefetch_multiplier=1,
                result_expires=3600, broker_connection_retry_on_startup=True,
                worker_hijack_root_logger=False)
mlobs_celery.instrument()


@app.task(mlobs={"component": "asr", **VERSIONS,
                 "models": [mlobs.ModelRef("whisper-small", "r1", "sha256:" + "a" * 64,
                                           engine="torch", device="cpu")]})
def transcribe(video_id: str) -> dict:
    return {"pid": os.getpid(), "text": f"words of {video_id}. " * 40}


@app.task(mlobs={"component": "cleaning", **VERSIONS})
def clean(asr: dict) -> dict:
    return {"pid": os.getpid(), "text": asr["text"].strip()}


@app.task(mlobs={"component": "chunking", **VERSIONS})
def chunk(cleaned: dict, size: int = 120) -> list[str]:
    text = cleaned["text"]
    chunks = [text[i:i + size] for i in range(0, len(text), size)]
    mlobs.current().set_items(len(chunks))
    return chunks


@app.task(mlobs={"component": "embedding", **VERSIONS})
def embed(text: str) -> dict:
    time.sleep(0.3)  # long enough that both worker processes take some
    return {"pid": os.getpid(), "dims": [float(len(text)), float(text.count(" "))]}


@app.task(mlobs={"component": "summary", **VERSIONS})
def summarize(embeddings: list[dict]) -> dict:
    if not embeddings:
        mlobs.current().empty("no_chunks")
    return {"pid": os.getpid(), "pids": sorted({e["pid"] for e in embeddings}),
            "count": len(embeddings)}


@app.task(mlobs={"component": "ocr", "required": False, **VERSIONS})
def broken_ocr(_previous: object = None) -> None:
    raise ConnectionRefusedError("triton at 127.0.0.1:8001 refused the connection")


@app.task(mlobs=False)
def untracked_wrapper() -> int:
    return os.getpid()


@app.task(bind=True, max_retries=2, default_retry_delay=0.1,
          mlobs={"component": "flaky", **VERSIONS})
def flaky(self: object, fail_times: int) -> int:
    if self.request.retries < fail_times:  # type: ignore[attr-defined]
        raise self.retry(exc=TimeoutError("upstream timed out"))  # type: ignore[attr-defined]
    return self.request.retries  # type: ignore[attr-defined]


@app.task(mlobs={"component": "timed", **VERSIONS})
def timed(sleep_s: float = 0.0) -> dict:
    """Times its own body: ``body_ms``, the milliseconds between its first and last line."""
    t0 = time.perf_counter_ns()
    if sleep_s:
        time.sleep(sleep_s)
    body_ms = (time.perf_counter_ns() - t0) / 1e6
    return {"pid": os.getpid(), "body_ms": body_ms, "mlobs": mlobs.__file__}


@app.task
def ping() -> int:
    return os.getpid()


_SPANS_DIR = os.environ.get("MLOBS_TEST_SPANS_DIR")
_exporter = None


@signals.worker_process_init.connect(weak=False)
def _capture_spans(**_: object) -> None:
    global _exporter
    if not _SPANS_DIR:
        return
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    _exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_exporter))
    trace.set_tracer_provider(provider)


@signals.worker_process_shutdown.connect(weak=False)
def _dump_spans(**_: object) -> None:
    if _exporter is None:
        return
    spans = [{"name": s.name, "trace_id": s.context.trace_id, "span_id": s.context.span_id,
              "parent_span_id": s.parent.span_id if s.parent else None,
              "attributes": dict(s.attributes or {})}
             for s in _exporter.get_finished_spans()]
    Path(_SPANS_DIR, f"{os.getpid()}.json").write_text(json.dumps(spans))
