"""Carrying the run into other threads.

A thread starts with an empty context, so a component called there would not know its
run. Three ways carry it:

* ``concurrent.futures.ThreadPoolExecutor.submit`` (and ``map``, and asyncio's
  ``run_in_executor``, which call it) runs the work in a copy of the submitter's context
  while a run or a component is current there; installed when the first run opens or is
  joined (the way OpenTelemetry's threading instrumentation carries spans), a
  pass-through otherwise;
* :meth:`mlobs.Run.wrap` binds a function to that run, for hand-made threads;
* :func:`propagate` binds a function to the caller's context.

A wrapped function may be called from many threads at once: each call runs in its own
copy of the context (a context cannot be entered by two threads together).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import Context, copy_context
from typing import Any, TypeVar

from mlobs.hooks.context import current_component_var, current_run_var

F = TypeVar("F", bound=Callable[..., Any])

_install_lock = threading.Lock()
_original_submit: Callable[..., Future[Any]] | None = None


def in_context(context: Context, fn: F) -> F:
    """``fn`` run in a fresh copy of ``context`` at each call."""
    @functools.wraps(fn)
    def bound(*args: Any, **kwargs: Any) -> Any:
        return context.copy().run(fn, *args, **kwargs)
    return bound  # type: ignore[return-value]


def propagate(fn: F) -> F:
    """``fn`` bound to the caller's context: the run (and component) current here is
    current wherever ``fn`` is called, e.g. as a ``threading.Thread`` target::

        threading.Thread(target=mlobs.propagate(work), args=(frame,)).start()

    The context is captured now, when ``propagate`` is called.
    """
    return in_context(copy_context(), fn)


def _submit(self: ThreadPoolExecutor, fn: Callable[..., Any], /, *args: Any,
            **kwargs: Any) -> Future[Any]:
    submit = _original_submit
    assert submit is not None
    if current_run_var.get() is None and current_component_var.get() is None:
        return submit(self, fn, *args, **kwargs)  # nothing of mlobs to carry
    return submit(self, copy_context().run, fn, *args, **kwargs)


def install_executor_propagation() -> None:
    """Make ``ThreadPoolExecutor.submit`` carry the submitter's context (idempotent, also
    across a reload of this module, which must not wrap the patch in itself)."""
    global _original_submit
    if _original_submit is not None:
        return
    with _install_lock:
        if _original_submit is None:
            current = ThreadPoolExecutor.submit
            # an earlier copy of this module's patch: wrap what it wrapped
            _original_submit = getattr(current, "mlobs_wrapped", current)
            _submit.mlobs_wrapped = _original_submit  # type: ignore[attr-defined]
            ThreadPoolExecutor.submit = _submit  # type: ignore[method-assign]
