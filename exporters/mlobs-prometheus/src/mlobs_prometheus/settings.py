"""The exporter's settings, read from environment variables when the sink is created.

* ``MLOBS_PROMETHEUS_PORT``: serve ``/metrics`` over HTTP on this port (0: any free one;
  unset: no server).
* ``MLOBS_PROMETHEUS_ADDR``: the address that server listens on (default ``127.0.0.1``).
* ``MLOBS_PROMETHEUS_PUSHGATEWAY``: Pushgateway URL; push on flush and shutdown (unset: no
  pushes).
* ``MLOBS_PROMETHEUS_JOB``: the ``job`` pushes are grouped under (default ``mlobs``).
* ``MLOBS_PROMETHEUS_GROUPING_KEY``: further grouping labels, ``name=value,...``.
* ``MLOBS_PROMETHEUS_PUSH_TIMEOUT_S``: seconds one push may take (default 5).
* ``MLOBS_PROMETHEUS_MAX_LABEL_VALUES``: distinct values accepted per label (default 200).
* ``MLOBS_PROMETHEUS_DURATION_BUCKETS_S``: the duration histogram's bucket bounds, seconds,
  comma-separated and increasing (default: 0.25 ms to an hour,
  :data:`mlobs_prometheus.metrics.DURATION_BUCKETS_S`).
* ``MLOBS_PROMETHEUS_MEMORY_BUCKETS_BYTES``: the memory histogram's bucket bounds, bytes
  (default: 1 MiB to 128 GiB).
* ``PROMETHEUS_MULTIPROC_DIR``: prometheus_client's own variable: multiprocess mode.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from mlobs.core.errors import ConfigError
from mlobs_prometheus.labels import DEFAULT_MAX_VALUES
from mlobs_prometheus.metrics import DURATION_BUCKETS_S, MEMORY_BUCKETS_BYTES

DEFAULT_ADDR = "127.0.0.1"
DEFAULT_JOB = "mlobs"
DEFAULT_PUSH_TIMEOUT_S = 5.0

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# Grouping values become URL path segments and series labels: short and plain only.
_GROUPING_VALUE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


@dataclass(frozen=True)
class PrometheusSettings:
    """Resolved exporter settings (see the module docstring for the variables).

    Args:
        port: HTTP exposition port, 0 for any free one, None for no server.
        addr: the address the HTTP server listens on.
        pushgateway: Pushgateway URL (``http://host:9091``), None for no pushes.
        job: the Pushgateway ``job``.
        grouping_key: further Pushgateway grouping labels (bounded values only).
        push_timeout_s: seconds one push may take.
        max_label_values: distinct values accepted per label (the label guard).
        multiprocess_dir: ``PROMETHEUS_MULTIPROC_DIR`` when set (multiprocess mode).
        duration_buckets_s: the duration histogram's bucket bounds (seconds, increasing).
        memory_buckets_bytes: the memory histogram's bucket bounds (bytes, increasing).
    """

    port: int | None = None
    addr: str = DEFAULT_ADDR
    pushgateway: str | None = None
    job: str = DEFAULT_JOB
    grouping_key: dict[str, str] = field(default_factory=dict)
    push_timeout_s: float = DEFAULT_PUSH_TIMEOUT_S
    max_label_values: int = DEFAULT_MAX_VALUES
    multiprocess_dir: Path | None = None
    duration_buckets_s: tuple[float, ...] = DURATION_BUCKETS_S
    memory_buckets_bytes: tuple[float, ...] = MEMORY_BUCKETS_BYTES


def settings_from_env(environ: Mapping[str, str] | None = None) -> PrometheusSettings:
    """The exporter's settings from ``MLOBS_PROMETHEUS_*`` and ``PROMETHEUS_MULTIPROC_DIR``.

    Raises:
        ConfigError: a variable holds an invalid value (the message names it), or the
            Pushgateway is combined with multiprocess mode (prometheus_client cannot push
            in that mode).
    """
    env = os.environ if environ is None else environ
    port_text = env.get("MLOBS_PROMETHEUS_PORT", "").strip()
    port = _int(port_text, "MLOBS_PROMETHEUS_PORT", 0, 65535) if port_text else None
    addr = env.get("MLOBS_PROMETHEUS_ADDR", "").strip() or DEFAULT_ADDR
    pushgateway = env.get("MLOBS_PROMETHEUS_PUSHGATEWAY", "").strip() or None
    if pushgateway is not None:
        _check_url(pushgateway)
    job = env.get("MLOBS_PROMETHEUS_JOB", "").strip() or DEFAULT_JOB
    if not _GROUPING_VALUE.fullmatch(job):
        raise ConfigError(f"MLOBS_PROMETHEUS_JOB must be 1-64 characters of "
                          f"[A-Za-z0-9_.:-], got {job!r}")
    timeout_text = env.get("MLOBS_PROMETHEUS_PUSH_TIMEOUT_S", "").strip()
    push_timeout_s = _positive_float(timeout_text, "MLOBS_PROMETHEUS_PUSH_TIMEOUT_S") \
        if timeout_text else DEFAULT_PUSH_TIMEOUT_S
    max_text = env.get("MLOBS_PROMETHEUS_MAX_LABEL_VALUES", "").strip()
    max_values = _int(max_text, "MLOBS_PROMETHEUS_MAX_LABEL_VALUES", 1, 1_000_000) \
        if max_text else DEFAULT_MAX_VALUES
    multiprocess_dir = _multiprocess_dir(env)
    if multiprocess_dir is not None and pushgateway is not None:
        raise ConfigError("MLOBS_PROMETHEUS_PUSHGATEWAY cannot be used with "
                          "PROMETHEUS_MULTIPROC_DIR: prometheus_client does not push in "
                          "multiprocess mode; serve MLOBS_PROMETHEUS_PORT instead")
    return PrometheusSettings(
        port=port, addr=addr, pushgateway=pushgateway, job=job,
        grouping_key=_grouping_key(env.get("MLOBS_PROMETHEUS_GROUPING_KEY", "")),
        push_timeout_s=push_timeout_s, max_label_values=max_values,
        multiprocess_dir=multiprocess_dir,
        duration_buckets_s=_buckets(env, "MLOBS_PROMETHEUS_DURATION_BUCKETS_S",
                                    DURATION_BUCKETS_S),
        memory_buckets_bytes=_buckets(env, "MLOBS_PROMETHEUS_MEMORY_BUCKETS_BYTES",
                                      MEMORY_BUCKETS_BYTES))


def _buckets(env: Mapping[str, str], name: str,
             default: tuple[float, ...]) -> tuple[float, ...]:
    """Bucket bounds from ``name``: positive finite numbers, strictly increasing."""
    text = env.get(name, "").strip()
    if not text:
        return default
    bounds = []
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            raise ConfigError(f"{name} must be numbers separated by commas, got "
                              f"{part.strip()!r} in {text!r}") from None
        if not 0 < value < math.inf:
            raise ConfigError(f"{name} must hold positive finite bounds (+Inf is always "
                              f"added), got {part.strip()!r}")
        bounds.append(value)
    if any(later <= earlier for earlier, later in zip(bounds, bounds[1:])):
        raise ConfigError(f"{name} must be strictly increasing, got {text!r}")
    return tuple(bounds)


def _int(text: str, name: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {text!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _positive_float(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {text!r}") from None
    if not value > 0:
        raise ConfigError(f"{name} must be > 0, got {value}")
    return value


def _check_url(url: str) -> None:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"MLOBS_PROMETHEUS_PUSHGATEWAY must be an http(s) URL such as "
                          f"http://pushgateway:9091, got {url!r}")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ConfigError(f"MLOBS_PROMETHEUS_PUSHGATEWAY has an invalid port: {url!r}") \
            from None


def _grouping_key(text: str) -> dict[str, str]:
    key: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = pair.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not _LABEL_NAME.fullmatch(name) or name == "job" \
                or not _GROUPING_VALUE.fullmatch(value):
            raise ConfigError(
                f"MLOBS_PROMETHEUS_GROUPING_KEY must be name=value pairs separated by commas "
                f"(names: label names other than job; values: 1-64 characters of "
                f"[A-Za-z0-9_.:-]), got {pair!r}")
        key[name] = value
    return key


def _multiprocess_dir(env: Mapping[str, str]) -> Path | None:
    text = (env.get("PROMETHEUS_MULTIPROC_DIR") or env.get("prometheus_multiproc_dir")
            or "").strip()
    if not text:
        return None
    path = Path(text)
    if not path.is_dir():
        raise ConfigError(f"PROMETHEUS_MULTIPROC_DIR={text!r} is not a directory; create it "
                          "(empty) before the processes start")
    return path
