"""Threads whose calls are never recorded: mlobs's own workers (ARCHITECTURE §5: exporting
runs with mlobs's own instrumentation suppressed).

A sink worker marks its thread once; the hooks read the mark when a component called
from a thread without a run context looks for the run to record into.
"""

from __future__ import annotations

import threading

_thread_flags = threading.local()


def suppress_in_this_thread() -> None:
    """Mark the calling thread (a sink worker) so nothing it calls is recorded."""
    _thread_flags.suppressed = True


def is_suppressed() -> bool:
    """True in a thread :func:`suppress_in_this_thread` marked."""
    return getattr(_thread_flags, "suppressed", False)
