"""The run: ``with mlobs.run(platform_id, video_id, ...) as run`` (ARCHITECTURE §3).

A run opens with its run record (status ``running``) handed to the sinks, hands out
component handles (:meth:`Run.component`), and at its end applies the run status rule
(:mod:`mlobs.hooks.component`), hands the final record to the sinks and waits for them
for up to ``flush_timeout_s``. ``async with mlobs.run(...)`` does the same without blocking
the event loop: what waits (the first run's environment, the sinks at the end, the exit
hooks) runs on the loop's default executor.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextvars import copy_context
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from itertools import count
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from mlobs.cache.codecs import Codec
from mlobs.cache.store import ArtifactStore
from mlobs.core.canonical import json_copy
from mlobs.core.checks import check_int, check_timeout, check_word
from mlobs.core.classify import classify_exception, exception_message
from mlobs.core.errors import ConfigError
from mlobs.core.ids import new_uuid4
from mlobs.core.labels import check_labels, run_labels
from mlobs.core.limits import NAME_MAX_CHARS, SEED_BOUND
from mlobs.core.liveness import CRASHED
from mlobs.core.manifest import manifest_status
from mlobs.core.paths import manifest_path
from mlobs.core.propagation import RunContext, carrier_for
from mlobs.core.records import ModelRef, RunRecord
from mlobs.core.run_status import optional_failure_warning, required_failure_message
from mlobs.core.signature import config_hash
from mlobs.core.text import shown
from mlobs.hooks.batch_size import BatchSizeChoice
from mlobs.hooks.component import CLOSED_EARLY_WARNING, ComponentCall
from mlobs.hooks.context import (
    active_runs,
    current_component_var,
    current_run_var,
    fork_generation,
    reset_var,
    unattributed_calls,
    unattributed_warnings,
)
from mlobs.hooks.environment import run_environment
from mlobs.hooks.oom import OomPolicy
from mlobs.hooks.profile import AnalysisProfile
from mlobs.hooks.retry import RetryPolicy
from mlobs.hooks.spec import ComponentSpec
from mlobs.hooks.threads import in_context, install_executor_propagation
from mlobs.recording.recorder import Recorder, get_recorder

log = logging.getLogger("mlobs")
_perf_ns = time.perf_counter_ns
F = TypeVar("F", bound=Callable[..., Any])


class Run:
    """An open run over one video; create it with :func:`mlobs.run` and enter it with
    ``with`` or, in asyncio code, ``async with``.

    The constructor takes ``labels`` as they are to be recorded (checked by
    :func:`~mlobs.core.labels.check_labels`); :func:`mlobs.run` merges the labels of
    ``MLOBS_RUN_LABELS`` in first.
    """

    def __init__(self, recorder: Recorder, *, platform_id: str, video_id: str,
                 profile: str | AnalysisProfile, pipeline_version: str | None,
                 config: Mapping[str, Any] | None, sampling_policy_version: str | None,
                 seed: int | None, flush_timeout_s: float | None,
                 labels: Mapping[str, str] | None = None) -> None:
        check_word("platform_id", platform_id, NAME_MAX_CHARS)
        check_word("video_id", video_id, NAME_MAX_CHARS)
        for label, value in (("pipeline_version", pipeline_version),
                             ("sampling_policy_version", sampling_policy_version)):
            if value is not None:
                check_word(label, value, NAME_MAX_CHARS)
        if config is not None and not isinstance(config, Mapping):
            raise ConfigError(f"config must be a mapping of JSON values (a dict), got "
                              f"{shown(config, 60)}")
        if seed is not None:
            seed = check_int("seed", seed, 0, below=SEED_BOUND, bound_reason="NumPy's bound")
        flush_timeout_s = check_timeout("flush_timeout_s", flush_timeout_s)
        checked_labels = check_labels(labels)
        self._profile = profile if isinstance(profile, AnalysisProfile) else AnalysisProfile(profile)
        self._recorder = recorder
        self._flush_timeout_s = flush_timeout_s
        self.record = RunRecord(
            run_id=new_uuid4(), platform_id=platform_id, video_id=video_id,
            status="running", started_at=datetime.now(timezone.utc),
            profile=self._profile.name, pipeline_version=pipeline_version,
            config_hash=config_hash(config), config=json_copy(dict(config or {})),
            sampling_policy_version=sampling_policy_version, labels=checked_labels,
        )
        self._labels = MappingProxyType(checked_labels)
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
        self._unattributed_at_start: dict[str, int] = {}
        self._beat_lock = threading.Lock()
        self._ending = False

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

    @property
    def labels(self) -> Mapping[str, str]:
        """The run's labels, key → value (read-only): :func:`mlobs.run`'s ``labels`` over
        ``MLOBS_RUN_LABELS``'s; in a joined run (a Celery worker), the orchestrator's."""
        return self._labels

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
        spec = ComponentSpec.create(
            name, producer_version=producer_version, schema_version=schema_version,
            models=models, batch_size=batch_size, device=device, required=required,
            on_oom=on_oom, retry=retry, cache=cache, codec=codec,
            cache_ttl_days=cache_ttl_days)
        return ComponentCall(self, spec, self._is_required(name, required), batch_size, inputs)

    def open_component(self, spec: ComponentSpec, batch_size: int | BatchSizeChoice | None,
                       inputs: Any = None) -> ComponentCall:
        """A handle for one invocation of ``spec`` (``batch_size``: the size it starts
        with), for the decorators (:meth:`component` builds its handle itself: one call
        less on its path)."""
        return ComponentCall(self, spec, self._is_required(spec.name, spec.required),
                             batch_size, inputs)

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

    @property
    def artifact_store(self) -> ArtifactStore:
        """The component cache's store (``<root>/cache``)."""
        return self._recorder.artifact_store

    def run_context(self) -> RunContext:
        """What another process needs to record into this run (a task header)."""
        record, profile = self.record, self._profile
        return RunContext(
            run_id=record.run_id, platform_id=record.platform_id, video_id=record.video_id,
            profile=profile.name, optional=tuple(sorted(profile.optional)),
            required=tuple(sorted(profile.required)),
            pipeline_version=record.pipeline_version, config_hash=record.config_hash,
            sampling_policy_version=record.sampling_policy_version,
            carrier=carrier_for(record.run_id), labels=dict(record.labels))

    def wrap(self, fn: F) -> F:
        """``fn`` bound to this run: components it calls record here from any thread,
        e.g. ``threading.Thread(target=run.wrap(work)).start()`` while several runs are
        open. (Work given to a ``ThreadPoolExecutor`` inside the run needs no wrapping.)"""
        context = copy_context()
        context.run(current_run_var.set, self)
        context.run(current_component_var.set, None)
        return in_context(context, fn)

    def note_cache_hit(self, producer_run_id: str | None) -> None:
        """A hit on a result made by ``producer_run_id``: if that run never finished
        (its manifest says ``running``, ``error`` or ``crashed``), this run resumes it."""
        if producer_run_id is None or producer_run_id == self.run_id or \
                producer_run_id in self._producer_runs_seen:
            return
        self._producer_runs_seen.add(producer_run_id)
        if self.record.resumed_from_run_id is None:
            record = self.record
            status = manifest_status(manifest_path(
                self._recorder.settings.runs_dir, record.platform_id, record.video_id,
                producer_run_id))
            if status in ("running", "error", CRASHED):
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
        self._open()
        return self

    async def __aenter__(self) -> Run:
        """``async with mlobs.run(...) as run``: the environment is read on a thread of the
        loop's default executor (the first run's takes tens of milliseconds: package
        metadata, NVML), the rest is as in ``with``.

        Raises:
            RuntimeError: not under a running asyncio event loop.
        """
        import asyncio  # only async callers get here, and they have it loaded
        self.record.environment = await asyncio.to_thread(run_environment, self._seed)
        self._open()
        return self

    def _open(self) -> None:
        # Both clocks are read here, so started_at + duration_ms brackets the components.
        self.record.started_at = datetime.now(timezone.utc)
        self._t0_ns = _perf_ns()
        install_executor_propagation()
        self._unattributed_at_start = unattributed_calls()
        self.record.heartbeat_at = self.record.started_at
        self._token = current_run_var.set(self)
        active_runs[self.run_id] = self
        self._recorder.emit(self._snapshot())
        self._recorder.heartbeat.add(self)

    def beat(self) -> None:
        """Re-send the run record with a fresh ``heartbeat_at`` (the recorder's heartbeat
        thread calls it; a no-op once the run is ending, so the final record stays last)."""
        with self._beat_lock:
            if self._ending:
                return
            self.record.heartbeat_at = datetime.now(timezone.utc)
            self._recorder.emit(self._snapshot())

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        self._close(exc)
        self._finish()
        return False

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        """The end of ``async with``: the run status rule and the final record as in
        ``with``; waiting for the sinks (up to ``flush_timeout_s``, twice when records are
        late), the late-warning record and the :meth:`at_exit` hooks run on a thread of
        the loop's default executor, so the loop runs other tasks meanwhile. A task
        cancelled while it waits gets ``CancelledError``; that thread still finishes."""
        import asyncio
        self._close(exc)
        await asyncio.to_thread(self._finish)
        return False

    def _close(self, exc: BaseException | None) -> None:
        """The run status rule and the final record, handed to the sinks (no waiting)."""
        record = self.record
        duration_ms = (_perf_ns() - self._t0_ns) / 1e6
        self._recorder.heartbeat.remove(self)
        if self.fork_generation == fork_generation.value:
            with self._beat_lock:
                self._ending = True
        else:  # a forked child ending its parent's run: no heartbeat here, and the lock
            self._ending = True  # may have been held by the parent's at the fork
        reset_var(current_run_var, self._token)
        active_runs.pop(self.run_id, None)
        record.warnings.extend(unattributed_warnings(self._unattributed_at_start))
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
        self._recorder.emit(self._snapshot())

    def _finish(self) -> None:
        """Wait for the sinks, re-emit the final record with what went wrong, call the
        exit hooks (blocking: a manifest write with fsync, a warehouse transaction)."""
        record, recorder = self.record, self._recorder
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


def run(platform_id: str, video_id: str, *, profile: str | AnalysisProfile = "default",
        pipeline_version: str | None = None, config: Mapping[str, Any] | None = None,
        sampling_policy_version: str | None = None, seed: int | None = None,
        flush_timeout_s: float | None = 10.0,
        labels: Mapping[str, str] | None = None) -> Run:
    """Open a run over one video: ``with mlobs.run("youtube", "abc123") as run: ...``, or
    ``async with`` in asyncio code (the run's end then waits for the sinks off the loop).

    Args:
        platform_id, video_id: what the run processes.
        profile: the analysis profile, or just its name (then every component is required
            unless its code says ``required=False``).
        pipeline_version: the pipeline's code version.
        config: the run's configuration (JSON values); hashed into ``config_hash``.
        sampling_policy_version: version of the frame/segment sampling policy.
        seed: the random seed, recorded in the environment: an integer in [0, 2**32)
            (NumPy's bound, as :func:`mlobs.set_seed`).
        flush_timeout_s: how long the end of the run waits for sinks (seconds, finite,
            >= 0; None: as long as they take).
        labels: ``{key: value}`` strings that select run sets (a release gate's
            candidates, the views' filters): at most 32; keys match
            ``[A-Za-z][A-Za-z0-9_.-]{0,63}``; values are ``str`` of at most 256
            characters. The labels of the environment variable ``MLOBS_RUN_LABELS``
            (``key=value,key=value``) are merged in; these win on the same key. See
            :mod:`mlobs.core.labels`.

    Raises:
        ConfigError: naming the argument: empty or unsafe ids, a config that is not a
            mapping or holds values JSON cannot represent, a seed or timeout out of range,
            labels that break a rule above, or a malformed ``MLOBS_RUN_LABELS``.
    """
    return Run(get_recorder(), platform_id=platform_id, video_id=video_id, profile=profile,
               pipeline_version=pipeline_version, config=config,
               sampling_policy_version=sampling_policy_version, seed=seed,
               flush_timeout_s=flush_timeout_s, labels=run_labels(labels))
