"""Query parameters of the pages and the API, checked at the door: a bad value is a 400
that names the parameter, never a 500."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone

from mlobs.core.errors import ConfigError
from mlobs.web.data import PAGE_SIZE, RUN_FILTERS, RunQuery, decode_cursor

MAX_PAGE_SIZE = 500
#: the longest text a filter accepts (the columns are at most 255 characters).
MAX_TEXT = 255


def text(params: Mapping[str, str], name: str) -> str | None:
    """A text parameter, stripped; None when absent or empty.

    Raises:
        ConfigError: longer than :data:`MAX_TEXT` or with control characters.
    """
    value = (params.get(name) or "").strip()
    if not value:
        return None
    if len(value) > MAX_TEXT or not value.isprintable():
        raise ConfigError(f"{name}: at most {MAX_TEXT} printable characters")
    return value


def moment(params: Mapping[str, str], name: str) -> datetime | None:
    """An ISO 8601 time (naive = UTC).

    Raises:
        ConfigError: not ISO 8601.
    """
    value = text(params, name)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{name}: not an ISO 8601 time: {value[:40]!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def integer(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """An integer in [low, high].

    Raises:
        ConfigError: not an integer or out of range.
    """
    value = text(params, name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name}: not an integer: {value[:40]!r}") from None
    if not low <= number <= high:
        raise ConfigError(f"{name}: must be between {low} and {high}, got {number}")
    return number


def run_query(params: Mapping[str, str]) -> RunQuery:
    """The runs list's parameters: the :data:`RUN_FILTERS` names, ``since``, ``until``
    (ISO 8601), ``q`` (a run_id prefix), ``after`` (a page cursor), ``limit``.

    Raises:
        ConfigError: a bad value (the message names the parameter), or since >= until.
    """
    filters = {name: value for name in RUN_FILTERS if (value := text(params, name))}
    since, until = moment(params, "since"), moment(params, "until")
    if since is not None and until is not None and since >= until:
        raise ConfigError("since must be before until")
    cursor = text(params, "after")
    return RunQuery(filters=filters, since=since, until=until, run_prefix=text(params, "q"),
                    after=None if cursor is None else decode_cursor(cursor),
                    limit=integer(params, "limit", PAGE_SIZE, 1, MAX_PAGE_SIZE))
