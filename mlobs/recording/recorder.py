"""The Recorder: the in-process hub between the API and the sinks.

It owns the configured sinks (behind :class:`BatchWorker`s: the local sinks share one, the
others have one each) and the memory sampler. ``emit`` is the only thing the pipeline's
thread calls per record: one deque append per worker. ``flush`` waits for the workers; at interpreter exit everything is flushed.
The set of workers is replaced as a whole (copy-on-write) by ``configure``.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mlobs.core.config import KNOWN_SINKS, Settings, set_settings_in_force, settings_from_env
from mlobs.core.records import SinkItem
from mlobs.probes.memory_sampler import MemorySampler, NoMemorySampler
from mlobs.recording.heartbeat import Heartbeat
from mlobs.sinks.base import BatchWorker, Sink, SinkStats

if TYPE_CHECKING:
    from mlobs.cache.store import ArtifactStore

log = logging.getLogger("mlobs")


class Recorder:
    """Fans records out to sinks.

    Args:
        settings: resolved settings (root, intervals).
        sinks: the sink objects to drive (the local ones on one worker thread, each other
            sink on its own).
    """

    def __init__(self, settings: Settings, sinks: Sequence[Sink]) -> None:
        self.settings = settings
        self.workers: tuple[BatchWorker, ...] = tuple(
            BatchWorker(group, flush_interval_s=settings.flush_interval_s)
            for group in _worker_groups(sinks))
        self.sampler: MemorySampler | NoMemorySampler = (
            MemorySampler(settings.sample_interval_ms, gpu=settings.gpu_probes)
            if settings.memory_probes else NoMemorySampler())
        #: read per component start: torch's CUDA peak counters are probed only when on.
        self.gpu_probes = settings.memory_probes and settings.gpu_probes
        #: open runs re-send their run record at this pace (mlobs.core.liveness).
        self.heartbeat = Heartbeat(settings.heartbeat_interval_s)
        self._artifact_store: ArtifactStore | None = None

    @property
    def artifact_store(self) -> ArtifactStore:
        """The component cache under ``settings.cache_dir`` (made on first use)."""
        if self._artifact_store is None:
            from mlobs.cache.store import ArtifactStore
            self._artifact_store = ArtifactStore(self.settings.cache_dir)
        return self._artifact_store

    def after_fork_in_child(self) -> None:
        """Give a forked child its own (empty) sink queues, threads and sampler."""
        for worker in self.workers:
            worker.after_fork_in_child()
        self.sampler.after_fork_in_child()
        self.heartbeat.after_fork_in_child()

    def emit(self, item: SinkItem) -> None:
        """Queue a RunRecord snapshot or a finished component call for every sink."""
        for worker in self.workers:
            worker.enqueue(item)

    def flush(self, timeout_s: float | None = 10.0) -> bool:
        """Wait until every sink exported what was emitted before the call.

        Returns:
            False if some sink did not finish within ``timeout_s`` (each gets that long).
        """
        return all([worker.force_flush(timeout_s) for worker in self.workers])

    def failures_for_run(self, run_id: str) -> list[str]:
        """One warning per sink that failed to export records of ``run_id``."""
        return [f"sink {name!r} failed to export {count} record(s) of this run: {error}"
                for worker in self.workers
                for name, count, error in worker.failures_for_run(run_id)]

    def stats(self) -> list[SinkStats]:
        return [stats for worker in self.workers for stats in worker.stats()]

    def sink(self, name: str) -> Sink | None:
        """The configured sink called ``name`` (``"manifest"``, ``"warehouse"``, ...)."""
        return next((sink for worker in self.workers for sink in worker.sinks
                     if sink.name == name), None)

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Flush and stop every worker, the sampler and the heartbeat."""
        self.heartbeat.stop()
        for worker in self.workers:
            worker.shutdown(timeout_s)
        self.sampler.stop()


def _worker_groups(sinks: Sequence[Sink]) -> list[list[Sink]]:
    """The local sinks together on one worker (one thread, not one per sink, takes the
    GIL from the pipeline), every other sink on its own (a slow network does not hold
    back the files)."""
    local = [sink for sink in sinks if getattr(sink, "local", False)]
    return ([local] if local else []) + [
        [sink] for sink in sinks if not getattr(sink, "local", False)]


def build_sinks(settings: Settings) -> list[Sink]:
    """The sinks named in ``settings.sinks``."""
    sinks: list[Sink] = []
    with_writer = "warehouse" in settings.sinks and settings.warehouse_writer == "process"
    if with_writer:
        # The writer process keeps the manifests too: the pipeline's process only spools.
        from mlobs.sinks.manifest_relay import ManifestRelay
        from mlobs.sinks.writer_sink import WriterSink
        writer = WriterSink(settings.db_url, settings.spool_dir,
                            manage_schema=settings.db_is_embedded_default,
                            runs_dir=settings.runs_dir if "manifest" in settings.sinks
                            else None)
        if "manifest" in settings.sinks:
            sinks.append(ManifestRelay(writer))
        sinks.append(writer)
    elif "manifest" in settings.sinks:
        from mlobs.sinks.manifest_sink import ManifestSink
        sinks.append(ManifestSink(settings.runs_dir))
    if "warehouse" in settings.sinks and not with_writer:
        # The warehouse stack (SQLAlchemy, Alembic) is imported only when it is used.
        from mlobs.sinks.warehouse_sink import WarehouseSink
        sinks.append(WarehouseSink(settings.db_url,
                                   manage_schema=settings.db_is_embedded_default,
                                   spool_dir=settings.spool_dir))
    for name in settings.sinks:
        if name not in KNOWN_SINKS:  # an exporter package's sink (mlobs.recording.plugins)
            from mlobs.recording.plugins import create_plugin_sink
            sinks.append(create_plugin_sink(name, settings))
    return sinks


_lock = threading.Lock()
_recorder: Recorder | None = None


def get_recorder() -> Recorder:
    """The process's recorder, created from the environment on first use."""
    recorder = _recorder
    if recorder is None:
        with _lock:
            if _recorder is None:
                settings = settings_from_env()
                _install(Recorder(settings, [] if settings.disabled else build_sinks(settings)))
            recorder = _recorder
    assert recorder is not None
    return recorder


def set_recorder(recorder: Recorder | None, *, shutdown_previous: bool = True
                 ) -> Recorder | None:
    """Install ``recorder`` (``None``: the next use builds one from the environment).

    The previous recorder is flushed and shut down unless ``shutdown_previous`` is False.

    Returns:
        The previous recorder, or ``None`` if none was built yet.
    """
    with _lock:
        previous = _recorder
        _install(recorder)
    if previous is not None and shutdown_previous:
        previous.shutdown()
    return previous


def _install(recorder: Recorder | None) -> None:
    global _recorder
    _recorder = recorder
    set_settings_in_force(None if recorder is None else recorder.settings)


def _flush_at_exit() -> None:
    recorder = _recorder
    if recorder is not None:
        try:
            recorder.shutdown(timeout_s=10.0)
        except Exception:  # interpreter exit must not fail because of mlobs
            log.exception("mlobs: flushing sinks at exit failed")


def _after_fork_in_child() -> None:
    # One process-wide hook for whichever recorder is installed (per-object hooks would
    # keep every recorder ever configured alive).
    recorder = _recorder
    if recorder is not None:
        recorder.after_fork_in_child()


atexit.register(_flush_at_exit)
os.register_at_fork(after_in_child=_after_fork_in_child)
