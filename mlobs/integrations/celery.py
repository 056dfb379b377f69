"""Celery auto-instrumentation: every task becomes a component of the run it belongs to.

Call :func:`instrument` once in the module that defines the Celery app (so the
orchestrating process and every worker run it)::

    from mlobs.integrations import celery as mlobs_celery
    mlobs_celery.instrument()

    @app.task(mlobs={"component": "asr", "producer_version": "2.1.0"})
    def transcribe(video_path): ...

    with mlobs.run("youtube", "abc123") as run:              # the orchestrating side
        chain(transcribe.s(path), clean.s(), chunk.s()).apply_async().get()

What it does, through Celery's signals:

* **publishing** (``before_task_publish``, in any process): a task sent inside a run
  carries the run's :class:`~mlobs.core.propagation.RunContext` in its ``mlobs_run`` message
  header, including the sinks' carrier (the ``otel`` exporter's ``traceparent``, so the
  workers' spans join the run's trace). The first task a run sends waits once for the
  sinks, so the run's row is in the warehouse before any worker writes a component.
* **running** (``task_prerun`` / ``task_failure`` / ``task_retry`` / ``task_postrun``, in
  the worker): the task runs inside a :class:`~mlobs.hooks.joined_run.JoinedRun` and is recorded
  as one component (``mlobs.current()`` is that component inside the task; components
  the task body opens itself record into the same run). Its ``duration_ms`` is the
  task's body alone (:mod:`mlobs.integrations.celery_body`, installed at
  ``worker_init``): the set-up in ``task_prerun`` (the recorder and its sinks on a pool
  process's first task, the joined run) and Celery's own work after the body (storing
  the result, sending the chain's next task) are outside it. A failed task ends ``error``
  with the classified error_code; a task that calls ``task.retry`` records that attempt
  as ``error`` and the next delivery as ``attempt + 1``. The component_run_id is derived
  from the task id (``uuid5``), so a redelivered task is written once. The worker then
  flushes its sinks before taking the next task, so its record is in the warehouse by
  the time its result is read.
* **per process** (``worker_process_init`` / ``worker_process_shutdown``): a pool process
  drops the recorder inherited through fork and builds its own sinks (database engines,
  exporters); it flushes them when it exits.
* **the run's end** (orchestrating process): the run's ``manifest.json`` is assembled
  from the warehouse (:mod:`mlobs.warehouse.assembly`) once the records of the tasks the
  run sent — and the chain and chord members they carry — are stored; a task that had
  not finished is named in a warning. Workers never write the run's manifest.

Task options (the ``mlobs`` attribute, given as ``@app.task(mlobs={...})``): any of
``component`` (default: the task name), ``producer_version``, ``schema_version``,
``models``, ``device``, ``batch_size``, ``required``; ``mlobs=False`` runs the task in
the run without recording it as a component (its body records its own). Celery's own
tasks (``celery.*``) are never recorded.

Requirements: every process writes to the same warehouse (``MLOBS_DB_URL``), and the app
has a result backend when manifests should wait for the tasks' records (without one, the
assembly waits for every task it knows of, up to ``assemble_timeout_s``). Tasks published
from inside other tasks outside a chain, chord or group are recorded, but the manifest
only includes them if they finished before the run did.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from contextvars import Token
from dataclasses import dataclass
from typing import Any

from celery import signals, states

from mlobs.core.checks import check_finite
from mlobs.core.config import Settings
from mlobs.core.errors import ComponentError, ConfigError, WarehouseError
from mlobs.core.propagation import RunContext
from mlobs.hooks.component import ComponentCall
from mlobs.hooks.context import resolve_run
from mlobs.hooks.joined_run import JoinedRun
from mlobs.hooks.run import Run
from mlobs.integrations.celery_body import (
    body_not_timed,
    expect_body,
    unwrap_bodies,
    wrap_bodies,
)
from mlobs.recording.recorder import get_recorder, set_recorder

log = logging.getLogger("mlobs.celery")

#: the message header that carries the run context.
HEADER = "mlobs_run"
#: component_run_id = uuid5(TASK_NAMESPACE, task_id) for a task's final delivery.
TASK_NAMESPACE = uuid.UUID("5b0c7d52-2c43-4f1e-9a55-6a1f2d7e3c01")
_COMPONENT_OPTIONS = frozenset({"producer_version", "schema_version", "models", "device",
                                "batch_size", "required"})
_MAX_EMBED_DEPTH = 32
#: the longest wait (seconds) for the memory sampler's start-up before a first task's body.
_SAMPLER_START_S = 5.0


def task_component_run_id(task_id: str, retries: int | None = None) -> str:
    """The component_run_id of a task's record: its final delivery (``retries`` None) or
    the delivery with that many earlier retries that ended in ``task.retry``."""
    name = task_id if retries is None else f"{task_id}:retry:{retries}"
    return str(uuid.uuid5(TASK_NAMESPACE, name))


@dataclass
class _Settings:
    flush_timeout_s: float = 10.0
    assemble_timeout_s: float = 30.0


@dataclass
class _RunningTask:
    joined: JoinedRun | None
    call: ComponentCall | None
    exc: BaseException | None = None
    body: Token[Any] | None = None  # from celery_body.expect_body


_settings = _Settings()
_running: dict[str, _RunningTask] = {}
#: run_id → {task_id: (task name, the app that sent it)} of the tasks a run here sent.
_sent: dict[str, dict[str, tuple[str, Any]]] = {}
_sent_lock = threading.Lock()
_instrumented = False
_warned_embedded = False


def instrument(*, flush_timeout_s: float = 10.0, assemble_timeout_s: float = 30.0) -> None:
    """Connect mlobs to Celery's signals (idempotent; see the module docstring).

    Args:
        flush_timeout_s: how long a worker waits for its sinks after each task (seconds).
        assemble_timeout_s: how long the orchestrating process waits at the run's end for
            the tasks' records to reach the warehouse (seconds).

    Raises:
        ConfigError: a timeout is not a finite number > 0.
    """
    global _instrumented
    flush_timeout_s = check_finite("flush_timeout_s", flush_timeout_s, positive=True)
    assemble_timeout_s = check_finite("assemble_timeout_s", assemble_timeout_s,
                                      positive=True)
    _settings.flush_timeout_s = flush_timeout_s
    _settings.assemble_timeout_s = assemble_timeout_s
    if _instrumented:
        return
    for signal, handler in _HANDLERS:
        signal.connect(handler, weak=False)
    _instrumented = True


def uninstrument() -> None:
    """Disconnect everything :func:`instrument` connected and give the tasks whose body a
    worker wrapped their own ``run`` back (idempotent)."""
    global _instrumented
    for signal, handler in _HANDLERS:
        signal.disconnect(handler)
    _running.clear()
    with _sent_lock:
        _sent.clear()
    unwrap_bodies()
    _instrumented = False


# -- publishing ----------------------------------------------------------------------------

def _on_publish(sender: Any = None, body: Any = None, headers: dict[str, Any] | None = None,
                **_: Any) -> None:
    try:
        run = resolve_run()
        if run is None or headers is None:
            return
        if not isinstance(run, JoinedRun):
            _note_sent(run, headers, body)
        headers[HEADER] = run.run_context().to_header()
    except Exception:  # publishing must go on without mlobs
        log.exception("mlobs: could not attach the run context to task %r", sender)


def _note_sent(run: Run, headers: dict[str, Any], body: Any) -> None:
    """Remember the task (and the chain and chord members it carries) for the manifest.

    The run's first task first waits for the sinks: the run's row must be stored before a
    worker writes a component of it, and the sinks' carrier (the run span) must exist."""
    from celery import current_app
    with _sent_lock:  # held through the first flush: no thread publishes before it ends
        sent = _sent.get(run.run_id)
        if sent is None:
            get_recorder().flush(_settings.flush_timeout_s)
            run.at_exit(_assemble)
            sent = _sent[run.run_id] = {}
    app = current_app._get_current_object()
    task_id, name = headers.get("id"), headers.get("task")
    if isinstance(task_id, str) and isinstance(name, str):
        sent[task_id] = (name, app)
    # protocol 2: body = (args, kwargs, embed); chain and chord members have frozen ids.
    if isinstance(body, (tuple, list)) and len(body) == 3:
        for member_id, member in _signatures_in(body[2]):
            sent.setdefault(member_id, (member, app))


def _signatures_in(value: Any, depth: int = 0) -> list[tuple[str, str]]:
    """(task_id, task name) of every task signature nested in a message's embed."""
    found: list[tuple[str, str]] = []
    if depth > _MAX_EMBED_DEPTH:
        return found
    if isinstance(value, dict):
        name, options = value.get("task"), value.get("options")
        if isinstance(name, str) and isinstance(options, dict) and \
                isinstance(options.get("task_id"), str):
            found.append((options["task_id"], name))
        for item in value.values():
            found.extend(_signatures_in(item, depth + 1))
    elif isinstance(value, (list, tuple)):
        for item in value:
            found.extend(_signatures_in(item, depth + 1))
    return found


# -- running (worker) ----------------------------------------------------------------------

def _header_of(request: Any) -> Any:
    value = request.get(HEADER) if hasattr(request, "get") else None
    if value is None:  # some transports nest custom headers
        value = (getattr(request, "headers", None) or {}).get(HEADER)
    return value


def _on_prerun(sender: Any = None, task_id: str | None = None, task: Any = None,
               **_: Any) -> None:
    if task is None or task_id is None or task.name.startswith("celery."):
        return
    try:
        _start_task(task_id, task)
    except Exception:  # the task runs even when mlobs cannot record it
        log.exception("mlobs: could not start recording task %s [%s]", task.name, task_id)


def _start_task(task_id: str, task: Any) -> None:
    """Join the task's run and open its component; every set-up step (the recorder and its
    sinks on a pool process's first task, the memory sampler's start) comes before the
    component's clock starts."""
    t0_ns = time.perf_counter_ns()
    request = task.request
    header = _header_of(request)
    joined = None
    if header is not None:
        try:
            context = RunContext.from_header(header)
        except ConfigError as exc:
            log.warning("mlobs: task %s [%s] runs unrecorded: %s", task.name, task_id, exc)
            return
        recorder = get_recorder()
        _warn_if_not_shared(recorder.settings)
        if not recorder.sampler.warm_up(_SAMPLER_START_S):
            log.debug("mlobs: the memory sampler was not ready within %.1f s",
                      _SAMPLER_START_S)
        joined = JoinedRun(recorder, context, attempt=(request.retries or 0) + 1)
        joined.__enter__()
        run: Run | None = joined
    else:  # run in this process (task_always_eager, or apply() inside a run)
        run = resolve_run()
        if run is None:
            return
    call = None
    options = getattr(task, "mlobs", None)
    if options is not False:
        try:
            call = _open_component(run, task, options)
            call.__enter__()
        except ConfigError as exc:
            log.warning("mlobs: task %s [%s] is not recorded as a component: %s", task.name,
                        task_id, exc)
            call = None
        except BaseException:
            if joined is not None:  # the task runs unrecorded: no joined run stays open
                joined.__exit__(None, None, None)
            raise
    running = _running[task_id] = _RunningTask(joined, call)
    if call is not None:
        running.body = expect_body(task, call)
    log.debug("mlobs: task %s [%s]: set-up before its body took %.3f ms", task.name,
              task_id, (time.perf_counter_ns() - t0_ns) / 1e6)


def _warn_if_not_shared(settings: Settings) -> None:
    global _warned_embedded
    if settings.db_is_embedded_default and not _warned_embedded:
        _warned_embedded = True
        log.warning("mlobs: this worker writes to its own embedded warehouse (%s); the "
                    "orchestrating process assembles manifests from its warehouse only: "
                    "set MLOBS_DB_URL to the shared warehouse", settings.db_url)


def _open_component(run: Run, task: Any, options: Any) -> ComponentCall:
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise ConfigError(f"the task option mlobs must be a dict or False, got {options!r:.60}")
    unknown = set(options) - _COMPONENT_OPTIONS - {"component"}
    if unknown:
        raise ConfigError(f"unknown keys in the task option mlobs: {sorted(unknown)}")
    kwargs = {k: v for k, v in options.items() if k in _COMPONENT_OPTIONS}
    return run.component(options.get("component", task.name), **kwargs)


def _on_failure(sender: Any = None, task_id: str | None = None,
                exception: BaseException | None = None, **_: Any) -> None:
    running = _running.get(task_id) if task_id is not None else None
    if running is not None:
        running.exc = exception


def _on_retry(sender: Any = None, request: Any = None, reason: Any = None, **_: Any) -> None:
    running = _running.get(getattr(request, "id", None))
    if running is not None:
        running.exc = reason if isinstance(reason, BaseException) else \
            ComponentError("transient", f"task retried: {reason}")


def _on_postrun(sender: Any = None, task_id: str | None = None, task: Any = None,
                state: str | None = None, **_: Any) -> None:
    running = _running.pop(task_id, None) if task_id is not None else None
    if running is None:
        return
    try:
        call = running.call
        if call is not None and running.body is not None and \
                body_not_timed(running.body, call):
            call.stop_clock()  # no wrapper timed the body: end the interval here
        _finish_task(task_id, task, state, running)
    except Exception:
        log.exception("mlobs: could not finish recording task %s [%s]",
                      getattr(task, "name", sender), task_id)


def _finish_task(task_id: str, task: Any, state: str | None, running: _RunningTask) -> None:
    call, exc = running.call, running.exc
    if call is not None:
        retried = state == states.RETRY
        if running.joined is not None:
            call.set_component_run_id(task_component_run_id(
                task_id, (task.request.retries or 0) if retried else None))
        if exc is None and state not in (states.SUCCESS, None):
            exc = ComponentError("internal", f"task ended in state {state}")
        cause = getattr(exc, "exc", None)  # celery's Retry wraps what caused it
        if isinstance(cause, BaseException):
            exc = cause
        if exc is None:
            call.__exit__(None, None, None)
        else:
            call.__exit__(type(exc), exc, exc.__traceback__)
    if running.joined is not None:
        running.joined.__exit__(None, None, None)
        # The record reaches the warehouse before this worker takes its next task.
        get_recorder().flush(_settings.flush_timeout_s)


# -- per process ---------------------------------------------------------------------------

def _on_worker_init(sender: Any = None, **_: Any) -> None:
    # The main worker process, before the consumer and the pool (forked from it) build the
    # functions that call each task's run: they call the wrapper from then on.
    tasks = getattr(getattr(sender, "app", None), "tasks", None)
    if tasks is not None:
        try:
            wrap_bodies(tasks)
        except Exception:  # the worker runs; durations then include Celery's own work
            log.exception("mlobs: could not wrap the task bodies of %r", sender)


def _on_worker_process_init(**_: Any) -> None:
    # The parent's sinks (threads, queues, database connections) are not this process's.
    set_recorder(None, shutdown_previous=False)
    _running.clear()


def _on_worker_process_shutdown(**_: Any) -> None:
    try:
        get_recorder().shutdown(_settings.flush_timeout_s)
    except Exception:
        log.exception("mlobs: flushing sinks at worker process exit failed")


# -- the run's end (orchestrating process) -------------------------------------------------

def _assemble(run: Run) -> None:
    from mlobs.warehouse.assembly import assemble_manifest
    from mlobs.warehouse.store import WarehouseStore

    with _sent_lock:
        sent = _sent.pop(run.run_id, None)
    if sent is None:
        return
    expected, retrying, warnings = _expected_records(sent)
    settings = get_recorder().settings
    try:
        with WarehouseStore(settings.db_url,
                            manage_schema=settings.db_is_embedded_default) as store:
            assemble_manifest(store, run.run_id, settings.runs_dir, expected=expected,
                              unconfirmed=retrying, warnings=warnings,
                              timeout_s=_settings.assemble_timeout_s)
    except WarehouseError as exc:
        log.warning("mlobs: the manifest of run %s keeps this process's records only: %s",
                    run.run_id, exc)


def _expected_records(sent: dict[str, tuple[str, Any]]
                      ) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """For the tasks sent during the run: component_run_id → label of those that finished,
    component_run_id → warning of those the result backend calls RETRY (Celery stores
    RETRY after sending the next delivery, so a fast last delivery's failure can be
    overwritten by it: their records decide), and a warning per task that had not
    finished (as far as the result backend tells)."""
    from celery.backends.base import DisabledBackend

    expected: dict[str, str] = {}
    retrying: dict[str, str] = {}
    warnings: list[str] = []
    for task_id, (name, app) in sent.items():
        if name.startswith("celery.") or getattr(app.tasks.get(name), "mlobs", None) is False:
            continue
        label = f"task {name} [{task_id}]"
        if not isinstance(app.backend, DisabledBackend):
            state = app.AsyncResult(task_id).state
            if state not in states.READY_STATES:
                warning = f"{label} had not finished when the run ended ({state})"
                if state == states.RETRY:
                    retrying[task_component_run_id(task_id)] = warning
                else:
                    warnings.append(warning)
                continue
        expected[task_component_run_id(task_id)] = label
    return expected, retrying, warnings


_HANDLERS = (
    (signals.before_task_publish, _on_publish),
    (signals.task_prerun, _on_prerun),
    (signals.task_failure, _on_failure),
    (signals.task_retry, _on_retry),
    (signals.task_postrun, _on_postrun),
    (signals.worker_init, _on_worker_init),
    (signals.worker_process_init, _on_worker_process_init),
    (signals.worker_process_shutdown, _on_worker_process_shutdown),
)
