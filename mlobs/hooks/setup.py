"""Process-wide set-up calls: ``configure``, ``flush``, ``sink_stats``."""

from __future__ import annotations

import os
from collections.abc import Sequence

from mlobs.core.checks import check_timeout
from mlobs.core.config import Settings, resolve_settings
from mlobs.core.errors import ConfigError
from mlobs.hooks.context import active_runs
from mlobs.recording.recorder import Recorder, build_sinks, get_recorder, set_recorder
from mlobs.sinks.base import Sink, SinkStats


def configure(*, root: str | os.PathLike[str] | None = None, db_url: str | None = None,
              sinks: Sequence[str] | str | None = None,
              extra_sinks: Sequence[Sink] = (), sample_interval_ms: float | None = None,
              memory_probes: bool | None = None, gpu_probes: bool | None = None,
              disabled: bool | None = None) -> Settings:
    """Configure mlobs for this process (optional: the embedded defaults need no call).

    Args:
        root: directory holding ``runs/`` (manifests) and the default SQLite warehouse.
        db_url: SQLAlchemy URL of the warehouse (``sqlite:///...``,
            ``postgresql+psycopg://...``).
        sinks: sinks to enable by name: the built-in ``"manifest"`` and ``"warehouse"``,
            and those of installed exporter packages (``"otel"``, ``"prometheus"``; see
            :mod:`mlobs.recording.plugins`).
        extra_sinks: further sink objects (see :mod:`mlobs.sinks.base`), e.g. a
            ``mlobs.testing`` capture.
        sample_interval_ms: memory sampler period in milliseconds.
        memory_probes: record per-component memory peaks (default on).
        gpu_probes: record GPU peaks from torch's counters and NVML (default on; tens of
            nanoseconds per component when torch is not imported or lacks CUDA, and no
            NVML sampling on a machine without GPUs).
        disabled: record nothing (components still apply their status rules, and the
            component cache still serves and stores results).

    Returns:
        The resolved settings. Arguments override ``MLOBS_*`` variables, which override
        the defaults (see :mod:`mlobs.core.config`).

    Raises:
        ConfigError: invalid values, or a run is open in this process.
    """
    if active_runs:
        raise ConfigError("configure() cannot be called while a run is open")
    settings = resolve_settings(root=root, db_url=db_url, sinks=sinks,
                                sample_interval_ms=sample_interval_ms,
                                memory_probes=memory_probes, gpu_probes=gpu_probes,
                                disabled=disabled)
    chosen = [] if settings.disabled else [*build_sinks(settings), *extra_sinks]
    set_recorder(Recorder(settings, chosen))
    return settings


def flush(timeout_s: float | None = 10.0) -> bool:
    """Wait until every sink has exported what was recorded so far.

    Args:
        timeout_s: seconds to wait at most (None: as long as it takes).

    Returns:
        False if a sink did not finish within ``timeout_s`` seconds.

    Raises:
        ConfigError: ``timeout_s`` is not a number of seconds >= 0 a thread can wait.
    """
    return get_recorder().flush(check_timeout("timeout_s", timeout_s))


def sink_stats() -> list[SinkStats]:
    """Per-sink counters (enqueued, exported, failed, dropped, last error)."""
    return get_recorder().stats()


def settings() -> Settings:
    """The settings in force."""
    return get_recorder().settings
