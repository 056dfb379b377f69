"""The component handle: one invocation of a component (``c`` in
``with run.component(...) as c``), and the status rules it applies.

Status rules (ARCHITECTURE §4, orchestration notes §2):

* a component ends ``ok``; or ``empty`` (a success) after ``c.empty(reason)`` or
  ``raise mlobs.Empty(reason)``; or ``error`` when an exception escapes it, with an
  error_code from :mod:`mlobs.core.classify`;
* a failing *required* component fails fast: the exception propagates and the run ends
  ``error``;
* a failing *optional* component is best-effort: its record says ``error``, the exception
  is swallowed (a decorated function returns ``None``) and the run stays ``ok`` with a
  warning.

Cost on the caller's thread: two clock reads at start, one at the end, a context variable
set/reset, the memory probes (RSS readings at start and end, shared between back-to-back
components, see :mod:`mlobs.probes.memory_sampler`; torch's CUDA peak counters only when
the program initialised CUDA) and one deque append per sink. Everything else (UUIDs,
timestamps, model_signature, the record itself) is built lazily on the sink threads.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mlobs.core.canonical import json_copy
from mlobs.core.checks import check_word, finite_number
from mlobs.core.classify import classify_exception, exception_message, exception_type_name
from mlobs.core.compact import compact_line, epoch_us, model_values
from mlobs.core.errors import ConfigError, Empty
from mlobs.core.ids import new_uuid4
from mlobs.core.limits import CODE_MAX_CHARS, NAME_MAX_CHARS
from mlobs.core.records import PREDICTION_STATUSES, ComponentRecord, EventRecord, ModelRef
from mlobs.core.signature import model_signature
from mlobs.core.text import shown, text_of
from mlobs.core.tracebacks import format_traceback
from mlobs.hooks.attempts import async_attempts, attempts
from mlobs.hooks.batch_size import BatchSizeChoice
from mlobs.hooks.component_cache import ComponentCache
from mlobs.hooks.context import current_component_var, reset_var
from mlobs.hooks.oom import OomPolicy, oom_snapshot
from mlobs.hooks.retry import RetryPolicy
from mlobs.hooks.spec import ComponentSpec
from mlobs.probes.gpu import cuda_end, cuda_start

if TYPE_CHECKING:
    from tenacity import AsyncRetrying, Retrying

    from mlobs.hooks.run import Run

_perf_ns = time.perf_counter_ns
_record_lock = threading.Lock()

#: The warning on a component or run a generator's consumer closed before its end.
CLOSED_EARLY_WARNING = ("closed before its end (GeneratorExit): the consumer stopped "
                        "iterating")


def _increase(peak: int | None, start: int | None) -> int | None:
    """What a component added to a peak (bytes): peak - start, never below 0."""
    return None if peak is None or start is None else max(0, peak - start)


@functools.lru_cache(maxsize=1024)
def _signature_of(models: tuple[ModelRef, ...]) -> str | None:
    return model_signature(models)


class ComponentCall:
    """One invocation of a component; the handle ``c`` of ``with run.component(...) as c``
    (or ``async with``, which keeps the cache's file work off the event loop).

    Methods called inside the component: :meth:`empty`, :meth:`warn`, :meth:`set_items`,
    :meth:`metric`, :meth:`event`, :meth:`set_prediction`, and :meth:`attempts` to run
    the body under the OOM and retry policies (``batch_size`` is then the size to use in
    the current attempt). After it ends, :meth:`record` gives its :class:`ComponentRecord`.
    """

    __slots__ = ("run", "spec", "name", "required", "models", "batch_size",
                 "batch_size_requested", "device_used", "attempt", "status", "empty_reason",
                 "error", "error_code", "warnings", "items", "metrics", "events",
                 "oom_count", "retry_count", "prediction_status", "cache_status",
                 "cache_key", "cache_miss_reason", "cache_version", "_cache", "_result",
                 "_has_result", "_t0_ns", "_t1_ns", "_tracker", "_gpu", "_gpu_peaks",
                 "_oom_seen", "_final", "_token", "_record", "_id")

    def __init__(self, run: Run, spec: ComponentSpec, required: bool,
                 batch_size: int | BatchSizeChoice | None, inputs: Any = None) -> None:
        """
        Args:
            run: the run it records into.
            spec: what the component declares (checked).
            required: as the run's analysis profile decides.
            batch_size: the size this invocation starts with (a decorated call may pass
                its own), or a :class:`~mlobs.BatchSizeChoice` (recorded as an event).
            inputs: what a cached result is computed from (``cache=True``).
        """
        self.run = run
        self.spec = spec
        # One unpacking of the tuple instead of an attribute read per field.
        name, _, _, models, _, device, _, _, _, cache, codec, ttl_days = spec
        self.name = name
        self.required = required
        self.models = models
        self.device_used = device or (models[0].device if models else None)
        self.oom_count = self.retry_count = 0
        self.prediction_status = None
        self.status = "ok"
        self.empty_reason = self.error = self.error_code = None
        self.warnings = self.metrics = self.events = self.items = None
        self._gpu_peaks = self._oom_seen = self._final = None
        self._record = self._id = self._token = self._t1_ns = None
        self.cache_status = self.cache_key = self.cache_miss_reason = None
        self.cache_version = self._result = None
        self._has_result = False
        self._cache = ComponentCache(cache, inputs, codec, ttl_days) if cache else None
        if isinstance(batch_size, BatchSizeChoice):
            self.event("batch_size_chosen", **batch_size.attributes())
            batch_size = batch_size.batch_size
        self.batch_size = self.batch_size_requested = batch_size

    @property
    def producer_version(self) -> str | None:
        return self.spec.producer_version

    @property
    def schema_version(self) -> str | None:
        return self.spec.schema_version

    @property
    def on_oom(self) -> OomPolicy | None:
        return self.spec.on_oom

    @property
    def retry(self) -> RetryPolicy | None:
        return self.spec.retry

    # -- lifecycle (caller's thread) -------------------------------------------------
    def __enter__(self) -> ComponentCall:
        self._start()
        if self._cache is not None:  # inside the timed interval: a hit lasts its lookup
            self._cache.begin(self)
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        suppress = self._end(exc)
        if self._cache is not None and self.status != "error":
            self._finish_cache()
        self.run._component_finished(self)
        return suppress

    async def __aenter__(self) -> ComponentCall:
        """``async with run.component(...) as c``: as ``with``; with ``cache=True`` the
        lookup (file reads, a SHA-256, a decode) runs on a thread of the loop's default
        executor. Without a cache nothing is handed off (no thread hop).

        Raises:
            ConfigError: the handle was already entered.
        """
        self._start()
        if self._cache is not None:
            import asyncio  # only async callers get here, and they have it loaded
            try:
                await asyncio.to_thread(self._cache.begin, self)
            except BaseException as exc:  # cancelled while looking up: the invocation
                self._end(exc)              # ends here, recorded as an error
                self.run._component_finished(self)
                raise
        return self

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        """The end of ``async with``: as ``with``; with ``cache=True`` storing the result
        (an encode, atomic writes under a file lock) runs on a thread of the loop's
        default executor, which then hands the record to the sinks."""
        suppress = self._end(exc)
        if self._cache is not None and self.status != "error":
            import asyncio
            await asyncio.to_thread(self._finish_cache_and_report)
        else:
            self.run._component_finished(self)
        return suppress

    def _start(self) -> None:
        if self._token is not None:  # one record per invocation: never reused
            raise ConfigError(f"component {self.name!r}: this handle was already entered; "
                              "call run.component(...) again for each invocation")
        self.attempt = self.run._next_attempt(self.name)
        recorder = self.run._recorder
        self._tracker = recorder.sampler.start_component()
        self._gpu = cuda_start(self.device_used) if recorder.gpu_probes else None
        self._token = current_component_var.set(self)
        self._t0_ns = _perf_ns()

    def _end(self, exc: BaseException | None) -> bool:
        """Stop the clocks and probes and apply the status rules; True: swallow ``exc``."""
        t1_ns = _perf_ns()
        if self._t1_ns is None:  # else stop_clock() ended the interval earlier
            self._t1_ns = t1_ns
        run = self.run
        run._recorder.sampler.end_component(self._tracker)
        if self._gpu is not None:
            self._gpu_peaks = cuda_end(self._gpu)
        reset_var(current_component_var, self._token)
        suppress = False
        if exc is not None:
            if isinstance(exc, Empty):
                self.status, self.empty_reason, suppress = "empty", exc.reason, True
            elif isinstance(exc, GeneratorExit):
                self.warn(CLOSED_EARLY_WARNING)  # its consumer stopped: not a failure
            else:
                self.status, self.error = "error", exc
                self.error_code = self._error_code_of(exc)
                suppress = not self.required and isinstance(exc, Exception)
        return suppress

    def _finish_cache_and_report(self) -> None:
        self._finish_cache()
        self.run._component_finished(self)

    def _finish_cache(self) -> None:
        cache = self._cache
        if cache.hit:
            return
        if self._has_result or self.status == "empty":
            cache.finish(self, self._result)
        elif cache.mode:
            self.warn("nothing cached: the component set no result (c.set_result)")

    def _error_code_of(self, exc: BaseException) -> str:
        final = self._final
        if final is not None and final[0] is exc:
            return final[1]
        code = classify_exception(exc)
        if code == "oom" and self._oom_seen is not exc:
            self.record_oom(exc, oom_snapshot(exc, self.device_used), attempt=None)
        return code

    # -- inside the component --------------------------------------------------------
    @property
    def hit(self) -> bool:
        """True when the cache held a valid result: read it from :attr:`result` and skip
        the work (``cache=True`` components)."""
        return self._cache is not None and self._cache.hit

    @property
    def result(self) -> Any:
        """The cached result on a :attr:`hit`, else what :meth:`set_result` was given."""
        return self._cache.value if self.hit else self._result

    def set_result(self, value: Any) -> None:
        """The component's result: stored as a new cached version when the component
        ends successfully (``cache=True`` or ``"bypass"``)."""
        self._result, self._has_result = value, True

    def attempts(self) -> Retrying:
        """Run the body under this component's OOM and retry policies::

            for attempt in c.attempts():
                with attempt:
                    outputs = model(inputs, batch_size=c.batch_size)

        Without policies there is exactly one attempt. See :mod:`mlobs.hooks.attempts` for
        what is retried and what each retry records.
        """
        return attempts(self)

    def async_attempts(self) -> AsyncRetrying:
        """:meth:`attempts` for ``async for``: backoff waits with ``asyncio.sleep``."""
        return async_attempts(self)

    def record_oom(self, exc: BaseException, snapshot: Mapping[str, Any],
                   attempt: int | None) -> None:
        """Count an OOM and record its ``oom`` event (batch size that failed, snapshot)."""
        self._oom_seen = exc
        self.oom_count += 1
        self.event("oom", attempt=attempt, batch_size=self.batch_size,
                   error_type=exception_type_name(exc), **snapshot)

    def record_retry(self, exc: BaseException, code: str, *, attempt: int,
                     wait_s: float, message_max_chars: int) -> None:
        """Count a transient retry and record its ``retry`` event (``wait_s``: the backoff
        in seconds before the next attempt)."""
        self.retry_count += 1
        self.event("retry", attempt=attempt, error_code=code,
                   error_type=exception_type_name(exc),
                   message=exception_message(exc, message_max_chars),
                   wait_s=round(wait_s, 6))

    def degrade_batch_size(self, smaller: int) -> None:
        """Run the next attempt with ``smaller`` (an OOM policy's choice; the record keeps
        ``batch_size_requested``)."""
        self.batch_size = smaller

    def final_error_code(self, exc: BaseException, code: str) -> None:
        """Make ``code`` the error_code if ``exc`` ends this component."""
        self._final = (exc, code)

    def cache_bypassed(self, warning: str) -> None:
        """The idempotency key could not be computed: ``bypass``, with ``warning``."""
        self.cache_status = "bypass"
        self.warn(warning)

    def cache_looked_up(self, key_digest: str, status: str, miss_reason: str | None) -> None:
        """The cache lookup's outcome: ``hit``, ``miss`` or ``bypass``, and why it missed."""
        self.cache_key, self.cache_status, self.cache_miss_reason = \
            key_digest, status, miss_reason

    def cache_hit(self, version: int, status: str, empty_reason: str | None) -> None:
        """A hit on cached ``version``: a cached ``empty`` result ends empty again."""
        self.cache_version = version
        if status == "empty":
            self.status, self.empty_reason = "empty", empty_reason

    def cache_stored(self, version: int) -> None:
        """The result was stored as cached version ``version``."""
        self.cache_version = version

    def restart_clock(self) -> None:
        """Start the timed interval now, later than ``__enter__`` started it: for an
        integration that opens the component before the work it times (the Celery
        integration opens it in ``task_prerun`` and times the task's body alone).
        ``started_at`` and ``duration_ms`` follow this reading."""
        self._t0_ns = _perf_ns()

    def stop_clock(self) -> None:
        """End the timed interval now; ``__exit__``, later, keeps this reading instead of
        taking its own (``finished_at`` and ``duration_ms`` follow it)."""
        self._t1_ns = _perf_ns()

    def set_component_run_id(self, component_run_id: str) -> None:
        """Use ``component_run_id`` (a UUID) instead of a new one: an integration whose
        redelivered work must write the same record (idempotent writes)."""
        self._id = component_run_id

    def empty(self, reason: str) -> None:
        """End as ``empty`` with ``reason`` (e.g. ``"no_speech"``) once the block finishes.

        Raises:
            ConfigError: ``reason`` is not a non-empty string of at most 128 characters.
        """
        self.status, self.empty_reason = "empty", check_word("empty reason", reason,
                                                             CODE_MAX_CHARS)

    def warn(self, message: str) -> None:
        """Attach a warning to this component's record (any value: its text, see
        :func:`mlobs.core.text.text_of`)."""
        if self.warnings is None:
            self.warnings = []
        self.warnings.append(text_of(message))

    def set_items(self, n: int) -> None:
        """Throughput count (items processed). A non-integer or negative ``n`` is not
        recorded; a warning on the record says why."""
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n < 2**63:
            self.warn(f"set_items ignored: {shown(n, 40)} is not a non-negative 64-bit "
                      "integer")
            return
        self.items = int(n)  # an int subclass (IntEnum, numpy's) is stored as an int

    def metric(self, name: str, value: float) -> None:
        """A user metric: a non-empty name and a finite number (stored as a plain int or
        float). Invalid ones become a warning, not an error."""
        number = finite_number(value)
        try:
            check_word("metric name", name, NAME_MAX_CHARS)
        except ConfigError as exc:
            self.warn(f"metric ignored: {exc}")
            return
        if number is None:
            self.warn(f"metric ignored: {name}={shown(value, 40)} is not a finite number")
            return
        if self.metrics is None:
            self.metrics = {}
        self.metrics[name] = number

    def event(self, kind: str, **attributes: Any) -> None:
        """Record an event (``kind`` plus JSON attributes) at the current time.

        An invalid kind, or attributes JSON cannot represent, become a warning on the
        record instead (the event is not kept). The attributes are copied: changing them
        afterwards does not change the event.
        """
        try:
            check_word("event kind", kind, CODE_MAX_CHARS)
            attributes = json_copy(attributes)
        except ConfigError as exc:
            self.warn(f"event ignored: {exc}")
            return
        if self.events is None:
            self.events = []
        self.events.append((kind, _perf_ns(), attributes))

    def set_prediction(self, model: ModelRef, prediction_status: str) -> None:
        """Record which model answered a fallback chain (model system rules §11.2).

        ``model`` replaces ``models_used`` (so ``model_signature`` names the model whose
        output this is) and, unless the component declared a ``device``, sets
        ``device_used``; ``prediction_status`` is ``"ok"`` (the first choice answered) or
        ``"degraded"``.

        Raises:
            ConfigError: ``model`` is not a ModelRef or the status is unknown.
        """
        if not isinstance(model, ModelRef):
            raise ConfigError(f"set_prediction needs an mlobs.ModelRef, got {model!r:.80}")
        if prediction_status not in PREDICTION_STATUSES:
            raise ConfigError(f"prediction_status must be one of {PREDICTION_STATUSES}, "
                              f"got {prediction_status!r:.40}")
        self.models = (model,)
        if self.spec.device is None:  # the device follows the model that answered
            self.device_used = model.device
        self.prediction_status = prediction_status

    # -- the record (sink threads) ---------------------------------------------------
    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def component_run_id(self) -> str:
        """UUID of this invocation (generated on first use)."""
        if self._id is None:
            with _record_lock:
                if self._id is None:
                    self._id = new_uuid4()
        return self._id

    def record(self) -> ComponentRecord:
        """The finished invocation's record, built once (thread-safe)."""
        if self._record is not None:
            return self._record
        with _record_lock:
            if self._record is None:
                self._record = self._build_record()
        return self._record

    def _build_record(self) -> ComponentRecord:
        if self._id is None:  # under _record_lock (record())
            self._id = new_uuid4()
        return ComponentRecord(*self._record_values(self._id, compact=False))

    def spool_line(self) -> bytes | None:
        """The invocation's compact spool line (:mod:`mlobs.core.compact`), built without
        its record; None when a sink built the record already (its JSON is cached), or
        when the compact form cannot hold it (events: their attributes may be any JSON;
        an int beyond 64 bits): the record's own line is written then.

        Raises:
            Exception: what building the record's values raises (this one is refused).
        """
        if self._record is not None or self.events:
            return None
        try:
            return compact_line(self._record_values(self.component_run_id, compact=True))
        except TypeError:
            return None

    def _record_values(self, component_run_id: str, *, compact: bool) -> list[Any]:
        """The record's fields in :data:`mlobs.core.compact.FIELDS` order: as the record
        holds them, or (``compact``) times as epoch microseconds and models as tuples."""
        run = self.run
        t0_ns, t1_ns = self._t0_ns, self._t1_ns
        error = self.error
        run_id = run.run_id
        if compact:
            started = epoch_us(run.record.started_at)
            started_at = started + round((t0_ns - run._t0_ns) / 1e3)
            finished_at = started + round((t1_ns - run._t0_ns) / 1e3)
            models: list[Any] = [model_values(model) for model in self.models]
            events: list[Any] = []
        else:
            started_at, finished_at = run._wall_at(t0_ns), run._wall_at(t1_ns)
            models = list(self.models)
            # On the run's time base, like the component's own times.
            events = [EventRecord(new_uuid4(), run_id, component_run_id, kind,
                                  run._wall_at(at_ns), attributes)
                      for kind, at_ns, attributes in self.events or ()]
        tracker = self._tracker
        # torch's own counters when they covered this component, else NVML's process total.
        gpu_allocated, gpu_reserved = self._gpu_peaks or (None, None)
        if gpu_reserved is None:
            gpu_reserved = tracker.peak_gpu_process_bytes
        gpu_at_start = None if self._gpu is None else self._gpu.allocated_at_start_bytes
        rss_at_start, peak_rss = tracker.start_rss_bytes, tracker.peak_rss_bytes
        return [
            component_run_id, run_id, self.name, self.attempt, self.required, self.status,
            started_at, finished_at, (t1_ns - t0_ns) / 1e6, self.empty_reason,
            self.error_code,
            None if error is None else exception_type_name(error),
            None if error is None else exception_message(error),
            None if error is None else format_traceback(error),
            list(self.warnings or ()), self.spec.producer_version, self.schema_version,
            self.device_used, self.batch_size, self.batch_size_requested, models,
            _signature_of(self.models), self.cache_status, self.cache_key,
            self.cache_miss_reason, self.cache_version, peak_rss, gpu_allocated,
            gpu_reserved, rss_at_start, _increase(peak_rss, rss_at_start),
            gpu_at_start if gpu_allocated is not None else None,
            _increase(gpu_allocated, gpu_at_start), self.oom_count, self.retry_count,
            self.prediction_status, self.items, dict(self.metrics or {}), events,
        ]
