"""The sink contract and the batching worker that drives the sinks.

A *sink* exports batches; it is only ever called on its worker's thread:

* ``export(records) -> None``: write a batch of records; raising means the batch failed
  (:class:`RecordsRefused` or an error with ``refused``: those records only).
* ``force_flush(timeout_s) -> bool``: flush what the sink buffers itself (may be a no-op).
* ``shutdown(timeout_s) -> None``: release resources.
* ``on_idle() -> None`` (optional): called after each wake's exports; a sink that defers
  work (the manifest sink's rewrites of a long run) does what is due here, and says with
  ``has_pending() -> bool`` whether it still has some (the worker sleeps until the next
  item only when no sink has).
* ``begin_flush(timeout_s) -> None`` and ``finish_flush(wait_s) -> bool`` (optional, both
  or neither): a flush in two phases. The worker starts it, flushes the other sinks, then
  asks ``finish_flush`` (True once done, waiting at most ``wait_s``) until it is done or
  the flush's time is up, exporting the records that arrive meanwhile to every sink.
* ``local = True`` (optional): the sink only writes local files and returns within
  milliseconds; the recorder drives all local sinks from one worker.
* ``takes_lines = True`` (optional): ``export`` gets :class:`SpoolLine` tuples, the
  items' spool lines, instead of records (the warehouse writer's sinks: a finished invocation's
  compact line costs a third of its record).

The queue holds ``RunRecord`` snapshots and finished component invocations
(:class:`~mlobs.core.records.Recordable`); the worker builds their records, one by one,
before a sink sees them (once per invocation, whichever worker asks first). The pipeline's
thread only appends to a bounded deque (no lock; a wake-up only when the worker had
nothing to do); the worker wakes every ``flush_interval_s`` while it has work, or on
``force_flush``, drains the queue in batches and calls each sink's ``export``. A failing
export is logged and counted (overall and per run) and never raised into the pipeline;
items that do not fit the queue are counted as dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, runtime_checkable

from mlobs.core.classify import exception_summary
from mlobs.core.records import Record, SinkItem, materialize
from mlobs.core.suppression import suppress_in_this_thread
from mlobs.sinks.spool import line_of

log = logging.getLogger("mlobs.sinks")

#: How long a worker builds records (or lines) before it lets go of the GIL (``yield_gil``),
#: in nanoseconds. Short enough that a pipeline thread waking from I/O or a sleep waits
#: little for the GIL; long enough that the worker keeps up with a CPU-bound pipeline,
#: which gives the GIL back only after CPython's switch interval (5 ms): yielding after
#: every few records (about 50 µs) let it build under 1,000 records a second, fewer than
#: a pipeline of 0.5 ms components makes.
YIELD_AFTER_NS = 1_000_000


def yield_gil() -> None:
    """Let a thread waiting for the GIL (the pipeline's, waking from I/O or a sleep) take
    it now rather than after CPython's switch interval (5 ms): a sink thread building a
    batch of records would otherwise hold it for milliseconds."""
    time.sleep(0)


#: How long a worker waits for a two-phase sink's flush before it exports what arrived.
FLUSH_POLL_S = 0.02
#: The time a sink's flush gets when a waiter waits without a limit.
_UNBOUNDED_FLUSH_S = 3600.0


class SpoolLine(NamedTuple):
    """What a sink with ``takes_lines = True`` gets per item: the item's spool line
    (:func:`mlobs.sinks.spool.line_of`), built once, instead of its record."""

    run_id: str
    item: SinkItem
    line: bytes


def _spool_line(item: SinkItem) -> SpoolLine:
    return SpoolLine(item.run_id, item, line_of(item))


@runtime_checkable
class Sink(Protocol):
    """What a sink implements (duck-typed; see the module docstring)."""

    name: str

    def export(self, records: list[Record]) -> None: ...

    def force_flush(self, timeout_s: float) -> bool: ...

    def shutdown(self, timeout_s: float) -> None: ...


class RecordsRefused(Exception):
    """Raised by a sink's ``export`` once it exported the rest of the batch: the records
    it refused, one run_id each (the batch worker counts exactly these as failed)."""

    def __init__(self, message: str, refused: tuple[str, ...]) -> None:
        super().__init__(message)
        self.refused = refused


@dataclass(frozen=True)
class SinkStats:
    """Counters of one sink since the process (or the last configure) started."""

    name: str
    enqueued: int
    exported: int
    failed: int
    dropped: int
    last_error: str | None
    #: records the sink kept locally to send later (the warehouse sink's spool).
    spooled: int = 0


class _Lane:
    """One sink behind a worker and its counters (a worker may drive several sinks)."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.exported = self.failed = 0
        self.failed_by_run: Counter[str] = Counter()
        self.last_error: str | None = None

    def export(self, records: list[Record]) -> None:
        try:
            self.sink.export(records)
        except Exception as exc:  # a sink error is counted, never raised into the pipeline
            # A sink may say which records (or runs) failed; the rest was exported.
            refused = getattr(exc, "refused", None)
            failed_runs = getattr(exc, "run_ids", None)
            failed = list(refused) if refused is not None else [
                r.run_id for r in records if failed_runs is None or r.run_id in failed_runs]
            self.exported += len(records) - len(failed)
            self.count_failed(failed, exception_summary(exc))
        else:
            self.exported += len(records)

    def on_idle(self) -> None:
        on_idle = getattr(self.sink, "on_idle", None)
        if on_idle is None:
            return
        try:
            on_idle()
        except Exception as exc:  # the sink keeps the work for its next call
            self.last_error = exception_summary(exc)
            log.error("mlobs sink %r failed deferred work: %s", self.sink.name,
                      self.last_error)

    def has_pending(self) -> bool:
        """Whether the sink has deferred work for :meth:`on_idle` (a sink with ``on_idle``
        but no ``has_pending`` is asked at every interval)."""
        if not hasattr(self.sink, "on_idle"):
            return False
        has_pending = getattr(self.sink, "has_pending", None)
        try:
            return has_pending is None or bool(has_pending())
        except Exception:  # asked again at the next interval
            return True

    def begin_flush(self, timeout_s: float) -> bool:
        """Start the sink's two-phase flush; True when :meth:`finish_flush` must follow."""
        begin = getattr(self.sink, "begin_flush", None)
        if begin is None or not hasattr(self.sink, "finish_flush"):
            return False
        try:
            begin(timeout_s)
        except Exception as exc:  # its force_flush tries again and reports
            log.debug("mlobs sink %r could not start a flush: %r", self.sink.name, exc)
            return False
        return True

    def finish_flush(self, wait_s: float) -> bool:
        """True once the flush :meth:`begin_flush` started is over (answered or failed)."""
        try:
            return bool(self.sink.finish_flush(wait_s))
        except Exception as exc:
            self._flush_failed(exc)
            return True

    def flush(self, timeout_s: float) -> None:
        try:
            self.sink.force_flush(timeout_s)
        except Exception as exc:
            self._flush_failed(exc)

    def _flush_failed(self, exc: Exception) -> None:
        refused = getattr(exc, "refused", None)
        if refused is not None:  # records the sink's deferred work could not write
            self.exported -= len(refused)
            self.count_failed(list(refused), exception_summary(exc))
            return
        self.last_error = exception_summary(exc)
        log.error("mlobs sink %r failed to flush: %s", self.sink.name, self.last_error)

    def count_failed(self, run_ids: list[str], error: str) -> None:
        self.failed += len(run_ids)
        self.failed_by_run.update(run_ids)
        self.last_error = error
        log.error("mlobs sink %r failed to export %d item(s): %s", self.sink.name,
                  len(run_ids), error)


class BatchWorker:
    """Feeds one sink, or several in turn, from a bounded queue on a daemon thread.

    Several sinks share a worker when each is quick and local (the manifest and the
    warehouse spool): one thread instead of one per sink then takes the GIL from the
    pipeline (measured: about half the sink threads' CPU per record of one thread per
    sink; the record itself is built once per invocation either way). A sink that waits
    on a network needs its own worker, or flushes in two phases (``begin_flush``), or it
    holds back the others.

    Args:
        sinks: the sink to drive, or a sequence of sinks (exported to in that order; one
            sink's failure is its own: the others still get the batch).
        flush_interval_s: how long the worker sleeps between drains when not asked.
        max_batch_size: most items passed to one ``export`` call.
        max_queue_size: items held before new ones are dropped (and counted).
    """

    def __init__(self, sinks: Sink | Sequence[Sink], *, flush_interval_s: float = 0.05,
                 max_batch_size: int = 512, max_queue_size: int = 100_000) -> None:
        self.sinks: tuple[Sink, ...] = (
            tuple(sinks) if isinstance(sinks, (list, tuple)) else (sinks,))
        if not self.sinks:
            raise ValueError("BatchWorker needs at least one sink")
        self.flush_interval_s = flush_interval_s
        self.max_batch_size = max_batch_size
        self.max_queue_size = max_queue_size
        self._init_state()

    def after_fork_in_child(self) -> None:
        """The parent's thread and queue do not belong to a forked child: start empty
        (and so does each sink, when it holds something of the parent's, like a pipe)."""
        self._init_state()
        for sink in self.sinks:
            after_fork = getattr(sink, "after_fork_in_child", None)
            if after_fork is not None:
                after_fork()

    def _init_state(self) -> None:
        self._queue: deque[SinkItem] = deque()
        self._flush_waiters: deque[tuple[threading.Event, float | None]] = deque()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = self._parked = False
        self.enqueued = self.dropped = 0
        self._lanes = tuple(_Lane(sink) for sink in self.sinks)
        self._line_lanes = [lane for lane in self._lanes if getattr(lane.sink, "takes_lines",
                                                                    False)]
        self._record_lanes = [lane for lane in self._lanes if lane not in self._line_lanes]

    # -- caller's thread -------------------------------------------------------------
    def enqueue(self, item: SinkItem) -> None:
        """Queue one item; never blocks and never raises."""
        if len(self._queue) >= self.max_queue_size or self._closed:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error("mlobs sink(s) %s dropped %d item(s): queue full or closed",
                          self.name, self.dropped)
            return
        self._queue.append(item)
        self.enqueued += 1
        if self._parked:
            self._wake.set()
        elif self._thread is None:
            self._start()

    @property
    def name(self) -> str:
        """The sinks' names, joined with '+' (the thread's name ends with it)."""
        return "+".join(sink.name for sink in self.sinks)

    def force_flush(self, timeout_s: float | None = 10.0) -> bool:
        """Block until everything queued before this call was exported (or failed); None:
        without a time limit.

        Returns:
            False when ``timeout_s`` passed first.
        """
        thread = self._thread
        if thread is None or not thread.is_alive() or thread is threading.current_thread():
            return not self._queue
        done = threading.Event()
        self._flush_waiters.append((done, timeout_s))
        self._wake.set()
        return done.wait(timeout_s)

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Flush, stop the thread and shut the sinks down."""
        self.force_flush(timeout_s)
        self._closed = True
        thread = self._thread
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)
        for sink in self.sinks:
            try:
                sink.shutdown(timeout_s)
            except Exception:
                log.exception("mlobs sink %r failed to shut down", sink.name)

    def stats(self) -> list[SinkStats]:
        """One entry per sink (the queue's counters are the worker's, shared by its sinks)."""
        return [SinkStats(lane.sink.name, self.enqueued, lane.exported, lane.failed,
                          self.dropped, lane.last_error, getattr(lane.sink, "spooled", 0))
                for lane in self._lanes]

    def failures_for_run(self, run_id: str) -> list[tuple[str, int, str | None]]:
        """(sink name, records of ``run_id`` it failed to export, its last error), for
        each sink that failed some."""
        return [(lane.sink.name, lane.failed_by_run[run_id], lane.last_error)
                for lane in self._lanes if lane.failed_by_run.get(run_id)]

    # -- worker thread ---------------------------------------------------------------
    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._loop, daemon=True,
                                                name=f"mlobs-sink-{self.name}")
                self._thread.start()

    def _loop(self) -> None:
        suppress_in_this_thread()
        while True:
            self._sleep()
            self._wake.clear()
            # Take the waiters before draining: whatever they queued is already in the deque.
            waiters = [self._flush_waiters.popleft() for _ in range(len(self._flush_waiters))]
            self._drain()
            if waiters:
                # The sink may take as long as the most patient waiter allows (a float:
                # sinks pass it on to libraries that need one).
                timeouts = [timeout for _, timeout in waiters]
                self._flush(_UNBOUNDED_FLUSH_S if None in timeouts else max(timeouts))
            for done, _ in waiters:
                done.set()
            if self._closed and not self._queue:
                return

    def _sleep(self) -> None:
        """Until the next drain: ``flush_interval_s``, or, with nothing to do, until an
        item or a flush arrives (each timed wake-up takes the GIL from the pipeline: an
        idle worker waking every 50 ms added 13 µs to each 0.5 ms component of another
        recorder's CPU-bound run in the same process)."""
        if self._queue or self._flush_waiters or self._closed or any(
                lane.has_pending() for lane in self._lanes):
            self._wake.wait(self.flush_interval_s)
            return
        # Parked; an item queued after the flag is set wakes the thread (enqueue), and one
        # queued before it is seen by the check.
        self._parked = True
        if not (self._queue or self._flush_waiters or self._closed):
            self._wake.wait()
        self._parked = False
        if self._flush_waiters or self._closed:
            return
        self._wake.clear()  # an item: let a batch gather for one interval, as when awake
        self._wake.wait(self.flush_interval_s)

    def _flush(self, timeout_s: float) -> None:
        # Two-phase sinks (the warehouse writer: its answer may take a database's time)
        # flush while the others do and while new records keep reaching every sink: a
        # slow warehouse must not hold back the manifest of the records arriving meanwhile.
        deadline = time.monotonic() + timeout_s
        pending = [lane for lane in self._lanes if lane.begin_flush(timeout_s)]
        for lane in self._lanes:
            if lane not in pending:
                lane.flush(timeout_s)
        while pending:
            pending = [lane for lane in pending if not lane.finish_flush(FLUSH_POLL_S)]
            if not pending or time.monotonic() >= deadline:
                return
            if self._queue:
                self._drain()

    def _drain(self) -> None:
        # What was queued at the wake, not what arrives meanwhile: a sink slower than the
        # pipeline would otherwise never sleep and get batches of one or two records.
        queue = self._queue
        left = len(queue)
        while left:
            batch = [queue.popleft() for _ in range(min(left, self.max_batch_size))]
            left -= len(batch)
            self._export(batch)
        for lane in self._lanes:
            lane.on_idle()

    def _export(self, batch: list[SinkItem]) -> None:
        # Records (or spool lines, for sinks that take lines) are built here, one by one,
        # so an item that cannot be built is refused alone instead of failing its batch
        # in every sink; each is built once, whichever sinks need it.
        if self._line_lanes:
            lines = self._prepare(batch, _spool_line, self._line_lanes)
            for lane in self._line_lanes:
                lane.export(lines)
        if self._record_lanes:
            records = self._prepare(batch, materialize, self._record_lanes)
            for lane in self._record_lanes:
                lane.export(records)

    def _prepare(self, batch: list[SinkItem], build: Callable[[SinkItem], Any],
                 lanes: list[_Lane]) -> list:
        """``build`` of each item; an item that fails is counted failed for ``lanes``."""
        prepared = []
        clock = time.perf_counter_ns
        yield_at = clock() + YIELD_AFTER_NS
        for item in batch:
            if clock() >= yield_at:
                yield_gil()
                yield_at = clock() + YIELD_AFTER_NS
            try:
                prepared.append(build(item))
            except Exception as exc:
                for lane in lanes:
                    lane.count_failed([item.run_id], f"a record could not be built: "
                                                     f"{exception_summary(exc)}")
        return prepared
