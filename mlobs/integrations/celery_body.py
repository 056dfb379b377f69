"""Timing a Celery task's body alone, for :mod:`mlobs.integrations.celery`.

Celery's signals bracket more than the body: between ``task_prerun`` and
``task_postrun`` a worker also stores the result in the backend, sends the chain's next
task and logs the outcome (0.5 to 4 ms per task with a local Redis), and the first task
of a pool process ran beside mlobs's own start-up. So the worker wraps each task's ``run``
(:func:`wrap_bodies`, at ``worker_init``, before Celery builds the functions that call
it) and the wrapper moves the component's clock to the body's first and last
instruction.

Where no wrapper was installed (a task run eagerly, a pool process started by ``spawn``
instead of ``fork``), :func:`body_not_timed` says so and the integration ends the
interval at ``task_postrun`` instead.
"""

from __future__ import annotations

import functools
from contextvars import ContextVar, Token
from typing import Any

from mlobs.hooks.component import ComponentCall

#: (task, its component) between task_prerun and the body's start, in that task's context.
_pending: ContextVar[tuple[Any, ComponentCall] | None] = ContextVar(
    "mlobs_celery_pending_body", default=None)
#: the tasks whose ``run`` this process wrapped, with the instance attribute it replaced.
_wrapped: list[tuple[Any, Any]] = []
_ABSENT = object()


def expect_body(task: Any, call: ComponentCall) -> Token[tuple[Any, ComponentCall] | None]:
    """Let ``task``'s wrapped body, when it starts, time itself as ``call`` (task_prerun).

    Returns:
        The token :func:`body_not_timed` takes at task_postrun.
    """
    return _pending.set((task, call))


def body_not_timed(token: Token[tuple[Any, ComponentCall] | None], call: ComponentCall
                   ) -> bool:
    """At task_postrun: True when no wrapper timed ``call`` (its body was not wrapped, or
    never ran). Forgets what :func:`expect_body` set."""
    pending = _pending.get()
    untimed = pending is not None and pending[1] is call
    _pending.reset(token)
    return untimed


def wrap_bodies(tasks: Any) -> int:
    """Wrap the ``run`` of every task in ``tasks`` (an app's registry, name → task) but
    Celery's own (``celery.*``) and those with ``mlobs=False``; idempotent.

    The wrapper calls the body unchanged; only when :func:`expect_body` named that task in
    the current context does it restart the component's clock before the body and stop
    it after, whether the body returns or raises.

    Returns:
        How many tasks were wrapped by this call.
    """
    count = 0
    for name, task in list(tasks.items()):
        if name.startswith("celery.") or getattr(task, "mlobs", None) is False or \
                getattr(task.run, "_mlobs_body", False):
            continue
        _wrapped.append((task, task.__dict__.get("run", _ABSENT)))
        task.run = _timed(task, task.run)
        count += 1
    return count


def unwrap_bodies() -> None:
    """Give every wrapped task its own ``run`` back (functions Celery already built keep
    calling the wrapper, which then only passes the call on)."""
    while _wrapped:
        task, previous = _wrapped.pop()
        if previous is _ABSENT:
            task.__dict__.pop("run", None)
        else:
            task.run = previous


def _timed(task: Any, run: Any) -> Any:
    @functools.wraps(run)
    def body(*args: Any, **kwargs: Any) -> Any:
        pending = _pending.get()
        if pending is None or pending[0] is not task:  # not this delivery's body
            return run(*args, **kwargs)
        _pending.set(None)  # the outermost call only: a body calling itself is inside it
        call = pending[1]
        call.restart_clock()
        try:
            return run(*args, **kwargs)
        finally:
            call.stop_clock()

    body._mlobs_body = True  # type: ignore[attr-defined]
    return body
