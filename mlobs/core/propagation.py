"""A run's context as it travels to other processes (task headers), and the runs joined here.

An orchestrating process opens a run; work it hands to other processes (Celery tasks,
see :mod:`mlobs.integrations.celery`) records into that same run. What travels is a
:class:`RunContext`: the run's identity and what its components' records and cache keys
need (profile, ``config_hash``, ``sampling_policy_version``), the run's labels, plus a
*carrier*: string fields that sinks add for their own propagation, e.g. the ``otel``
exporter's W3C ``traceparent`` of the run's span, so spans made in workers join the run's
trace.

* :func:`register_carrier_provider` — a sink offers ``fn(run_id) -> {field: value}``;
  :func:`carrier_for` asks every provider when a run's context is sent
  (``Run.run_context()`` in :mod:`mlobs.hooks.run`).
* :func:`remember_joined` / :func:`joined_context` — the receiving side keeps the contexts
  of runs it joined (bounded), so its sinks can tell a joined run (records only; its run
  record and manifest belong to the orchestrator) and find the carrier.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from mlobs.core.checks import check_word
from mlobs.core.errors import ConfigError
from mlobs.core.labels import check_labels
from mlobs.core.limits import NAME_MAX_CHARS

log = logging.getLogger("mlobs.propagation")

#: version of the header document; a receiver refuses others.
CONTEXT_VERSION = 1
#: joined runs remembered per process (oldest forgotten first).
JOINED_RUNS_KEPT = 4096
_CARRIER_MAX_FIELDS = 16
_CARRIER_MAX_CHARS = 512


@dataclass(frozen=True)
class RunContext:
    """What another process needs to record into a run.

    Attributes:
        run_id, platform_id, video_id: the run's identity.
        profile, optional, required: the analysis profile (name and its component sets).
        pipeline_version, config_hash, sampling_policy_version: as on the run record
            (the last two enter the components' idempotency keys).
        carrier: sinks' propagation fields (at most 16 string pairs of 512 characters).
        labels: the run's labels (:mod:`mlobs.core.labels`); ``{}`` in the headers of
            senders older than labels.
    """

    run_id: str
    platform_id: str
    video_id: str
    profile: str = "default"
    optional: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    pipeline_version: str | None = None
    config_hash: str | None = None
    sampling_policy_version: str | None = None
    carrier: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)

    def to_header(self) -> str:
        """The context as one JSON string (a message header value)."""
        body = asdict(self)
        body["optional"], body["required"] = list(self.optional), list(self.required)
        body["carrier"] = dict(self.carrier)
        body["labels"] = dict(self.labels)
        return json.dumps({"v": CONTEXT_VERSION, **body}, separators=(",", ":"),
                          sort_keys=True)

    @classmethod
    def from_header(cls, value: Any) -> RunContext:
        """Parse :meth:`to_header`'s output (a str, or the already decoded dict).

        Raises:
            ConfigError: not such a document, another version, or invalid fields (the
                message says which).
        """
        try:
            body = json.loads(value) if isinstance(value, (str, bytes)) else value
        except ValueError as exc:
            raise ConfigError(f"run context header is not JSON: {exc}") from None
        if not isinstance(body, dict) or body.get("v") != CONTEXT_VERSION:
            raise ConfigError(f"run context header of an unknown version: {str(value)[:80]!r}")
        try:
            context = cls(
                run_id=body["run_id"], platform_id=body["platform_id"],
                video_id=body["video_id"], profile=body.get("profile") or "default",
                optional=tuple(body.get("optional") or ()),
                required=tuple(body.get("required") or ()),
                pipeline_version=body.get("pipeline_version"),
                config_hash=body.get("config_hash"),
                sampling_policy_version=body.get("sampling_policy_version"),
                carrier=dict(body.get("carrier") or {}),
                labels=body.get("labels") or {})
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"run context header lacks a field: {exc}") from None
        context.check()
        return context

    def check(self) -> None:
        """Raises ConfigError when a field is not what a run accepts."""
        for label in ("run_id", "platform_id", "video_id", "profile"):
            check_word(label, getattr(self, label), NAME_MAX_CHARS)
        for label in ("pipeline_version", "config_hash", "sampling_policy_version"):
            value = getattr(self, label)
            if value is not None:
                check_word(label, value, NAME_MAX_CHARS)
        for name in (*self.optional, *self.required):
            check_word("profile component", name, NAME_MAX_CHARS)
        carrier = self.carrier
        if len(carrier) > _CARRIER_MAX_FIELDS or not all(
                isinstance(k, str) and isinstance(v, str) and len(k) <= _CARRIER_MAX_CHARS
                and len(v) <= _CARRIER_MAX_CHARS for k, v in carrier.items()):
            raise ConfigError("run context carrier must hold at most "
                              f"{_CARRIER_MAX_FIELDS} string pairs of {_CARRIER_MAX_CHARS} "
                              "characters")
        check_labels(self.labels, "run context labels")


CarrierProvider = Callable[[str], Mapping[str, str]]
_providers: list[CarrierProvider] = []
_joined: OrderedDict[str, RunContext] = OrderedDict()
_lock = threading.Lock()


def register_carrier_provider(provider: CarrierProvider) -> None:
    """Add ``provider(run_id) -> {field: value}`` to every context sent from now on.

    A provider that raises is logged and skipped; the context is sent without its fields.
    """
    with _lock:
        if provider not in _providers:
            _providers.append(provider)


def unregister_carrier_provider(provider: CarrierProvider) -> None:
    """Undo :func:`register_carrier_provider` (no error if it was not registered)."""
    with _lock:
        if provider in _providers:
            _providers.remove(provider)


def carrier_for(run_id: str) -> dict[str, str]:
    """The carrier to send with ``run_id``'s context: a joined run's inherited fields,
    then every provider's (a provider that raises is logged and skipped)."""
    inherited = joined_context(run_id)
    carrier: dict[str, str] = dict(inherited.carrier) if inherited is not None else {}
    for provider in tuple(_providers):
        try:
            carrier.update(provider(run_id) or {})
        except Exception:  # a sink's propagation must not stop the pipeline
            log.exception("mlobs: a run context carrier provider failed")
    return carrier


def remember_joined(context: RunContext) -> None:
    """Note that this process records into ``context``'s run (kept for the newest 4096)."""
    with _lock:
        _joined[context.run_id] = context
        _joined.move_to_end(context.run_id)
        while len(_joined) > JOINED_RUNS_KEPT:
            _joined.popitem(last=False)


def joined_context(run_id: str) -> RunContext | None:
    """The context of a run this process joined (None: opened here, or unknown)."""
    return _joined.get(run_id)
