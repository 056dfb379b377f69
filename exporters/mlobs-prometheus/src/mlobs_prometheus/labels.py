"""Bounded label values: the guard every label value passes before it reaches a metric.

Each distinct label value is a new time series in Prometheus, so only bounded values may
become labels (ARCHITECTURE §8: component, status, cache result, device kind,
model_signature's short form; never run_id or video_id). Even these are bounded only by
convention (a component name built from a video title would not be), so the guard
enforces it:

* a value must be at most ``MAX_VALUE_CHARS`` characters of ``[A-Za-z0-9_.:/-]``
  (empty is allowed: Prometheus reads it as "label absent");
* at most ``max_values`` distinct values are accepted per label name; the first ones seen
  win and stay accepted.

A refused value is replaced by :data:`OVERFLOW_VALUE`, so the record is still counted,
under a fixed series; the caller counts the refusal (metric
``mlobs_prometheus_label_overflow_total``) and the first refusal per label is logged as
a warning. The guard is used from the sink's worker thread only (no lock).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

log = logging.getLogger("mlobs.prometheus")

#: the value that stands in for every refused one.
OVERFLOW_VALUE = "__other__"
#: longest accepted label value (a component name, a device kind, 12 hex characters).
MAX_VALUE_CHARS = 64
#: distinct values accepted per label name unless configured otherwise.
DEFAULT_MAX_VALUES = 200

_ACCEPTED = re.compile(r"[A-Za-z0-9_.:/-]*")


class LabelGuard:
    """Caps the distinct values of each label and refuses odd ones.

    Args:
        max_values: distinct values accepted per label name (at least 1).
        on_overflow: called with the label name each time a value is refused (e.g. to
            increment a counter).

    Raises:
        ValueError: ``max_values`` is below 1.
    """

    def __init__(self, max_values: int = DEFAULT_MAX_VALUES,
                 on_overflow: Callable[[str], None] | None = None) -> None:
        if max_values < 1:
            raise ValueError(f"max_values must be at least 1, got {max_values}")
        self.max_values = max_values
        self._on_overflow = on_overflow
        self._seen: dict[str, set[str]] = {}
        self._warned: set[str] = set()
        #: refused values per label name since the guard was made.
        self.refused: dict[str, int] = {}

    def value(self, label: str, raw: str | None) -> str:
        """The value to use for ``label``: ``raw`` when accepted, else ``OVERFLOW_VALUE``.

        ``None`` becomes the empty string (label absent).
        """
        candidate = "" if raw is None else str(raw)
        seen = self._seen.setdefault(label, set())
        if candidate in seen:
            return candidate
        reason = self._refusal(candidate, len(seen))
        if reason is None:
            seen.add(candidate)
            return candidate
        self._refuse(label, candidate, reason)
        return OVERFLOW_VALUE

    def _refusal(self, candidate: str, distinct: int) -> str | None:
        if len(candidate) > MAX_VALUE_CHARS:
            return f"longer than {MAX_VALUE_CHARS} characters"
        if not _ACCEPTED.fullmatch(candidate):
            return "characters outside [A-Za-z0-9_.:/-]"
        if distinct >= self.max_values:
            return f"more than {self.max_values} distinct values"
        return None

    def _refuse(self, label: str, candidate: str, reason: str) -> None:
        self.refused[label] = self.refused.get(label, 0) + 1
        if self._on_overflow is not None:
            self._on_overflow(label)
        if label not in self._warned:
            self._warned.add(label)
            log.warning("mlobs-prometheus: label %s value %r refused (%s); recorded as %r "
                        "(counted in mlobs_prometheus_label_overflow_total; further refusals "
                        "of this label are not logged)", label, candidate[:100], reason,
                        OVERFLOW_VALUE)
