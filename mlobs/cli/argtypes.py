"""argparse ``type=`` converters shared by the commands.

Each raises :class:`argparse.ArgumentTypeError` with a message for the user, so argparse
prints ``argument --limit: must be an integer >= 1, got 'abc'`` rather than the name of
a function.
"""

from __future__ import annotations

import argparse
import math
from datetime import datetime, timezone

from mlobs.core.errors import ConfigError
from mlobs.core.labels import parse_labels


def _integer(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (a count, a limit)."""
    return _integer(text, 1)


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    return _integer(text, 0)


def _number(text: str, unit: str, zero: bool = False) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (0 <= value if zero else 0 < value) or not value < math.inf:
        raise argparse.ArgumentTypeError(
            f"must be a number of {unit} {'>=' if zero else '>'} 0, got {text!r}")
    return value


def positive_days(text: str) -> float:
    """A finite number of days > 0 (``1.5``)."""
    return _number(text, "days")


def positive_seconds(text: str) -> float:
    """A finite number of seconds > 0 (``90``)."""
    return _number(text, "seconds")


def non_negative_seconds(text: str) -> float:
    """A finite number of seconds >= 0 (``0``, ``300``)."""
    return _number(text, "seconds", zero=True)


def iso_datetime(text: str) -> datetime:
    """An ISO 8601 date or date-time; without a zone it is UTC (like
    :func:`mlobs.core.records.parse_utc`)."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO 8601 date/time: {text!r} (e.g. 2026-05-01 or "
            "2026-05-01T12:00:00+00:00)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def cache_version(text: str) -> int:
    """A cached version number: ``3`` or ``v3``."""
    try:
        value = int(text[1:] if text[:1] in ("v", "V") else text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a version number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"versions start at 1, got {value}")
    return value


def label_pairs(text: str) -> dict[str, str]:
    """``KEY=VALUE`` (or several, ``KEY=VALUE,KEY=VALUE``): run labels, by the rules of
    :func:`mlobs.core.labels.parse_labels`."""
    try:
        labels = parse_labels(text, source="label")
    except ConfigError as exc:  # "label: 'x' is not KEY=VALUE", "label key 'x' must ..."
        raise argparse.ArgumentTypeError(str(exc).removeprefix("label: ")) from None
    if not labels:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return labels


class LabelsAction(argparse.Action):
    """A repeatable ``--label KEY=VALUE`` (``type=``:func:`label_pairs`) gathered into one
    ``{key: value}`` dict; the same key with two values is an argparse error (no run
    carries both)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        gathered = dict(getattr(namespace, self.dest, None) or {})
        for key, value in dict(values).items():  # type: ignore[call-overload]
            if gathered.get(key, value) != value:
                raise argparse.ArgumentError(
                    self, f"label {key!r} given twice, as {gathered[key]!r} and {value!r}: "
                    "no run carries both")
            gathered[key] = value
        setattr(namespace, self.dest, gathered)
