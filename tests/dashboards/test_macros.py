"""Golden cases for mlobs_dashboards.macros, the port of Grafana 11.6's PostgreSQL query
expansion. The macro cases and their expected SQL are Grafana's own
(pkg/tsdb/grafana-postgresql-datasource/macros_test.go); FormatInterval's come from
grafana-plugin-sdk-go's backend/gtime/gtime_test.go; the Unix seconds were computed with
``date -u +%s``, not with the code under test.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from mlobs_dashboards import macros

UTC = timezone.utc
APRIL = macros.TimeRange(datetime(2018, 4, 12, 18, 0, tzinfo=UTC),
                         datetime(2018, 4, 12, 18, 5, tzinfo=UTC))
TO_1965 = macros.TimeRange(datetime(1960, 2, 1, 7, 0, tzinfo=UTC),
                           datetime(1965, 2, 3, 8, 0, tzinfo=UTC))
TO_1980 = macros.TimeRange(datetime(1960, 2, 1, 7, 0, tzinfo=UTC),
                           datetime(1980, 2, 3, 8, 0, tzinfo=UTC))
HALF_SECOND = macros.TimeRange(datetime(1960, 2, 1, 7, 0, 0, 500000, tzinfo=UTC),
                               datetime(1980, 2, 3, 8, 0, 0, 500000, tzinfo=UTC))
TEN_MINUTES = 600.0
GROUP_300 = "floor(extract(epoch from time_column)/300)*300"


def expand(sql: str, time_range: macros.TimeRange = APRIL, interval_s: float = TEN_MINUTES,
           variables: dict | None = None, **kwargs) -> str:
    return macros.interpolate(sql, time_range, interval_s, variables or {}, **kwargs)


@pytest.mark.parametrize("sql, expected", [
    ("select $__time(time_column)", 'select time_column AS "time"'),
    ("select min($__time(time_column))", 'select min(time_column AS "time")'),
    ("select $__timeEpoch(time_column)", 'select extract(epoch from time_column) as "time"'),
    ("WHERE $__timeFilter(time_column)",
     "WHERE time_column BETWEEN '2018-04-12T18:00:00Z' AND '2018-04-12T18:05:00Z'"),
    ("select $__timeFrom()", "select '2018-04-12T18:00:00Z'"),
    ("select $__timeTo()", "select '2018-04-12T18:05:00Z'"),
    # pre-5.3 compatibility: a comma right after $__timeGroup(...) adds the alias
    ("SELECT $__timeGroup(time_column,'5m'), value", f'SELECT {GROUP_300} AS "time", value'),
    ("SELECT $__timeGroup(time_column,'5m') as time, value",
     f"SELECT {GROUP_300} as time, value"),
    ("SELECT $__timeGroup(time_column,'5m')", f"SELECT {GROUP_300}"),
    ("SELECT $__timeGroupAlias(time_column,'5m')", f'SELECT {GROUP_300} AS "time"'),
    ("$__timeGroup(time_column , '5m')", GROUP_300),
    ("$__timeGroupAlias(time_column , '5m')", f'{GROUP_300} AS "time"'),
    ("select $__unixEpochFilter(time)", "select time >= 1523556000 AND time <= 1523556300"),
    ("select $__unixEpochNanoFilter(time)",
     "select time >= 1523556000000000000 AND time <= 1523556300000000000"),
    ("select $__unixEpochNanoFrom()", "select 1523556000000000000"),
    ("select $__unixEpochNanoTo()", "select 1523556300000000000"),
    ("SELECT $__unixEpochGroup(time_column+time_adjustment,'5m')",
     "SELECT floor((time_column+time_adjustment)/300)*300"),
    ("SELECT $__unixEpochGroupAlias(time_column+time_adjustment,'5m')",
     'SELECT floor((time_column+time_adjustment)/300)*300 AS "time"'),
    # the inert SQLCommenter case of Grafana's TestInterpolateSQLCommenter (10 min interval)
    ("SELECT $__interval /*app='grafana',source='bi'*/",
     "SELECT 10m /*app='grafana',source='bi'*/"),
])
def test_grafana_golden_cases_2018(sql, expected):
    assert expand(sql) == expected


@pytest.mark.parametrize("time_range, sql, expected", [
    (TO_1965, "WHERE $__timeFilter(time_column)",
     "WHERE time_column BETWEEN '1960-02-01T07:00:00Z' AND '1965-02-03T08:00:00Z'"),
    (TO_1965, "select $__unixEpochFilter(time)",
     "select time >= -312915600 AND time <= -154886400"),
    (TO_1965, "select $__unixEpochNanoFilter(time)",
     "select time >= -312915600000000000 AND time <= -154886400000000000"),
    (TO_1980, "WHERE $__timeFilter(time_column)",
     "WHERE time_column BETWEEN '1960-02-01T07:00:00Z' AND '1980-02-03T08:00:00Z'"),
    (TO_1980, "select $__unixEpochFilter(time)",
     "select time >= -312915600 AND time <= 318412800"),
    (TO_1980, "select $__unixEpochNanoFilter(time)",
     "select time >= -312915600000000000 AND time <= 318412800000000000"),
    (HALF_SECOND, "WHERE $__timeFilter(time_column)",
     "WHERE time_column BETWEEN '1960-02-01T07:00:00.5Z' AND '1980-02-03T08:00:00.5Z'"),
    # Go's Unix() floors: 07:00:00.5 in 1960 is second -312915600, not ...599
    (HALF_SECOND, "select $__unixEpochFilter(t), $__unixEpochNanoFrom()",
     "select t >= -312915600 AND t <= 318412800, -312915599500000000"),
])
def test_grafana_golden_cases_before_1970(time_range, sql, expected):
    assert expand(sql, time_range) == expected


def test_time_range_in_another_zone_prints_as_utc():
    paris = timezone(timedelta(hours=2))
    time_range = macros.TimeRange(datetime(2018, 4, 12, 20, 0, 0, 250000, tzinfo=paris),
                                  datetime(2018, 4, 12, 20, 5, tzinfo=paris))
    assert expand("$__timeFrom() $__timeTo() $__unixEpochFrom()", time_range) == \
        "'2018-04-12T18:00:00.25Z' '2018-04-12T18:05:00Z' 1523556000"


@pytest.mark.parametrize("start, end", [
    (datetime(2018, 4, 12), datetime(2018, 4, 13, tzinfo=UTC)),
    (datetime(2018, 4, 13, tzinfo=UTC), datetime(2018, 4, 12, tzinfo=UTC)),
])
def test_time_range_refuses_naive_or_reversed(start, end):
    with pytest.raises(ValueError):
        macros.TimeRange(start, end)


@pytest.mark.parametrize("interval_s, text, ms", [
    (600, "10m", "600000"), (90, "1m", "90000"), (36 * 3600, "1d", "129600000"),
    (0.5, "500ms", "500"), (7 * 86400, "7d", "604800000"), (0.0004, "1ms", "0"),
])
def test_interval_and_interval_ms(interval_s, text, ms):
    assert expand("$__interval|$__interval_ms", interval_s=interval_s) == f"{text}|{ms}"


@pytest.mark.parametrize("seconds, expected", [  # gtime_test.go's TestFormatInterval
    (61, "1m"), (0.03, "30ms"), (23 * 3600, "23h"), (24 * 3600, "1d"), (367 * 86400, "1y"),
])
def test_format_interval_like_gtime(seconds, expected):
    assert macros.format_interval(seconds) == expected


def test_unix_epoch_from_and_to_are_global_substitutions():
    assert expand("t >= $__unixEpochFrom() AND t < $__unixEpochTo()") == \
        "t >= 1523556000 AND t < 1523556300"


def test_negative_interval_is_refused():
    with pytest.raises(ValueError):
        expand("select 1", interval_s=-1)


@pytest.mark.parametrize("text, variables, expected", [
    ("host = '$host'", {"host": "web1"}, "host = 'web1'"),  # a single value: unquoted
    ("name = '$who'", {"who": "O'Brien"}, "name = 'O''Brien'"),  # its quote doubled
    ("name IN ($who)", {"who": ["ann", "O'Brien"]}, "name IN ('ann','O''Brien')"),
    ("IN (${who})", {"who": ["a"]}, "IN ('a')"),
    ("IN ([[who]])", {"who": ["a", "b"]}, "IN ('a','b')"),
    ("${who:raw}", {"who": ["a", "O'Brien"]}, "a,O'Brien"),
    ("${who:raw}", {"who": "O'Brien"}, "O'Brien"),
    ("${who:csv}", {"who": ["a", "b"]}, "a,b"),
    ("${who:sqlstring}", {"who": "O'Brien"}, "'O''Brien'"),
    ("${who:singlequote}", {"who": ["O'Brien", "b"]}, "'O\\'Brien','b'"),
    ("[[who:sqlstring]]", {"who": ["a"]}, "'a'"),
    ("IN ($who)", {"who": []}, "IN ()"),
    ("$nope ${nope} [[nope]]", {"who": "a"}, "$nope ${nope} [[nope]]"),
    ("$hostname", {"host": "web1"}, "$hostname"),  # the name is all the word characters
    ("$__timeFilter(t) ${__interval}", {"who": "a"}, "$__timeFilter(t) ${__interval}"),
])
def test_expand_variables(text, variables, expected):
    assert macros.expand_variables(text, variables) == expected


@pytest.mark.parametrize("text, variables", [
    ("${who:lucene}", {"who": "a"}),
    ("${who.field}", {"who": "a"}),
    ("$who", {"who": [1, 2]}),
    ("$__interval", {"__interval": "1m"}),
])
def test_expand_variables_refuses(text, variables):
    with pytest.raises(ValueError):
        macros.expand_variables(text, variables)


def test_variables_come_before_globals_and_macros():
    sql = "SELECT $__timeGroup(t, $bucket), x FROM m WHERE host IN ($host)"
    assert expand(sql, variables={"bucket": "$__interval", "host": ["a", "b"]}) == (
        "SELECT floor(extract(epoch from t)/600)*600 AS \"time\", x FROM m "
        "WHERE host IN ('a','b')")


@pytest.mark.parametrize("interval, width", [
    ("12d", "1.0368e+06"),  # Go's %v: exponent form from 1e+06 on
    ("11d", "950400"),
    ("1000000s", "1e+06"),
    ("2w", "1.2096e+06"),
    ("1w", "604800"),
    ("1.5h", "5400"),
    ("1h30m", "5400"),
    ("90m", "5400"),
    ("500ms", "0.5"),
    ("20ms", "0.02"),
    ("100us", "0.0001"),
    ("10µs", "1e-05"),  # and below 1e-04
    ("300ns", "3e-07"),
    ("1.25s", "1.25"),
])
def test_group_width_prints_like_go_float_v(interval, width):
    assert expand(f"$__timeGroup(t, '{interval}')") == \
        f"floor(extract(epoch from t)/{width})*{width}"


@pytest.mark.parametrize("now, interval, width", [
    (datetime(2025, 1, 31, tzinfo=UTC), "1M", "2.6784e+06"),  # Jan 31 + 1M = Mar 3
    (datetime(2025, 2, 1, tzinfo=UTC), "1M", "2.4192e+06"),  # 28 days
    (datetime(2023, 3, 1, tzinfo=UTC), "1y", "3.16224e+07"),  # 366 days, over Feb 29
])
def test_calendar_intervals_count_from_now(now, interval, width):
    assert expand(f"$__unixEpochGroup(t, {interval})", now=now) == \
        f"floor((t)/{width})*{width}"


@pytest.mark.parametrize("text, expected", [
    ("1d", timedelta(days=1)), ("1w", timedelta(days=7)), ("2w", timedelta(days=14)),
    ("1M", timedelta(days=29)),  # from Feb 1 2024
    ("1y", timedelta(days=366)),
    ("300ms", timedelta(milliseconds=300)), ("1.5h", timedelta(minutes=90)),
    ("1h30m", timedelta(minutes=90)), ("-5m", timedelta(minutes=-5)), ("0", timedelta()),
    ("1.s", timedelta(seconds=1)), (".5s", timedelta(milliseconds=500)),
    ("1us", timedelta(microseconds=1)), ("1μs", timedelta(microseconds=1)),
    ("1500ns", timedelta(microseconds=1)),  # rounded down to the microsecond
])
def test_parse_interval(text, expected):
    assert macros.parse_interval(text, now=datetime(2024, 2, 1, tzinfo=UTC)) == expected


@pytest.mark.parametrize("text", ["", "5x", "1.5d", "1", "d", ".s", "1..5s", "10 m",
                                  "9999999999999999999h"])
def test_parse_interval_refuses(text):
    with pytest.raises(macros.MacroError):
        macros.parse_interval(text)


@pytest.mark.parametrize("sql, fill, expected", [
    ("$__timeGroup(t, '5m', NULL)", macros.Fill("null", None, 300.0), GROUP_300),
    ("$__timeGroup(t, '5m', previous)", macros.Fill("previous", None, 300.0), GROUP_300),
    ("$__unixEpochGroup(t, 1h, 0)", macros.Fill("value", 0.0, 3600.0),
     "floor((t)/3600)*3600"),
    ("$__timeGroupAlias(t, '5m', -1.5)", macros.Fill("value", -1.5, 300.0),
     f'{GROUP_300} AS "time"'),
    ("$__timeGroup(t, '1m', 1) $__timeGroup(t, '5m', NULL)",  # one per query: the last
     macros.Fill("null", None, 300.0), f"{GROUP_300.replace('300', '60')} {GROUP_300}"),
    ("$__timeGroup(t, '5m', 1, 2)", None, GROUP_300),  # Grafana reads a third only
    ("$__timeGroup(t, '5m')", None, GROUP_300),
])
def test_fill_is_recorded_and_leaves_the_sql(sql, fill, expected):
    result = expand(sql)
    assert isinstance(result, str)
    assert result.fill == fill
    assert result == expected.replace("time_column", "t")


def test_pre_5_3_check_uses_the_first_occurrence_as_grafana_does():
    sql = "SELECT $__timeGroup(t,'5m'), x FROM m GROUP BY $__timeGroup(t,'5m')"
    group = "floor(extract(epoch from t)/300)*300"
    assert expand(sql) == f'SELECT {group} AS "time", x FROM m GROUP BY {group} AS "time"'
    assert expand("ORDER BY $__timeGroup(t,'5m')) AS r, x") == f"ORDER BY {group}) AS r, x"


@pytest.mark.parametrize("sql, message", [
    ("select $__nope(t)", 'unknown macro "__nope"'),
    ("select $__nope() FROM $__alsoNot()", 'unknown macro "__nope"'),  # the first error
    ("WHERE $__timeFilter()", "missing time column argument for macro __timeFilter"),
    ("select $__time( )", "missing time column argument for macro __time"),
    ("$__unixEpochFilter()", "missing time column argument for macro __unixEpochFilter"),
    ("$__timeGroup(t)", "macro __timeGroup needs time column and interval"),
    ("$__unixEpochGroupAlias(t)", "macro __unixEpochGroup needs time column and interval"),
    ("$__timeGroup(t, '5x')", "error parsing interval '5x' (macro __timeGroup)"),
    ("$__timeGroup(t, 1.5d)", "error parsing interval 1.5d"),
    ("$__timeGroup(t, '5m', 'NULL')", "error parsing fill value 'NULL'"),
    ("$__timeGroup(t, '5m', 1_0)", "error parsing fill value 1_0"),
])
def test_macro_errors(sql, message):
    with pytest.raises(macros.MacroError, match="^" + message.replace("(", r"\(")
                       .replace(")", r"\)")):
        expand(sql)


def test_macro_error_is_a_value_error():
    assert issubclass(macros.MacroError, ValueError)


def test_dollar_text_that_is_no_macro_call_stays():
    sql = "SELECT $$ literal $$, $1, $body$ x $body$"
    assert expand(sql) == sql


@pytest.mark.parametrize("interval_s, scrape_s, expected", [
    (60, 15, 75), (1, 15, 60), (0, 1, 4), (10, 1, 11), (3, 1, 4),
])
def test_rate_interval(interval_s, scrape_s, expected):
    assert macros.rate_interval(interval_s, scrape_s) == expected


@pytest.mark.parametrize("interval_s, scrape_s", [(-1, 15), (60, float("nan"))])
def test_rate_interval_refuses(interval_s, scrape_s):
    with pytest.raises(ValueError):
        macros.rate_interval(interval_s, scrape_s)


@pytest.mark.parametrize("seconds, expected", [
    (4, "4s"), (75, "1m15s"), (3600, "1h0m0s"), (5400.5, "1h30m0.5s"), (0.5, "500ms"),
    (0.0015, "1.5ms"), (0, "0s"),
])
def test_format_duration_prints_like_go_duration_string(seconds, expected):
    assert macros.format_duration(seconds) == expected


def test_a_custom_all_value_is_inserted_as_it_stands():
    everything = macros.AllValue("'__all'")
    assert macros.expand_variables("IN ($v) OR ${v:csv} OR [[v]]", {"v": everything}) \
        == "IN ('__all') OR '__all' OR '__all'"
