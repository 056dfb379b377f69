"""Where the current run and component live: context variables, plus a process-wide
registry of active runs for code running in plain worker threads; :func:`current` and
:func:`current_run` read them.

``threading.Thread`` workers start with an empty context. Work submitted to a
``ThreadPoolExecutor`` carries the submitter's context (:mod:`mlobs.hooks.threads`), and
``run.wrap(fn)`` / ``mlobs.propagate(fn)`` bind a hand-made thread. A decorated component
called from a thread without a context attaches to the run when exactly one is open; with
several open it cannot be known: the call runs unobserved, and it is counted
(:func:`unattributed_calls`), logged once at WARNING and reported as a warning on every run
that was open meanwhile.

A process forked while a run is open does not write into that run (one writer per run):
its inherited run is ignored and its components run unobserved unless it opens its own.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any

from mlobs.core.suppression import is_suppressed

if TYPE_CHECKING:
    from tenacity import AsyncRetrying, Retrying

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


log = logging.getLogger("mlobs")
#: component name → calls whose run could not be known (several runs open, no context).
_unattributed: Counter[str] = Counter()
_unattributed_lock = threading.Lock()


def resolve_run(component: str | None = None) -> Run | None:
    """The run a component called here belongs to, or ``None`` (unobserved).

    Args:
        component: the name of the component asking; when given, a call whose run cannot
            be known (no run context, several runs open) is counted under it.
    """
    run = current_run_var.get()
    if run is not None:
        return run if run.fork_generation == fork_generation.value else None
    if is_suppressed():
        return None
    # tuple() copies in one step, so a run closing on another thread cannot break this.
    runs = tuple(active_runs.values())
    if len(runs) == 1:
        return runs[0]
    if runs and component is not None:
        _count_unattributed(component, len(runs))
    return None


def _count_unattributed(component: str, open_runs: int) -> None:
    with _unattributed_lock:
        first = not _unattributed
        _unattributed[component] += 1
    if first:  # once per process; the runs' warnings carry the counts
        log.warning("mlobs: a call of component %r from a thread that carries no run "
                    "context was not recorded: %d runs are open, so its run cannot be "
                    "known (submit it through a ThreadPoolExecutor, or pass the function "
                    "through run.wrap(fn) or mlobs.propagate(fn)); later such calls are "
                    "counted in mlobs.unattributed_calls()", component, open_runs)


def unattributed_calls() -> dict[str, int]:
    """Calls of decorated components that were not recorded because their run could not
    be known (a thread without a run context while several runs were open), per
    component name, since the process started."""
    with _unattributed_lock:
        return dict(_unattributed)


def unattributed_warnings(since: dict[str, int]) -> list[str]:
    """The warnings for a run that was open from ``since`` (an :func:`unattributed_calls`
    snapshot) until now: one per component with calls left unrecorded meanwhile."""
    now = unattributed_calls()
    return [f"{now[name] - since.get(name, 0)} call(s) of {name} from threads that carry "
            "no run context were not recorded while this run was open (several runs "
            "were open, so their run could not be known): pass the work through "
            "run.wrap(fn) or mlobs.propagate(fn)"
            for name in sorted(now) if now[name] > since.get(name, 0)]


def reset_var(var: ContextVar[Any], token: Token[Any]) -> None:
    """``var.reset(token)``, unless the block ended in another context (an async generator
    finalised by the event loop, a generator closed from another thread), which never
    saw the value set."""
    try:
        var.reset(token)
    except ValueError:
        pass


def _after_fork_in_child() -> None:
    global _unattributed_lock
    fork_generation.value += 1
    active_runs.clear()
    _unattributed_lock = threading.Lock()  # another thread may have held it at the fork


os.register_at_fork(after_in_child=_after_fork_in_child)


class _UnobservedComponent:
    """Stands in for a component handle outside any run: every method does nothing, and
    :meth:`attempts` gives exactly one attempt (no policy applies outside a run)."""

    batch_size = None
    hit = False
    result = None

    def set_result(self, value: Any) -> None: ...

    def attempts(self) -> Retrying:
        import tenacity  # on first use: `import mlobs` leaves it out

        return tenacity.Retrying(stop=tenacity.stop_after_attempt(1), reraise=True)

    def async_attempts(self) -> AsyncRetrying:
        import tenacity

        return tenacity.AsyncRetrying(stop=tenacity.stop_after_attempt(1), reraise=True)

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
