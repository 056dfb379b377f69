"""The heartbeat of open runs: a daemon thread that asks each open run to re-send its run
record every interval, so a reader can tell a run whose process died
(:mod:`mlobs.core.liveness`).

The thread starts with the first open run and sleeps in between; a run added or removed
costs a lock and a dict operation.
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

log = logging.getLogger("mlobs")


class Beating(Protocol):
    """What the heartbeat asks of an open run."""

    def beat(self) -> None:
        """Re-send the run record with a fresh ``heartbeat_at`` (never raises)."""


class Heartbeat:
    """Calls ``beat()`` on every added run every ``interval_s`` seconds (> 0)."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._runs: dict[int, Beating] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, run: Beating) -> None:
        with self._lock:
            self._runs[id(run)] = run
            if self._thread is None:
                self._wake.clear()
                self._thread = threading.Thread(target=self._loop, name="mlobs-heartbeat",
                                                daemon=True)
                self._thread.start()

    def remove(self, run: Beating) -> None:
        with self._lock:
            self._runs.pop(id(run), None)

    def _loop(self) -> None:
        while not self._wake.wait(self.interval_s):
            with self._lock:
                runs = list(self._runs.values())
            for run in runs:
                try:
                    run.beat()
                except Exception:  # a heartbeat must never take the thread down
                    log.exception("mlobs: a run's heartbeat failed")

    def stop(self) -> None:
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(1.0)

    def after_fork_in_child(self) -> None:
        """A forked child owns none of its parent's runs, nor its thread."""
        self._runs.clear()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = None
