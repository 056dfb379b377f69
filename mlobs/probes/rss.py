"""Per-component peak RSS from one light sampler thread.

The sampler reads the process's resident set size every ``interval_ms`` and raises the
peak of every component active at that moment. A component's peak is therefore the
maximum RSS seen during its own active interval (including the last sample before it
started and the last sample at its end), so components overlapping in threads each get the
peak over their own interval. The caller's thread only adds and removes a dict entry.

RSS comes from ``/proc/self/statm`` on Linux (one small read) and psutil elsewhere.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import psutil

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _statm_reader() -> Callable[[], int] | None:
    try:
        fd = os.open("/proc/self/statm", os.O_RDONLY)
    except OSError:
        return None

    def read() -> int:
        # statm's second field is resident pages; pread avoids reopening the file.
        return int(os.pread(fd, 128, 0).split()[1]) * _PAGE_SIZE

    return read


def make_rss_reader() -> Callable[[], int]:
    """A function returning the current RSS in bytes."""
    reader = _statm_reader()
    if reader is not None:
        return reader
    process = psutil.Process()
    return lambda: process.memory_info().rss


class PeakTracker:
    """Holds the peak RSS (bytes) of one component while it is active."""

    __slots__ = ("peak_rss_bytes",)

    def __init__(self, start_rss_bytes: int) -> None:
        self.peak_rss_bytes = start_rss_bytes


class RssSampler:
    """Samples RSS on a daemon thread, started by the first component and kept until
    :meth:`stop` (``configure`` or interpreter exit): an idle wake-up costs one small read.

    Args:
        interval_ms: sampling period in milliseconds.
    """

    def __init__(self, interval_ms: float) -> None:
        self.interval_s = interval_ms / 1000.0
        self._read = make_rss_reader()
        self.last_rss_bytes = self._read()
        self._active: dict[int, PeakTracker] = {}
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start_component(self) -> PeakTracker:
        """Register a component; returns its tracker (caller's thread, cheap)."""
        tracker = PeakTracker(self.last_rss_bytes)
        self._active[id(tracker)] = tracker
        if self._thread is None:
            self._start_thread()
        return tracker

    def end_component(self, tracker: PeakTracker) -> None:
        """Unregister; the tracker keeps the peak seen while it was active."""
        self._active.pop(id(tracker), None)
        last = self.last_rss_bytes
        if last > tracker.peak_rss_bytes:
            tracker.peak_rss_bytes = last

    def _start_thread(self) -> None:
        with self._lock:
            if self._thread is None:
                self._stop = False
                self._thread = threading.Thread(target=self._loop, name="mlobs-rss-sampler",
                                                daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        read, wait, interval = self._read, self._wake.wait, self.interval_s
        while not self._stop:
            rss = read()
            self.last_rss_bytes = rss
            for tracker in list(self._active.values()):
                if rss > tracker.peak_rss_bytes:
                    tracker.peak_rss_bytes = rss
            wait(interval)

    def stop(self) -> None:
        """Stop the thread (it is restarted by the next component)."""
        with self._lock:
            thread, self._thread = self._thread, None
            self._stop = True
            self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=1.0)
        self._wake.clear()

    def after_fork_in_child(self) -> None:
        """The parent's thread does not exist in a forked child: forget it."""
        self._thread = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._active = {}
        self._read = make_rss_reader()
