"""How Grafana 11.6 expands a PostgreSQL panel query before sending it, so tests can run it.

The rules (no code copied) of, in order: the frontend's template variables (grafana-sql's
``SqlDatasource.ts``, the template format registry), ``Interpolate`` in
``pkg/tsdb/grafana-postgresql-datasource/sqleng/sql_engine.go``, the macros of its
``macros.go``; grafana-plugin-sdk-go's ``gtime.ParseInterval`` and ``FormatInterval``; Go's
``%v`` of a float64 for group widths (``strconv/ftoa.go``: exponent form for decimal
exponents < -4 or >= 6, so ``12d`` gives ``1.0368e+06``); promlib's ``calculateRateInterval``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from types import MappingProxyType

Variables = Mapping[str, str | Sequence[str]]
_NONE: Variables = MappingProxyType({})
_NS, _EPOCH = 10**9, datetime(1970, 1, 1, tzinfo=timezone.utc)
_UNITS = {"ns": 1, "us": 10**3, "\u00b5s": 10**3, "\u03bcs": 10**3, "ms": 10**6,  # Go's
          "s": _NS, "m": 60 * _NS, "h": 3600 * _NS}  # time.ParseDuration units, in ns
_PART = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)")
_CALENDAR = re.compile(r"([0-9]+)([dwMy])")
# What Go's strconv.ParseFloat reads in decimal (Python's float() also takes "1_0", " 1").
_FLOAT = re.compile(r"[+-]?((\d+\.?\d*|\.\d+)(e[+-]?\d+)?|inf(inity)?)|nan", re.I | re.A)
# The frontend's syntaxes: $name, [[name:format]], ${name.fieldpath:format}.
VARIABLE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]"
                      r"|\$\{(\w+)(?:\.([^:^}]+))?(?::([^}]+))?\}", re.ASCII)
_MACRO = re.compile(r"\$([_a-zA-Z0-9]+)\(([^)]*)\)")


class MacroError(ValueError):
    """A macro Grafana refuses: unknown name, missing argument, bad interval or fill."""


@dataclass(frozen=True)
class TimeRange:
    """The dashboard's time range. Raises ValueError: a naive datetime, ``end < start``."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if any(t.utcoffset() is None for t in (self.start, self.end)):
            raise ValueError("TimeRange needs timezone-aware datetimes")
        if self.end < self.start:
            raise ValueError(f"TimeRange ends ({self.end}) before it starts ({self.start})")


@dataclass(frozen=True)
class Fill:
    """A group macro's fill, for the result's gaps, not the SQL: "null", "previous", "value"."""

    mode: str
    value: float | None
    interval_s: float


class ExpandedSQL(str):
    """The SQL sent; ``fill`` the last group macro's fill (one per query), else None."""

    fill: Fill | None = None


class AllValue(str):
    """A variable's custom all-value with "All" selected: Grafana inserts it as it stands,
    without the datasource's quoting (templateSrv skips formatting custom all-values)."""


def expand_variables(text: str, variables: Variables) -> str:
    """Substitutes template variables as Grafana's SQL datasources do: ``variables`` maps
    a name to one value (a ``str``: inserted unquoted, ``'`` doubled) or several (a
    sequence, as multi-value and "All" are: each single-quoted, ``'`` doubled, comma-joined)
    or an :class:`AllValue` (inserted as it stands, whatever the format).
    Unknown names and ``$__...`` stay. Formats: raw, csv, sqlstring, singlequote (``\\'``).
    Raises ValueError: a ``__`` name, a non-string value, another format, a field path."""
    if bad := sorted(n for n in variables if n.startswith("__")):
        raise ValueError(f"built-in names are not template variables: {bad}")

    def replace(match: re.Match[str]) -> str:
        name, fmt = variable_name(match), match[3] or match[6]
        if name.startswith("__") or name not in variables:
            return match[0]
        if isinstance(variables[name], AllValue):
            return variables[name]
        values = [value] if isinstance(value := variables[name], str) else list(value)
        if match[5] is not None or not all(isinstance(v, str) for v in values):
            raise ValueError(f"{match[0]}: a field path or a non-string value {value!r}")
        quoted = ",".join("'" + v.replace("'", "''") + "'" for v in values)
        formats = {None: values[0].replace("'", "''") if isinstance(value, str) else quoted,
                   "raw": ",".join(values), "csv": ",".join(values), "sqlstring": quoted,
                   "singlequote": ",".join("'" + v.replace("'", "\\'") + "'" for v in values)}
        fmt = fmt and fmt.split(":", 1)[0]  # date-style arguments mean nothing to these
        if fmt not in formats:
            raise ValueError(f"{match[0]}: format {fmt!r} is not supported here")
        return formats[fmt]  # None: the datasource's own rule, one value stays unquoted

    return VARIABLE.sub(replace, text)


def variable_name(match: re.Match[str]) -> str:
    """The variable's name in a match of :data:`VARIABLE`."""
    return match[1] or match[2] or match[4]


def _go_duration_ns(text: str) -> int:
    """Go's time.ParseDuration in integer nanoseconds."""
    sign, rest = -1 if text[:1] == "-" else 1, text[1:] if text[:1] in ("-", "+") else text
    invalid, total = MacroError(f'time: invalid duration "{text}"'), 0
    if rest == "0":
        return 0
    for part in _PART.finditer(rest):
        whole, digits, unit = part[1], (part[2] or "")[:18], part[3]  # Go: 18 or 19 digits
        if part.start() == len(rest) and rest:  # the empty match after the last unit
            break
        if not whole and not part[2]:
            raise invalid
        if unit not in _UNITS:
            raise MacroError(f'time: unknown unit "{unit}" in duration "{text}"' if unit
                             else f'time: missing unit in duration "{text}"')
        scaled = int(digits or 0) * (_UNITS[unit] / 10.0 ** len(digits))  # a float64, as Go
        total += int(whole or 0) * _UNITS[unit] + int(scaled)
    if total > 2**63 - (sign > 0):  # the int64 range
        raise invalid
    return sign * total


def _interval_ns(text: str, now: datetime | None) -> int:
    """gtime.ParseInterval: d, w, M, y step the UTC calendar from ``now``; else Go's."""
    if not (calendar := _CALENDAR.fullmatch(text)):
        return _go_duration_ns(text)
    count, unit = int(calendar[1]), calendar[2]
    start = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    months = count * {"M": 1, "y": 12}.get(unit, 0) + start.year * 12 + start.month - 1
    days = start.day - 1 + count * {"d": 1, "w": 7}.get(unit, 0)
    try:  # Go's AddDate: surplus days roll into the next month (Jan 31 + 1M = Mar 3)
        end = start.replace(year=months // 12, month=months % 12 + 1, day=1)
        delta = end + timedelta(days=days) - start
    except (ValueError, OverflowError) as exc:
        raise MacroError(f'invalid interval "{text}"') from exc
    return (delta.days * 86400 + delta.seconds) * _NS + delta.microseconds * 1000


def parse_interval(text: str, *, now: datetime | None = None) -> timedelta:
    """A group macro's interval as gtime.ParseInterval reads it (to the microsecond below):
    ``<int>`` and ``d``, ``w``, ``M`` or ``y`` on the calendar from ``now`` (aware; default the
    clock: ``1M`` is 28 to 31 days, ``1y`` 365 or 366), or a Go duration (``300ms``, ``1.5h``,
    ``1h30m``; ns, us, µs, ms, s, m, h). Raises MacroError (a ValueError) for anything else."""
    return timedelta(microseconds=_interval_ns(text, now) // 1000)


def _ns(seconds: float, what: str) -> int:
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{what} must be a finite number of seconds >= 0, got {seconds!r}")
    return round(seconds * _NS)


def _go_float(value: float) -> str:
    """Go's ``%v`` of a float64: the shortest digits that read back (Python's repr finds
    the same), ``e`` form when the exponent is < -4 or >= 6 (eprec 6 when shortest)."""
    shortest = Decimal(repr(value)).normalize()
    digits, exp = len(shortest.as_tuple().digits), shortest.adjusted()
    if exp < -4 or exp >= 6:
        return f"{value:.{digits - 1}e}"  # Python pads the exponent to two digits too
    return f"{value:.{max(digits - 1 - exp, 0)}f}"


def format_interval(seconds: float) -> str:
    """``seconds`` as gtime.FormatInterval prints it (``$__interval``): the largest of y
    (365 d), d, h, m, s, ms that fits, truncated (90 → ``1m``, 36 h → ``1d``); below 1 ms
    ``1ms``. No week unit. Raises ValueError: negative or not finite."""
    ns = _ns(seconds, "the interval")
    for unit, size in (("y", 365 * 86400 * _NS), ("d", 86400 * _NS), ("h", 3600 * _NS),
                       ("m", 60 * _NS), ("s", _NS), ("ms", 10**6)):
        if ns >= size:
            return f"{ns // size}{unit}"
    return "1ms"


def format_duration(seconds: float) -> str:
    """``seconds`` as Go's time.Duration.String prints it, which is how Grafana's
    Prometheus backend writes ``$__rate_interval`` (75 → ``1m15s``, 3600 → ``1h0m0s``,
    0.5 → ``500ms``). Raises ValueError: negative or not finite."""
    ns = _ns(seconds, "the duration")
    if ns == 0:
        return "0s"
    if ns < _NS:
        for unit, size in (("ms", 10**6), ("µs", 10**3), ("ns", 1)):
            if ns >= size:
                return _decimal(ns, size) + unit
    hours, rest = divmod(ns, 3600 * _NS)
    minutes, rest = divmod(rest, 60 * _NS)
    text = _decimal(rest, _NS) + "s"
    if hours or minutes:
        text = f"{minutes}m{text}"
    return f"{hours}h{text}" if hours else text


def _decimal(count: int, size: int) -> str:
    whole, fraction = divmod(count, size)
    digits = len(str(size)) - 1
    return str(whole) + (f".{fraction:0{digits}d}".rstrip("0") if fraction else "")


def rate_interval(interval_s: float, scrape_interval_s: float) -> float:
    """Grafana's ``$__rate_interval`` in seconds: max(interval + scrape interval,
    4 × scrape interval). Raises ValueError: an argument negative or not finite."""
    _ns(interval_s, "interval_s")
    _ns(scrape_interval_s, "scrape_interval_s")
    return max(interval_s + scrape_interval_s, 4 * scrape_interval_s)


def _instant(moment: datetime) -> tuple[int, str]:
    """Unix microseconds, and Go's RFC3339Nano in UTC (fraction's trailing zeros dropped)."""
    t, delta = moment.astimezone(timezone.utc), moment - _EPOCH
    return ((delta.days * 86400 + delta.seconds) * 10**6 + delta.microseconds,
            f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:"
            f"{t.second:02d}" + f".{t.microsecond:06d}".rstrip("0").rstrip(".") + "Z")


def interpolate(sql: str, time_range: TimeRange, interval_s: float,
                variables: Variables = _NONE, *, now: datetime | None = None) -> ExpandedSQL:
    """``sql`` as Grafana 11.6 sends it to PostgreSQL; ``variables`` as for
    :func:`expand_variables`, ``interval_s`` the query's ``$__interval`` in seconds (>= 0),
    ``now`` where d/w/M/y group widths count from (default the clock). Returns a ``str``
    whose ``.fill`` is the group macros' fill argument (a :class:`Fill` or None). Raises
    MacroError (a ValueError): an unknown macro, a missing argument, a bad interval or fill
    value; ValueError: bad ``variables``, a negative ``interval_s``."""
    ns, fill = _ns(interval_s, "interval_s"), list[Fill]()
    (start_us, start), (end_us, end) = _instant(time_range.start), _instant(time_range.end)
    low, high, nano_low, nano_high = start_us // 10**6, end_us // 10**6, start_us * 1000, \
        end_us * 1000
    sql = expand_variables(sql, variables)  # the frontend does this before the request
    sql = sql.replace("$__interval_ms", str(ns // 10**6)).replace(  # before its prefix
        "$__interval", format_interval(interval_s)).replace(
        "$__unixEpochFrom()", str(low)).replace("$__unixEpochTo()", str(high))

    def width(name: str, args: list[str]) -> str:
        if len(args) < 2:
            raise MacroError(f"macro {name} needs time column and interval and optional "
                             "fill value")
        try:
            step = _interval_ns(args[1].strip("'"), now)
        except MacroError as exc:
            raise MacroError(f"error parsing interval {args[1]} (macro {name})") from exc
        whole = abs(step) // _NS * (1 if step >= 0 else -1)  # Go's Duration.Seconds()
        seconds = float(whole) + float(step - whole * _NS) / 1e9
        if len(args) == 3:  # only a third argument is the fill
            mode = {"NULL": "null", "previous": "previous"}.get(args[2], "value")
            if mode == "value" and not _FLOAT.fullmatch(args[2]):
                raise MacroError(f"error parsing fill value {args[2]} (macro {name})")
            fill.append(Fill(mode, float(args[2]) if mode == "value" else None, seconds))
        return _go_float(seconds)

    def macro(match: re.Match[str]) -> str:
        name, args = match[1], [a.strip(" ") for a in match[2].split(",")]
        column, base = args[0], name.removesuffix("Alias")
        # Pre-5.3 compatibility as Grafana checks it: the first occurrence, then a comma.
        after = sql.find(match[0]) + len(match[0])
        if base in ("__timeGroup", "__unixEpochGroup"):
            step = width(base, args)
            alias = name != base or base == "__timeGroup" and sql[after:after + 1] == ","
            of = f"extract(epoch from {column})" if base == "__timeGroup" else f"({column})"
            return f"floor({of}/{step})*{step}" + ' AS "time"' * alias
        # Grafana's check never fires (Go splits "" into [""]); an empty column is refused.
        if not column and name in ("__time", "__timeEpoch", "__timeFilter",
                                   "__unixEpochFilter", "__unixEpochNanoFilter"):
            raise MacroError(f"missing time column argument for macro {name}")
        expansions = {
            "__time": f'{column} AS "time"',
            "__timeEpoch": f'extract(epoch from {column}) as "time"',
            "__timeFilter": f"{column} BETWEEN '{start}' AND '{end}'",
            "__timeFrom": f"'{start}'", "__timeTo": f"'{end}'",
            "__unixEpochFilter": f"{column} >= {low} AND {column} <= {high}",
            "__unixEpochNanoFilter": f"{column} >= {nano_low} AND {column} <= {nano_high}",
            "__unixEpochNanoFrom": str(nano_low), "__unixEpochNanoTo": str(nano_high)}
        if name not in expansions:
            raise MacroError(f'unknown macro "{name}"')
        return expansions[name]

    result = ExpandedSQL(_MACRO.sub(macro, sql))
    result.fill = fill[-1] if fill else None
    return result
