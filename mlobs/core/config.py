"""Settings: where mlobs keeps its data, and which sinks are on.

Precedence: arguments to ``mlobs.configure()`` > ``MLOBS_*`` environment variables >
embedded defaults. The embedded default keeps everything under one root directory:

* root:       ``$MLOBS_ROOT``, else ``./mlobs-data`` (relative to the working directory)
* manifests:  ``<root>/runs/<platform_id>/<video_id>/<run_id>/manifest.json``
* warehouse:  ``$MLOBS_DB_URL``, else ``sqlite:///<root>/warehouse.db``

Other variables: ``MLOBS_SINKS`` (comma list of ``manifest``, ``warehouse`` and sinks of
installed exporter packages, see :mod:`mlobs.recording.plugins`; empty string
for none), ``MLOBS_SAMPLE_INTERVAL_MS`` (memory sampler period, default 5),
``MLOBS_HEARTBEAT_INTERVAL_S`` (seconds between heartbeats of an open run, default 30,
see :mod:`mlobs.core.liveness`), ``MLOBS_WAREHOUSE_WRITER`` (``process``, the default: the
warehouse is loaded from the spool by a writer process, :mod:`mlobs.sinks.writer_sink`;
``thread``: by a thread of the pipeline's process), ``MLOBS_MEMORY_PROBES=0`` (no memory peaks at all), ``MLOBS_GPU_PROBES=0`` (no GPU peaks:
neither torch's counters nor NVML), ``MLOBS_DISABLED=1`` (record nothing at all).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

from mlobs.core.errors import ConfigError
from mlobs.core.liveness import HEARTBEAT_INTERVAL_S

DEFAULT_ROOT = "mlobs-data"
KNOWN_SINKS = ("manifest", "warehouse")
WAREHOUSE_WRITERS = ("process", "thread")
#: the entry-point group of exporter packages' sinks (:mod:`mlobs.recording.plugins`).
SINK_GROUP = "mlobs.sinks"


@dataclass(frozen=True)
class Settings:
    """Resolved settings (immutable; ``configure()`` swaps in a new one)."""

    root: Path
    db_url: str
    sinks: tuple[str, ...] = KNOWN_SINKS
    sample_interval_ms: float = 5.0
    #: per-component memory peaks (RSS; GPU too unless ``gpu_probes`` is off).
    memory_probes: bool = True
    #: GPU peaks from torch's counters (when the user imported torch) and NVML.
    gpu_probes: bool = True
    disabled: bool = False
    #: seconds a sink worker waits between batches when nobody asks it to flush.
    flush_interval_s: float = 0.05
    #: seconds between two heartbeats of an open run (mlobs.core.liveness).
    heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S
    #: who writes the warehouse: a writer ``process`` fed by the spool, or a ``thread``.
    warehouse_writer: str = "process"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def spool_dir(self) -> Path:
        """Where the warehouse sink spools records while the database is away."""
        return self.root / "spool"

    @property
    def cache_dir(self) -> Path:
        """Where component results are cached (:mod:`mlobs.cache.store`)."""
        return self.root / "cache"

    @property
    def db_is_embedded_default(self) -> bool:
        """True when the warehouse is the embedded SQLite file under root."""
        return self.db_url == default_db_url(self.root)

    def with_overrides(self, **overrides: object) -> Settings:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


def default_db_url(root: Path) -> str:
    return f"sqlite:///{(root / 'warehouse.db').resolve()}"


def _parse_sinks(value: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    names = [s.strip() for s in value.split(",")] if isinstance(value, str) else list(value)
    names = [n for n in names if n]
    unknown = sorted(set(names) - set(KNOWN_SINKS))
    if unknown:
        installed = plugin_sink_names()  # only when a plugin is named
        unknown = [name for name in unknown if name not in installed]
        if unknown:
            raise ConfigError(f"unknown sink(s) {unknown}; known: "
                              f"{list(KNOWN_SINKS) + installed}")
    return tuple(dict.fromkeys(names))


def plugin_sink_names() -> list[str]:
    """Names of the sinks installed distributions offer (sorted)."""
    from importlib.metadata import entry_points  # not at import: it costs milliseconds

    return sorted({ep.name for ep in entry_points(group=SINK_GROUP)})


def _positive_seconds(env: dict[str, str] | os._Environ[str], name: str,
                      default: float) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise ConfigError(f"{name} must be a number of seconds > 0, got {text!r}")
    return value


def _flag(env: dict[str, str] | os._Environ[str], name: str, default: bool) -> bool:
    value = env.get(name, "").strip().lower()
    if not value:
        return default
    return value not in ("0", "false", "no", "off")


def settings_from_env(environ: dict[str, str] | None = None) -> Settings:
    """Settings from ``MLOBS_*`` variables over the embedded defaults.

    Raises:
        ConfigError: a variable holds an invalid value (named in the message).
    """
    env = os.environ if environ is None else environ
    root = Path(env.get("MLOBS_ROOT") or DEFAULT_ROOT).expanduser().resolve()
    try:
        interval = float(env.get("MLOBS_SAMPLE_INTERVAL_MS", "5"))
    except ValueError as exc:
        raise ConfigError(f"MLOBS_SAMPLE_INTERVAL_MS must be a number: {exc}") from exc
    if not interval > 0:
        raise ConfigError(f"MLOBS_SAMPLE_INTERVAL_MS must be > 0, got {interval}")
    heartbeat = _positive_seconds(env, "MLOBS_HEARTBEAT_INTERVAL_S", HEARTBEAT_INTERVAL_S)
    writer = env.get("MLOBS_WAREHOUSE_WRITER", "").strip().lower() or "process"
    if writer not in WAREHOUSE_WRITERS:
        raise ConfigError(f"MLOBS_WAREHOUSE_WRITER must be one of {list(WAREHOUSE_WRITERS)}, "
                          f"got {writer!r}")
    return Settings(
        root=root,
        db_url=env.get("MLOBS_DB_URL") or default_db_url(root),
        sinks=_parse_sinks(env.get("MLOBS_SINKS", ",".join(KNOWN_SINKS))),
        sample_interval_ms=interval,
        memory_probes=_flag(env, "MLOBS_MEMORY_PROBES", True),
        gpu_probes=_flag(env, "MLOBS_GPU_PROBES", True),
        disabled=_flag(env, "MLOBS_DISABLED", False),
        heartbeat_interval_s=heartbeat,
        warehouse_writer=writer,
    )


def resolve_settings(*, root: str | os.PathLike[str] | None = None, db_url: str | None = None,
                     sinks: str | list[str] | tuple[str, ...] | None = None,
                     sample_interval_ms: float | None = None,
                     memory_probes: bool | None = None, gpu_probes: bool | None = None,
                     disabled: bool | None = None) -> Settings:
    """Apply explicit arguments over :func:`settings_from_env`.

    A new ``root`` without a ``db_url`` (argument or ``MLOBS_DB_URL``) moves the embedded
    SQLite warehouse under the new root too.
    """
    base = settings_from_env()
    new_root = Path(root).expanduser().resolve() if root is not None else base.root
    if db_url is None and root is not None and not os.environ.get("MLOBS_DB_URL"):
        db_url = default_db_url(new_root)
    if sample_interval_ms is not None and sample_interval_ms <= 0:
        raise ConfigError("sample_interval_ms must be > 0")
    return base.with_overrides(
        root=new_root, db_url=db_url,
        sinks=_parse_sinks(sinks) if sinks is not None else None,
        sample_interval_ms=sample_interval_ms, memory_probes=memory_probes,
        gpu_probes=gpu_probes, disabled=disabled,
    )


_in_force: Settings | None = None


def set_settings_in_force(settings: Settings | None) -> None:
    """Called by the recorder when it is installed (``None``: uninstalled)."""
    global _in_force
    _in_force = settings


def configured_settings() -> Settings:
    """The settings of this process's recorder, else :func:`settings_from_env` (without
    building a recorder and its sinks just to read a path)."""
    return _in_force if _in_force is not None else settings_from_env()
