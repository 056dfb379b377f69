"""Where the current run and component live: context variables, plus a process-wide
registry of active runs for code running in plain worker threads.

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
import threading
from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlobs.api import ComponentCall, Run

current_run_var: ContextVar[Run | None] = ContextVar("mlobs_run", default=None)
current_component_var: ContextVar[ComponentCall | None] = ContextVar("mlobs_component",
                                                                        default=None)
#: run_id → Run, for every run open in this process.
active_runs: dict[str, Run] = {}
_thread_flags = threading.local()


def suppress_in_this_thread() -> None:
    """Mark the calling thread (a sink worker) so nothing it calls is recorded."""
    _thread_flags.suppressed = True


class _ForkGeneration:
    """Counts forks; a run remembers the value at its creation."""

    value = 0


fork_generation = _ForkGeneration()


def resolve_run() -> Run | None:
    """The run a component called here belongs to, or ``None`` (unobserved)."""
    run = current_run_var.get()
    if run is not None:
        return run if run.fork_generation == fork_generation.value else None
    if getattr(_thread_flags, "suppressed", False):
        return None
    # tuple() copies in one step, so a run closing on another thread cannot break this.
    runs = tuple(active_runs.values())
    return runs[0] if len(runs) == 1 else None


def _after_fork_in_child() -> None:
    fork_generation.value += 1
    active_runs.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
