"""Sinks from other distributions, found through the ``mlobs.sinks`` entry-point group.

An exporter package (e.g. ``exporters/mlobs-otel``) declares in its ``pyproject.toml``::

    [project.entry-points."mlobs.sinks"]
    otel = "mlobs_otel.sink:create_sink"

and is enabled by naming it among the sinks: ``MLOBS_SINKS=manifest,warehouse,otel`` or
``mlobs.configure(sinks=[..., "otel"])``. The entry point is a callable taking the resolved
:class:`~mlobs.core.config.Settings` and returning a sink (:mod:`mlobs.sinks.base`). Nothing
is imported until a plugin is named.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from mlobs.core.config import SINK_GROUP, Settings
from mlobs.core.errors import ConfigError

if TYPE_CHECKING:
    from mlobs.sinks.base import Sink


def create_plugin_sink(name: str, settings: Settings) -> Sink:
    """Build the installed sink ``name``.

    Raises:
        ConfigError: no installed distribution offers ``name``, or its factory failed
            (the message names the distribution and the error).
    """
    found = [ep for ep in entry_points(group=SINK_GROUP) if ep.name == name]
    if not found:
        raise ConfigError(f"no installed package offers the sink {name!r} "
                          f"(entry-point group {SINK_GROUP!r})")
    entry = found[0]
    try:
        return entry.load()(settings)
    except Exception as exc:
        dist = entry.dist.name if entry.dist is not None else entry.value
        raise ConfigError(f"sink {name!r} from {dist} could not be created: {exc}") from exc
