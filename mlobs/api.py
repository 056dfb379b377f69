"""The hook API: ``run``, ``Run.component``, the ``component`` decorator (ARCHITECTURE §3).

Status rules (ARCHITECTURE §4, orchestration notes §2):

* a component ends ``ok``; or ``empty`` (a success) after ``c.empty(reason)`` or
  ``raise mlobs.Empty(reason)``; or ``error`` when an exception escapes it, with an
  error_code from :mod:`mlobs.classify`;
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
import inspect
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar, Token
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from itertools import count
from pathlib import Path
from typing import Any, TypeVar

from tenacity import AsyncRetrying, Retrying, stop_after_attempt

from mlobs.attempts import async_attempts, attempts
from mlobs.batch_size import BatchSizeChoice
from mlobs.cache.codecs import Codec
from mlobs.cache.component_cache import ComponentCache, check_cache_mode
from mlobs.canonical import json_copy
from mlobs.classify import classify_exception, exception_message
from mlobs.context import (
    active_runs,
    current_component_var,
    current_run_var,
    fork_generation,
    resolve_run,
)
from mlobs.environment import run_environment
from mlobs.errors import (
    ConfigError,
    Empty,
    check_finite,
    check_int,
    check_word,
    finite_number,
)
from mlobs.ids import new_uuid4
from mlobs.limits import CODE_MAX_CHARS, NAME_MAX_CHARS
from mlobs.manifest import manifest_status
from mlobs.oom import OomPolicy, oom_snapshot
from mlobs.paths import manifest_path
from mlobs.probes.gpu import cuda_end, cuda_start
from mlobs.profile import AnalysisProfile
from mlobs.recorder import Recorder, get_recorder
from mlobs.records import (
    PREDICTION_STATUSES,
    ComponentRecord,
    EventRecord,
    ModelRef,
    RunRecord,
)
from mlobs.retry import RetryPolicy
from mlobs.run_status import optional_failure_warning, required_failure_message
from mlobs.signature import config_hash, model_signature
from mlobs.text import shown, text_of

log = logging.getLogger("mlobs")
F = TypeVar("F", bound=Callable[..., Any])

_perf_ns = time.perf_counter_ns
_record_lock = threading.Lock()


@functools.lru_cache(maxsize=1024)
def _signature_of(models: tuple[ModelRef, ...]) -> str | None:
    return model_signature(models)


def _check_optional(label: str, value: str | None, max_chars: int) -> None:
    if value is not None:
        check_word(label, value, max_chars)


def _check_component_args(name: str, producer_version: str | None,
                          schema_version: str | None, models: Iterable[ModelRef],
                          device: str | None, batch_size: int | BatchSizeChoice | None = None,
                          on_oom: OomPolicy | None = None, retry: RetryPolicy | None = None,
                          cache: bool | str = False, codec: Codec | None = None,
                          cache_ttl_days: float | None = None) -> tuple[ModelRef, ...]:
    """Validate what a component declares (bounds: :mod:`mlobs.limits`); returns models."""
    check_word("component name", name, NAME_MAX_CHARS)
    check_cache_mode(cache)
    if cache_ttl_days is not None:
        check_finite("cache_ttl_days", cache_ttl_days)
    if codec is not None and not isinstance(codec, Codec):
        raise ConfigError("codec must have name, encode(value) -> bytes and decode(bytes)")
    if batch_size is not None and not isinstance(batch_size, BatchSizeChoice):
        check_int("batch_size", batch_size, 1)
    if on_oom is not None:
        if not isinstance(on_oom, OomPolicy):
            raise ConfigError("on_oom must be an OOM policy such as mlobs.HalveBatch(min=1)")
        if batch_size is None:
            raise ConfigError(f"component {name!r}: on_oom needs a batch_size to degrade")
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise ConfigError("retry must be an mlobs.RetryPolicy")
    _check_optional("producer_version", producer_version, NAME_MAX_CHARS)
    _check_optional("schema_version", schema_version, NAME_MAX_CHARS)
    _check_optional("device", device, CODE_MAX_CHARS)
    models = tuple(models)
    for model in models:
        if not isinstance(model, ModelRef):
            raise ConfigError(f"models must be mlobs.ModelRef instances, got {model!r}")
    return models


#: The warning on a component or run a generator's consumer closed before its end.
CLOSED_EARLY_WARNING = ("closed before its end (GeneratorExit): the consumer stopped "
                        "iterating")


def _reset(var: ContextVar[Any], token: Token[Any]) -> None:
    # ValueError: ended in another context (an async generator finalised by the event
    # loop, a generator closed from another thread), which never saw the value set.
    try:
        var.reset(token)
    except ValueError:
        pass


class ComponentCall:
    """One invocation of a component; the handle ``c`` of ``with run.component(...) as c``.

    Methods called inside the component: :meth:`empty`, :meth:`warn`, :meth:`set_items`,
    :meth:`metric`, :meth:`event`, :meth:`set_prediction`, and :meth:`attempts` to run
    the body under the OOM and retry policies (``batch_size`` is then the size to use in
    the current attempt). After it ends, :meth:`record` gives its :class:`ComponentRecord`.
    """

    __slots__ = ("run", "name", "required", "producer_version", "schema_version", "models",
                 "batch_size", "batch_size_requested", "device", "attempt", "status",
                 "empty_reason", "error", "error_code", "warnings", "items", "metrics",
                 "events", "oom_count", "retry_count", "prediction_status", "on_oom",
                 "retry", "device_used", "cache_status", "cache_key", "cache_miss_reason",
                 "cache_version", "_cache", "_result", "_has_result",
                 "_t0_ns", "_t1_ns", "_tracker", "_gpu", "_gpu_peaks", "_oom_seen",
                 "_final", "_token", "_record", "_id")

    def __init__(self, run: Run, name: str, required: bool, producer_version: str | None,
                 schema_version: str | None, models: tuple[ModelRef, ...],
                 batch_size: int | BatchSizeChoice | None, device: str | None,
                 on_oom: OomPolicy | None = None, retry: RetryPolicy | None = None,
                 cache: bool | str = False, inputs: Any = None, codec: Codec | None = None,
                 cache_ttl_days: float | None = None) -> None:
        self.run = run
        self.name = name
        self.required = required
        self.producer_version = producer_version
        self.schema_version = schema_version
        self.models = models
        self.device = device
        self.device_used = device or (models[0].device if models else None)
        self.on_oom, self.retry = on_oom, retry
        self.oom_count = self.retry_count = 0
        self.prediction_status = None
        self.status = "ok"
        self.empty_reason = self.error = self.error_code = None
        self.warnings = self.metrics = self.events = self.items = None
        self._gpu_peaks = self._oom_seen = self._final = None
        self._record = self._id = self._token = None
        self.cache_status = self.cache_key = self.cache_miss_reason = None
        self.cache_version = self._result = None
        self._has_result = False
        self._cache = ComponentCache(cache, inputs, codec, cache_ttl_days) if cache else None
        if isinstance(batch_size, BatchSizeChoice):
            self.event("batch_size_chosen", **batch_size.attributes())
            batch_size = batch_size.batch_size
        self.batch_size = self.batch_size_requested = batch_size

    # -- lifecycle (caller's thread) -------------------------------------------------
    def __enter__(self) -> ComponentCall:
        if self._token is not None:  # one record per invocation: never reused
            raise ConfigError(f"component {self.name!r}: this handle was already entered; "
                              "call run.component(...) again for each invocation")
        self.attempt = self.run._next_attempt(self.name)
        recorder = self.run._recorder
        self._tracker = recorder.sampler.start_component()
        self._gpu = cuda_start(self.device_used) if recorder.gpu_probes else None
        self._token = current_component_var.set(self)
        self._t0_ns = _perf_ns()
        if self._cache is not None:  # inside the timed interval: a hit lasts its lookup
            self._cache.begin(self)
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        self._t1_ns = _perf_ns()
        run = self.run
        run._recorder.sampler.end_component(self._tracker)
        if self._gpu is not None:
            self._gpu_peaks = cuda_end(self._gpu)
        _reset(current_component_var, self._token)
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
        if self._cache is not None and self.status != "error":
            self._finish_cache()
        run._component_finished(self)
        return suppress

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

        Without policies there is exactly one attempt. See :mod:`mlobs.attempts` for
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
                   error_type=type(exc).__qualname__, **snapshot)

    def final_error_code(self, exc: BaseException, code: str) -> None:
        """Make ``code`` the error_code if ``exc`` ends this component."""
        self._final = (exc, code)

    def empty(self, reason: str) -> None:
        """End as ``empty`` with ``reason`` (e.g. ``"no_speech"``) once the block finishes.

        Raises:
            ConfigError: ``reason`` is not a non-empty string of at most 128 characters.
        """
        self.status, self.empty_reason = "empty", check_word("empty reason", reason,
                                                             CODE_MAX_CHARS)

    def warn(self, message: str) -> None:
        """Attach a warning to this component's record (any value: its text, see
        :func:`mlobs.text.text_of`)."""
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
        if self.device is None:  # the device follows the model that answered
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
        duration_ms = (self._t1_ns - self._t0_ns) / 1e6
        started_at = self.run._wall_at(self._t0_ns)
        component_run_id = self._id or new_uuid4()
        self._id = component_run_id
        error = self.error
        run_id = self.run.run_id
        # On the run's time base, like the component's own times.
        events = [EventRecord(new_uuid4(), run_id, component_run_id, kind,
                              self.run._wall_at(at_ns), attributes)
                  for kind, at_ns, attributes in self.events or ()]
        tracker = self._tracker
        # torch's own counters when they covered this component, else NVML's process total.
        gpu_allocated, gpu_reserved = self._gpu_peaks or (None, None)
        if gpu_reserved is None:
            gpu_reserved = tracker.peak_gpu_process_bytes
        return ComponentRecord(
            component_run_id=component_run_id, run_id=run_id, component=self.name,
            attempt=self.attempt, required=self.required, status=self.status,
            started_at=started_at, finished_at=self.run._wall_at(self._t1_ns),
            duration_ms=duration_ms, empty_reason=self.empty_reason,
            error_code=self.error_code,
            error_type=None if error is None else type(error).__qualname__,
            error_message=None if error is None else exception_message(error),
            warnings=list(self.warnings or ()), producer_version=self.producer_version,
            schema_version=self.schema_version,
            device_used=self.device_used,
            batch_size=self.batch_size, batch_size_requested=self.batch_size_requested,
            models_used=list(self.models),
            model_signature=_signature_of(self.models),
            cache_status=self.cache_status, cache_key=self.cache_key,
            cache_miss_reason=self.cache_miss_reason, cache_version=self.cache_version,
            peak_rss_bytes=tracker.peak_rss_bytes,
            peak_gpu_allocated_bytes=gpu_allocated, peak_gpu_reserved_bytes=gpu_reserved,
            oom_count=self.oom_count,
            retry_count=self.retry_count, prediction_status=self.prediction_status,
            items=self.items,
            metrics=dict(self.metrics or {}), events=events,
        )


class Run:
    """An open run over one video; create it with :func:`mlobs.run`."""

    def __init__(self, recorder: Recorder, *, platform_id: str, video_id: str,
                 profile: str | AnalysisProfile, pipeline_version: str | None,
                 config: Mapping[str, Any] | None, sampling_policy_version: str | None,
                 seed: int | None, flush_timeout_s: float) -> None:
        check_word("platform_id", platform_id, NAME_MAX_CHARS)
        check_word("video_id", video_id, NAME_MAX_CHARS)
        _check_optional("pipeline_version", pipeline_version, NAME_MAX_CHARS)
        _check_optional("sampling_policy_version", sampling_policy_version, NAME_MAX_CHARS)
        self._profile = profile if isinstance(profile, AnalysisProfile) else AnalysisProfile(profile)
        self._recorder = recorder
        self._flush_timeout_s = flush_timeout_s
        self.record = RunRecord(
            run_id=new_uuid4(), platform_id=platform_id, video_id=video_id,
            status="running", started_at=datetime.now(timezone.utc),
            profile=self._profile.name, pipeline_version=pipeline_version,
            config_hash=config_hash(config), config=json_copy(dict(config or {})),
            sampling_policy_version=sampling_policy_version,
        )
        self._seed = seed
        self.fork_generation = fork_generation.value
        self._attempts: dict[str, count[int]] = {}
        self._attempts_lock = threading.Lock()
        self._required_cache: dict[tuple[str, bool | None], bool] = {}
        self._models_by_component: dict[str, tuple[ModelRef, ...]] = {}
        self._failed_required: list[ComponentCall] = []
        self._producer_runs_seen: set[str] = set()
        self._t0_ns = 0
        self._token: Any = None
        self._exit_hooks: list[Callable[[Run], None]] = []

    @property
    def run_id(self) -> str:
        return self.record.run_id

    @property
    def status(self) -> str:
        """``running`` until the ``with`` block ends, then ``ok`` or ``error``."""
        return self.record.status

    @property
    def profile(self) -> AnalysisProfile:
        """The run's analysis profile."""
        return self._profile

    def at_exit(self, hook: Callable[[Run], None]) -> None:
        """Call ``hook(run)`` once the run ended: its final record was handed to the sinks
        and flushed (for up to ``flush_timeout_s``). Integrations use it: the Celery
        integration assembles the manifest there.

        A hook that raises is logged; it never changes the run's outcome. Adding the same
        hook twice calls it once.
        """
        if hook not in self._exit_hooks:
            self._exit_hooks.append(hook)

    @property
    def manifest_path(self) -> Path:
        """Where the manifest sink writes this run's manifest.json."""
        r = self.record
        return manifest_path(self._recorder.settings.runs_dir, r.platform_id, r.video_id, r.run_id)

    def component(self, name: str, *, producer_version: str | None = None,
                  schema_version: str | None = None, models: Sequence[ModelRef] = (),
                  batch_size: int | BatchSizeChoice | None = None, device: str | None = None,
                  required: bool | None = None, on_oom: OomPolicy | None = None,
                  retry: RetryPolicy | None = None, cache: bool | str = False,
                  inputs: Any = None, codec: Codec | None = None,
                  cache_ttl_days: float | None = None) -> ComponentCall:
        """A context manager recording one invocation of component ``name``.

        Args:
            name: the component name (``"asr"``, ``"chunking"``, ...).
            producer_version: the component's code version.
            schema_version: the version of its output schema.
            models: the models it uses (enter ``model_signature``).
            batch_size: the batch size it runs with (>= 1), or a
                :func:`~mlobs.choose_batch_size` result (recorded as an event).
            device: the device used (``"cuda:1"``); default: the first model's device.
            required: the code's own declaration; the run's analysis profile wins.
            on_oom: batch-size degradation on OOM, e.g. ``mlobs.HalveBatch(min=1)``
                (needs ``batch_size``; applies inside :meth:`ComponentCall.attempts`).
            retry: transient-failure retries, e.g. ``mlobs.RetryPolicy(max_attempts=4)``
                (applies inside :meth:`ComponentCall.attempts`).
            cache: ``True`` to cache the result by the idempotency key (read
                :attr:`ComponentCall.hit` / :attr:`ComponentCall.result`, and give a
                computed result to :meth:`ComponentCall.set_result`); ``"bypass"`` to
                compute again and store a new version. See :mod:`mlobs.cache`.
            inputs: what the result is computed from (JSON values, arrays,
                :class:`~mlobs.FileInput`); hashed so a changed input is a miss.
            codec: how the result is stored (default: JSON).
            cache_ttl_days: a cached version older than this is a miss (``expired``).

        Raises:
            ConfigError: invalid arguments.
        """
        models = _check_component_args(name, producer_version, schema_version, models, device,
                                       batch_size, on_oom, retry, cache, codec,
                                       cache_ttl_days)
        return ComponentCall(self, name, self._is_required(name, required), producer_version,
                             schema_version, models, batch_size, device, on_oom, retry,
                             cache, inputs, codec, cache_ttl_days)

    def _is_required(self, name: str, declared: bool | None) -> bool:
        key = (name, declared)
        cached = self._required_cache.get(key)
        if cached is None:
            cached = self._required_cache[key] = self._profile.is_required(name, declared)
        return cached

    def _wall_at(self, perf_ns: int) -> datetime:
        """The UTC time of a ``perf_counter_ns`` reading on the run's own time base (both
        clocks read once when the run opened), so the run's started_at..finished_at
        brackets every component's, to the microsecond."""
        return self.record.started_at + timedelta(microseconds=(perf_ns - self._t0_ns) / 1e3)

    def _next_attempt(self, name: str) -> int:
        counter = self._attempts.get(name)
        if counter is None:
            with self._attempts_lock:
                counter = self._attempts.setdefault(name, count(1))
        return next(counter)

    def _note_cache_hit(self, producer_run_id: str | None) -> None:
        """A hit on a result made by ``producer_run_id``: if that run never finished
        (its manifest says ``running`` or ``error``), this run resumes it."""
        if producer_run_id is None or producer_run_id == self.run_id or \
                producer_run_id in self._producer_runs_seen:
            return
        self._producer_runs_seen.add(producer_run_id)
        if self.record.resumed_from_run_id is None:
            record = self.record
            status = manifest_status(manifest_path(
                self._recorder.settings.runs_dir, record.platform_id, record.video_id,
                producer_run_id))
            if status in ("running", "error"):
                record.resumed_from_run_id = producer_run_id

    def _component_finished(self, call: ComponentCall) -> None:
        if call.models:
            self._models_by_component[call.name] = call.models
        if call.status == "error":
            if call.required:
                self._failed_required.append(call)
            else:
                self.record.warnings.append(
                    optional_failure_warning(call.name, call.error_code,
                                             exception_message(call.error, 200)))
        self._recorder.emit(call)

    def _snapshot(self) -> RunRecord:
        """A copy of the run record for the sinks: what the run still changes (warnings,
        the environment through ``mlobs.set_seed``) is copied, so no sink thread reads a
        dict while the pipeline writes it."""
        record = self.record
        return replace(record, warnings=list(record.warnings),
                       environment=dict(record.environment))

    # -- lifecycle ---------------------------------------------------------------------
    def __enter__(self) -> Run:
        self.record.environment = run_environment(self._seed)
        # Both clocks are read here, so started_at + duration_ms brackets the components.
        self.record.started_at = datetime.now(timezone.utc)
        self._t0_ns = _perf_ns()
        self._token = current_run_var.set(self)
        active_runs[self.run_id] = self
        self._recorder.emit(self._snapshot())
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        record = self.record
        duration_ms = (_perf_ns() - self._t0_ns) / 1e6
        _reset(current_run_var, self._token)
        active_runs.pop(self.run_id, None)
        record.duration_ms = duration_ms
        record.finished_at = record.started_at + timedelta(milliseconds=duration_ms)
        record.resolved_models = {
            name: [f"{m.name}:{m.version}" for m in models]
            for name, models in sorted(self._models_by_component.items())}
        failed = self._failed_required[0] if self._failed_required else None
        if failed is not None:
            record.status, record.error_code = "error", failed.error_code
            record.error_message = required_failure_message(failed.name,
                                                            exception_message(failed.error))
        elif exc is not None and not isinstance(exc, GeneratorExit):
            record.status, record.error_code = "error", classify_exception(exc)
            record.error_message = exception_message(exc)
        else:
            record.status = "ok"
            if exc is not None:
                record.warnings.append(CLOSED_EARLY_WARNING)
        recorder = self._recorder
        recorder.emit(self._snapshot())
        late = [] if recorder.flush(self._flush_timeout_s) else [
            f"sinks did not finish within {self._flush_timeout_s} s at run end; records "
            "may arrive late"]
        late.extend(recorder.failures_for_run(self.run_id))
        if late:  # rare: the final record goes out again, saying what went wrong
            record.warnings.extend(late)
            recorder.emit(self._snapshot())
            recorder.flush(self._flush_timeout_s)
        for hook in self._exit_hooks:
            try:
                hook(self)
            except Exception:  # an integration's hook must not change the run's outcome
                log.exception("mlobs: a run exit hook failed for run %s", self.run_id)
        return False


def run(platform_id: str, video_id: str, *, profile: str | AnalysisProfile = "default",
        pipeline_version: str | None = None, config: Mapping[str, Any] | None = None,
        sampling_policy_version: str | None = None, seed: int | None = None,
        flush_timeout_s: float = 10.0) -> Run:
    """Open a run over one video: ``with mlobs.run("youtube", "abc123") as run: ...``.

    Args:
        platform_id, video_id: what the run processes.
        profile: the analysis profile, or just its name (then every component is required
            unless its code says ``required=False``).
        pipeline_version: the pipeline's code version.
        config: the run's configuration (JSON values); hashed into ``config_hash``.
        sampling_policy_version: version of the frame/segment sampling policy.
        seed: the random seed, recorded in the environment.
        flush_timeout_s: how long the end of the run waits for sinks (seconds).

    Raises:
        ConfigError: empty ids, or a config JSON cannot represent.
    """
    return Run(get_recorder(), platform_id=platform_id, video_id=video_id, profile=profile,
               pipeline_version=pipeline_version, config=config,
               sampling_policy_version=sampling_policy_version, seed=seed,
               flush_timeout_s=flush_timeout_s)


def _accepts_batch_size(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature: assume not
        return False
    return any(p.name == "batch_size" or p.kind is p.VAR_KEYWORD for p in params)


#: arguments never treated as inputs of a cached decorated call.
_NOT_INPUTS = frozenset({"self", "cls", "batch_size"})


def component(name: str | None = None, *, producer_version: str | None = None,
              schema_version: str | None = None, models: Sequence[ModelRef] = (),
              batch_size: int | BatchSizeChoice | None = None, device: str | None = None,
              required: bool | None = None, on_oom: OomPolicy | None = None,
              retry: RetryPolicy | None = None, cache: bool | str = False,
              codec: Codec | None = None, cache_ttl_days: float | None = None
              ) -> Callable[[F], F]:
    """Decorate a sync or async function as component ``name`` (default: its __name__).

    Inside a run (including calls from worker threads of the run's process) each call is
    recorded like ``run.component(...)``; outside any run the function is called directly.
    A failing optional component returns ``None`` (best-effort).

    With ``on_oom`` the function must take a ``batch_size`` argument: each attempt
    receives the current size (a ``batch_size=`` given by the caller is the size to start
    from). With ``on_oom`` or ``retry`` the whole call is the attempt that is repeated.
    Outside a run the policies do not apply: the function is called once, with the
    declared ``batch_size`` unless the caller gives one.

    With ``cache=True`` the call's arguments (all but ``self``, ``cls`` and
    ``batch_size``) are its inputs and its return value is the cached result: on a hit the
    function is not called and the cached value is returned.

    Raises:
        ConfigError: invalid arguments, or ``on_oom`` on a function without
            ``batch_size``.
    """
    def decorate(fn: F) -> F:
        component_name = name or fn.__name__
        frozen_models = _check_component_args(component_name, producer_version,
                                              schema_version, models, device, batch_size,
                                              on_oom, retry, cache, codec,
                                              cache_ttl_days)
        passes_batch_size = on_oom is not None
        if passes_batch_size and not _accepts_batch_size(fn):
            raise ConfigError(f"component {component_name!r}: on_oom needs the function to "
                              "take a batch_size argument")
        loops = on_oom is not None or retry is not None
        declared_size = batch_size.batch_size if isinstance(batch_size, BatchSizeChoice) \
            else batch_size
        signature = inspect.signature(fn) if cache else None

        def unobserved_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
            if passes_batch_size:
                kwargs.setdefault("batch_size", declared_size)
            return kwargs

        def call_inputs(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            try:
                bound = signature.bind_partial(*args, **kwargs)  # type: ignore[union-attr]
            except TypeError:  # the call itself will fail with the real message
                return {"args": list(args), "kwargs": kwargs}
            bound.apply_defaults()  # f(x) and f(x, lang="en") with lang="en" by default agree
            return {k: v for k, v in bound.arguments.items() if k not in _NOT_INPUTS}

        def open_call(run: Run, args: tuple[Any, ...], kwargs: dict[str, Any]
                      ) -> ComponentCall:
            size = batch_size
            if passes_batch_size and "batch_size" in kwargs:
                size = check_int("batch_size", kwargs.pop("batch_size"), 1)
            return ComponentCall(run, component_name, run._is_required(component_name, required),
                                 producer_version, schema_version, frozen_models, size,
                                 device, on_oom, retry, cache,
                                 call_inputs(args, kwargs) if cache else None, codec,
                                 cache_ttl_days)

        if inspect.iscoroutinefunction(fn):
            async def call_async(c: ComponentCall, args: tuple[Any, ...],
                                 kwargs: dict[str, Any]) -> Any:
                if not loops:
                    return await fn(*args, **kwargs)
                async for attempt in c.async_attempts():
                    with attempt:
                        if passes_batch_size:
                            kwargs["batch_size"] = c.batch_size
                        return await fn(*args, **kwargs)

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                run = resolve_run()
                if run is None:
                    return await fn(*args, **unobserved_kwargs(kwargs))
                with open_call(run, args, kwargs) as c:
                    if not cache:
                        return await call_async(c, args, kwargs)
                    if c.hit:
                        return c.result
                    result = await call_async(c, args, kwargs)
                    c.set_result(result)
                    return result
            return async_wrapper  # type: ignore[return-value]

        def call_sync(c: ComponentCall, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            if not loops:
                return fn(*args, **kwargs)
            for attempt in c.attempts():
                with attempt:
                    if passes_batch_size:
                        kwargs["batch_size"] = c.batch_size
                    return fn(*args, **kwargs)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            run = resolve_run()
            if run is None:
                return fn(*args, **unobserved_kwargs(kwargs))
            with open_call(run, args, kwargs) as c:
                if not cache:
                    return call_sync(c, args, kwargs)
                if c.hit:
                    return c.result
                result = call_sync(c, args, kwargs)
                c.set_result(result)
                return result
        return wrapper  # type: ignore[return-value]

    if callable(name):  # used bare: @mlobs.component
        fn, name = name, None
        return decorate(fn)  # type: ignore[return-value]
    return decorate


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
