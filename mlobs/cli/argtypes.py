"""argparse ``type=`` converters shared by the commands.

Each raises :class:`argparse.ArgumentTypeError` with a message for the user, so argparse
prints ``argument --limit: expected a positive integer, got 'abc'`` rather than the name
of a function (``invalid positive_int value``). A new converter must do the same
(tests/cli/test_argument_errors.py tries every one).
"""

from __future__ import annotations

import argparse
import math
import re
from datetime import datetime, timedelta, timezone

from mlobs.core.errors import ConfigError
from mlobs.core.labels import parse_labels


def _integer(text: str, minimum: int, maximum: int | None, expected: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum or (maximum is not None and value > maximum):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (a count, a limit)."""
    return _integer(text, 1, None, "a positive integer")


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    return _integer(text, 0, None, "an integer >= 0")


def port(text: str) -> int:
    """A TCP port, 1 to 65535."""
    return _integer(text, 1, 65535, "a port number from 1 to 65535")


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


#: ``30m``, ``2h``, ``7d``, ``1w`` (a number, then the unit).
_AGO = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def time_or_ago(text: str) -> datetime:
    """An ISO 8601 date or date-time (naive = UTC), or a time before now: ``90s``,
    ``30m``, ``2h``, ``7d``, ``2w``."""
    ago = _AGO.fullmatch(text)
    if ago is None:
        try:
            return iso_datetime(text)
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(
                f"expected an ISO 8601 date/time (2026-05-01, 2026-05-01T12:00) or a time "
                f"before now (30m, 2h, 7d, 2w), got {text!r}") from None
    amount, unit = float(ago.group(1)), _UNITS[ago.group(2).lower()]
    try:
        return datetime.now(timezone.utc) - timedelta(**{unit: amount})
    except OverflowError:
        raise argparse.ArgumentTypeError(f"{text!r} is too long ago") from None


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
