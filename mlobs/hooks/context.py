"""Where the current run and component live: context variables, plus a process-wide
registry of active runs for code running in plain worker threads; :func:`current` and
:func:`current_run` read them.

``threading.Thread`` and ``ThreadPoolExecutor`` workers start with an empty context, so a
decorated component called from a pool thread would not see the run. When exactly one run
is active in the process, such calls attach to it; with several concurrent runs the call
is ambiguous and runs unobserved (copy the context with ``contextvars.copy_context().run``
to bind a thread to its run).

A process forked while a run is open does not write into that run (one writer per run):
its inherited run is ignored and its components run unobserved unless it opens its own.
"""

from __future__ import annotations

import os
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any

from tenacity import AsyncRetrying, Retrying, stop_after_attempt

from mlobs.core.suppression import is_suppressed

if TYPE_CHECKING:
    from mlobs.core.records import ModelRef
    from mlobs.hooks.component import ComponentCall
    from mlobs.hooks.run import Run

current_run_var: ContextVar[Run | None] = ContextVar("mlobs_run", default=None)
current_component_var: ContextVar[ComponentCall | None] = ContextVar("mlobs_component",
                                                                        default=None)
#: run_id → Run, for every run open in this process.
active_runs: dict[str, Run] = {}


class _ForkGeneration:
    """Counts forks; a run remembers the value at its creation."""

    value = 0


fork_generation = _ForkGeneration()


def resolve_run() -> Run | None:
    """The run a component called here belongs to, or ``None`` (unobserved)."""
    run = current_run_var.get()
    if run is not None:
        return run if run.fork_generation == fork_generation.value else None
    if is_suppressed():
        return None
    # tuple() copies in one step, so a run closing on another thread cannot break this.
    runs = tuple(active_runs.values())
    return runs[0] if len(runs) == 1 else None


def reset_var(var: ContextVar[Any], token: Token[Any]) -> None:
    """``var.reset(token)``, unless the block ended in another context (an async generator
    finalised by the event loop, a generator closed from another thread), which never
    saw the value set."""
    try:
        var.reset(token)
    except ValueError:
        pass


def _after_fork_in_child() -> None:
    fork_generation.value += 1
    active_runs.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


class _UnobservedComponent:
    """Stands in for a component handle outside any run: every method does nothing, and
    :meth:`attempts` gives exactly one attempt (no policy applies outside a run)."""

    batch_size = None
    hit = False
    result = None

    def set_result(self, value: Any) -> None: ...

    def attempts(self) -> Retrying:
        return Retrying(stop=stop_after_attempt(1), reraise=True)

    def async_attempts(self) -> AsyncRetrying:
        return AsyncRetrying(stop=stop_after_attempt(1), reraise=True)

    def empty(self, reason: str) -> None: ...
    def warn(self, message: str) -> None: ...
    def set_items(self, n: int) -> None: ...
    def metric(self, name: str, value: float) -> None: ...
    def event(self, kind: str, **attributes: Any) -> None: ...
    def set_prediction(self, model: ModelRef, prediction_status: str) -> None: ...


_UNOBSERVED = _UnobservedComponent()


def current() -> ComponentCall | _UnobservedComponent:
    """The handle of the component running in this context.

    Outside any observed component it returns a handle whose methods do nothing, so code
    calling ``mlobs.current().set_items(n)`` runs the same observed or not.
    """
    return current_component_var.get() or _UNOBSERVED


def current_run() -> Run | None:
    """The run this context belongs to, or ``None``."""
    return resolve_run()
