"""Per-component memory peaks: the kernel's peak-RSS counter read at component boundaries,
and a light sampler thread where that counter is missing or cannot be trusted.

On Linux the kernel keeps a high-water mark of the process's RSS
(:class:`~mlobs.probes.rss.PeakRssCounter`). At every component boundary (a start or an
end, in any thread) the mark is read and credited to every component active then, and at
every start it is reset: each component gets the true peak over its own active interval,
including memory it allocated and freed between two looks, and a component is not charged
for memory a neighbour held only outside that interval (every start resets the mark, so
the mark read at a boundary covers a stretch during which every active component was
active). This costs two ``getrusage`` calls and one small write per component and no
thread wake-ups; a component's start RSS is the mark right after its reset, and the RSS
itself is read at one start in :data:`RECHECK_EVERY_STARTS`, to check the mark.

The mark cannot be trusted while a larger mark from before the process's ``exec`` is
still on it (see :class:`~mlobs.probes.rss.PeakRssCounter`), nor used where ``/proc/self/clear_refs``
is missing. Then the thread samples RSS every ``interval_ms`` as well, and a component's
peak is the maximum of a reading at its start, every sample taken while it was active, and
a reading at its end: a spike shorter than the interval that falls between two samples is
not seen (lower ``interval_ms`` to catch shorter spikes).

A start or end reading is a reading of RSS at most :data:`REUSE_WINDOW_NS` (100 µs) old,
taken by any thread: one ``/proc/self/statm`` read costs a syscall (0.7 to 3 µs depending
on the machine), and back-to-back components would otherwise pay two each.

While no samples are needed the thread parks: after :data:`PARK_AFTER_IDLE_SAMPLES`
samples that found no component active, or at once when the kernel's mark covers RSS and
there is no GPU to sample; a component that needs samples wakes it.

When NVML opens (nvidia-ml-py, a driver, at least one GPU) the same thread also samples
this process's used GPU memory; components that torch's own peak counters do not cover
(ONNX Runtime, TensorRT, ...) get that as ``peak_gpu_reserved_bytes``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from mlobs.probes.rss import PeakRssCounter, make_rss_reader, open_peak_rss_counter

log = logging.getLogger("mlobs")

#: A start or end reading reuses a reading at most this old (nanoseconds).
REUSE_WINDOW_NS = 100_000
#: Samples in a row without an active component after which the thread parks.
PARK_AFTER_IDLE_SAMPLES = 20
#: The kernel's mark read right after a reset may exceed the RSS read just before by page
#: faults in between; more than this means a mark from before ``exec`` is in the way.
MARK_SLACK_BYTES = 4 * 1024 * 1024
#: While the RSS is above any mark from before exec, the mark right after a reset is the
#: RSS itself (the reset sets it to the current RSS): the RSS is then read only at one
#: start in this many, to check the mark again, instead of at every start.
RECHECK_EVERY_STARTS = 64
_perf_ns = time.perf_counter_ns
_peak_bytes = PeakRssCounter.peak_bytes


def _initial_mark(counter: PeakRssCounter | None) -> int:
    """The mark right after the counter's opening reset: at least any mark from before
    the process's exec, which ``ru_maxrss`` keeps and no reset lowers. A mark read after
    a later reset that is above it (by MARK_SLACK_BYTES) is the RSS."""
    return 0 if counter is None else _peak_bytes()


class PeakTracker:
    """The peaks (bytes) of one component while it is active.

    ``peak_gpu_process_bytes`` stays ``None`` unless NVML sampled during the interval.
    ``start_rss_bytes`` is the RSS read when the component started (``None`` with memory
    probes off).
    """

    __slots__ = ("start_rss_bytes", "peak_rss_bytes", "peak_gpu_process_bytes")

    def __init__(self, start_rss_bytes: int | None) -> None:
        self.start_rss_bytes = self.peak_rss_bytes = start_rss_bytes
        self.peak_gpu_process_bytes: int | None = None


class MemorySampler:
    """Samples RSS (and NVML GPU memory when available) on a daemon thread, started by
    the first component and kept until :meth:`stop` (``configure`` or interpreter exit):
    an idle wake-up costs one small read.

    Args:
        interval_ms: sampling period in milliseconds.
        gpu: sample NVML GPU memory when it is available.
    """

    def __init__(self, interval_ms: float, *, gpu: bool = True) -> None:
        self.interval_s = interval_ms / 1000.0
        self._gpu = gpu
        self._read = make_rss_reader()
        #: (perf_counter_ns, rss_bytes) of the latest reading, from any thread.
        self._last = (0, 0)
        self._counter = open_peak_rss_counter()
        #: the counter's reading right after its last reset, and whether that was the RSS.
        self._floor, self._counter_ok = 0, self._counter is not None
        #: starts since the mark was last checked against a reading of the RSS.
        self._unchecked_starts = 0
        #: the last mark after a reset that a reading found to be exactly the RSS.
        self._verified_floor = -1
        #: at least any mark the process carries from before its exec (see _initial_mark).
        self._mark_base = _initial_mark(self._counter)
        #: the thread must sample (no counter, or NVML opened); False once it knows better.
        self._needs_samples = True
        self._boundary = threading.Lock()
        self._active: set[PeakTracker] = set()
        self._wake = threading.Event()
        self._parked = False
        self._stop = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        #: set once the thread opened its GPU reader (or knows there is none).
        self._ready = threading.Event()
        self._warm_up_waited = False

    def warm_up(self, timeout_s: float) -> bool:
        """Start the thread now and wait until it opened its GPU reader (NVML's start-up
        can take 100 ms), so that start-up runs before a component, not during one. Only
        the first call waits: a reader that hangs costs ``timeout_s`` once.

        Args:
            timeout_s: the longest wait, in seconds.

        Returns:
            False when the thread is not ready (yet; it goes on starting).
        """
        if self._thread is None:
            self._start_thread()
        if self._ready.is_set():
            return True
        if self._warm_up_waited:
            return False
        self._warm_up_waited = True
        return self._ready.wait(timeout_s)

    def start_component(self) -> PeakTracker:
        """Register a component; returns its tracker (caller's thread, cheap)."""
        counter = self._counter
        if counter is None:
            tracker = PeakTracker(self._rss_now())
            self._active.add(tracker)
        else:
            with self._boundary:
                if self._active:  # (alone, nobody to credit)
                    self._credit_mark()
                counter.reset()
                self._floor = floor = _peak_bytes()
                if ((floor > self._mark_base + MARK_SLACK_BYTES
                     or floor == self._verified_floor)
                        and self._unchecked_starts < RECHECK_EVERY_STARTS):
                    # Above any mark from before exec, the mark right after the reset is
                    # the RSS itself: no reading needed. So it is when it equals a mark
                    # a reading found to be the RSS (a steady process: one reading in
                    # RECHECK_EVERY_STARTS), unless a mark from before exec is exactly
                    # that RSS, which the next check finds.
                    self._unchecked_starts += 1
                    rss, self._counter_ok = floor, True
                else:
                    self._unchecked_starts = 0
                    rss = self._rss_now()
                    self._counter_ok = floor <= rss + MARK_SLACK_BYTES
                    self._verified_floor = floor if floor == rss else -1
                    if not self._counter_ok:  # a mark from before exec (or raised since)
                        self._mark_base = max(self._mark_base, floor)
                tracker = PeakTracker(rss)
                self._active.add(tracker)
        if self._thread is None:
            self._start_thread()
        elif self._parked and self._sampling():
            self._wake.set()
        return tracker

    def _rss_now(self) -> int:
        """The RSS, from a reading at most REUSE_WINDOW_NS old when there is one."""
        now_ns = _perf_ns()
        taken_ns, rss = self._last
        if now_ns - taken_ns > REUSE_WINDOW_NS:
            rss = self._read()
            self._last = (now_ns, rss)
        return rss

    def end_component(self, tracker: PeakTracker) -> None:
        """Unregister; the tracker keeps the peak seen while it was active."""
        if self._counter is not None:
            with self._boundary:
                self._credit_mark()
                self._active.discard(tracker)
            if self._counter_ok:
                return  # the mark is at least the RSS now: no reading needed
        else:
            self._active.discard(tracker)
        now_ns = _perf_ns()
        taken_ns, rss = self._last
        if now_ns - taken_ns > REUSE_WINDOW_NS:
            rss = self._read()
            self._last = (now_ns, rss)
        if rss > tracker.peak_rss_bytes:
            tracker.peak_rss_bytes = rss

    def _credit_mark(self) -> None:
        # The mark since the last start (a reset) covers a stretch during which every
        # active component was active. Above the floor it is the true mark even when a
        # mark from before exec made the floor too high.
        mark = _peak_bytes()
        if self._counter_ok or mark > self._floor:
            for tracker in self._active:
                if mark > tracker.peak_rss_bytes:
                    tracker.peak_rss_bytes = mark

    def _start_thread(self) -> None:
        with self._lock:
            if self._thread is None:
                self._stop = False
                self._thread = threading.Thread(target=self._loop, name="mlobs-memory-sampler",
                                                daemon=True)
                self._thread.start()

    def _open_gpu_reader(self) -> Any:
        if not self._gpu:
            return None
        from mlobs.probes.gpu import open_nvml
        return open_nvml()

    def _loop(self) -> None:
        read, wait, interval = self._read, self._wake.wait, self.interval_s
        try:
            nvml = self._open_gpu_reader()  # on this thread: NVML start-up can take 100 ms
        finally:
            self._ready.set()  # also when it failed: warm_up never waits for a dead thread
        self._needs_samples = nvml is not None or self._counter is None
        idle = 0
        while not self._stop:
            if self._sampling():
                # The components and the time before the reading: the reading lets go of
                # the GIL, and one taken before a component started (or a free) must be
                # neither charged to it nor reused as fresh by its start.
                trackers = list(self._active)
                taken_ns = _perf_ns()
                rss = read()
                self._last = (taken_ns, rss)
                for tracker in trackers:
                    if rss > tracker.peak_rss_bytes:
                        tracker.peak_rss_bytes = rss
                if nvml is not None and trackers:
                    self._sample_gpu(nvml, trackers)
                idle = 0 if trackers else idle + 1
            else:
                idle = PARK_AFTER_IDLE_SAMPLES  # the kernel's mark covers RSS: park now
            if idle < PARK_AFTER_IDLE_SAMPLES:
                if wait(interval):  # a start's wake-up arrived late: not a reason to spin
                    self._wake.clear()
                continue
            # Park; a component starting after the flag is set wakes the thread when it
            # needs samples, and one that started before it is seen by the check.
            self._parked = True
            if not self._stop and not (self._active and self._sampling()):
                wait()
            self._parked = False
            self._wake.clear()
            idle = 0

    def _sampling(self) -> bool:
        return self._needs_samples or not self._counter_ok

    @staticmethod
    def _sample_gpu(nvml: Any, trackers: list[PeakTracker]) -> None:
        used = nvml.process_used_bytes()
        if used is None:
            return
        for tracker in trackers:
            if tracker.peak_gpu_process_bytes is None or used > tracker.peak_gpu_process_bytes:
                tracker.peak_gpu_process_bytes = used

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
        self._ready = threading.Event()
        self._warm_up_waited = False
        self._active = set()
        self._parked = False
        self._read = make_rss_reader()
        self._last = (0, 0)
        if self._counter is not None:  # its file is the parent's /proc entry
            self._counter.close()
        self._counter = open_peak_rss_counter()
        self._floor, self._counter_ok = 0, self._counter is not None
        self._unchecked_starts = 0
        self._verified_floor = -1
        self._mark_base = _initial_mark(self._counter)
        self._needs_samples = True
        self._boundary = threading.Lock()


class NoMemorySampler:
    """Stands in for :class:`MemorySampler` when memory probes are off: peaks stay None."""

    interval_s = 0.0

    def warm_up(self, timeout_s: float) -> bool:
        return True

    def start_component(self) -> PeakTracker:
        return PeakTracker(None)

    def end_component(self, tracker: PeakTracker) -> None:
        pass

    def stop(self) -> None:
        pass

    def after_fork_in_child(self) -> None:
        pass
