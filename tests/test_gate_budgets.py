"""The budgets file (``perf-budgets.toml``, :mod:`mlobs.analysis.budgets`): schema, errors
that name the line, and the repository's own file."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlobs.analysis.budgets import BUDGET_LIMITS, GatePolicy, load_budgets
from mlobs.core.errors import ConfigError

GOOD = """\
# the gate's policy
[gate]
alpha = 0.01
min_runs = 8

[[budget]]
component = "asr"
model_signature = "3f2a9c1e77"
profile = "baseline"
max_p95_duration_ms = 1200
max_p99_duration_ms = 2_000
max_peak_rss_bytes = 2_000_000_000
max_error_rate = 0.01
min_cache_hit_rate = 0.5

[[budget]]
component = "ocr"
min_items_per_s = 10.5

[[figure]]
benchmark = "overhead"
name = "overhead_us"
max = 5
description = "caller-thread cost over the bare call"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "perf-budgets.toml"
    path.write_text(text)
    return path


def test_a_full_file_parses_into_policy_budgets_and_figures(tmp_path):
    budgets = load_budgets(_write(tmp_path, GOOD))
    assert budgets.policy == GatePolicy(alpha=0.01, min_runs=8)
    asr, ocr = budgets.components
    assert (asr.component, asr.model_signature, asr.profile, asr.line) == (
        "asr", "3f2a9c1e77", "baseline", 6)
    assert asr.limits == {"max_p95_duration_ms": 1200.0, "max_p99_duration_ms": 2000.0,
                          "max_peak_rss_bytes": 2e9, "max_error_rate": 0.01,
                          "min_cache_hit_rate": 0.5}
    assert ocr.line == 16 and ocr.limits == {"min_items_per_s": 10.5}
    assert asr.matches("asr", "3f2a9c1e77" + "0" * 54) and not asr.matches("asr", "ff" * 32)
    assert not asr.matches("asr", None) and ocr.matches("ocr", None)
    (figure,) = budgets.figures
    assert (figure.benchmark, figure.name, figure.max, figure.min, figure.line) == (
        "overhead", "overhead_us", 5, None, 20)


@pytest.mark.parametrize("text, line, message", [
    ('[[budget]]\ncomponent = "asr"\nmax_p95_duration_ms = "fast"\n', 3,
     "max_p95_duration_ms must be a number >= 0, got 'fast'"),
    ('[[budget]]\ncomponent = "asr"\n\n\nmax_error_rate = 1.5\n', 5,
     "max_error_rate must be a number from 0 to 1"),
    ('[[budget]]\ncomponent = "a"\nmax_error_rate = 0.1\n[[budget]]\nmax_error_rate = 0.1\n',
     4, "[[budget]] needs component"),
    ('[[budget]]\ncomponent = "asr"\nmax_p95_latency = 3\n', 3, "unknown key 'max_p95_latency'"),
    ('[[budget]]\ncomponent = "asr"\n', 1, "sets no limit"),
    ('[[budget]]\ncomponent = "asr"\nmodel_signature = "3f"\nmax_error_rate = 0\n', 3,
     "a prefix of at least 8 characters"),
    ('[gate]\nalpha = 2\n', 2, "alpha must be a number between 0 and 1"),
    ('[gate]\nmin_runs = 1\n', 2, "min_runs must be an integer from 2"),
    ('[gate]\nbeta = 1\n', 2, "unknown key 'beta' in [gate]"),
    ('[gates]\nalpha = 0.1\n', 1, "unknown table 'gates'"),
    ('# policy\nalpha = 0.1\n[gate]\n', 2, "unknown key 'alpha' at the top level"),
    ('[budget]\ncomponent = "asr"\n', 1, "write [[budget]]"),
    ('[[figure]]\nbenchmark = "x"\nname = "y"\n', 1, "needs max = ... or min"),
    ('[[figure]]\nbenchmark = "x"\nname = "y"\nmax = "big"\n', 4, "max must be a number"),
])
def test_schema_errors_name_the_file_and_line(tmp_path, text, line, message):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_budgets(path)
    assert str(caught.value).startswith(f"{path}:{line}: ")
    assert message in str(caught.value)


def test_not_toml_and_a_missing_file_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"not valid TOML: .*line 2"):
        load_budgets(_write(tmp_path, '[gate]\nalpha = = 1\n'))
    with pytest.raises(ConfigError, match="cannot read the budgets file"):
        load_budgets(tmp_path / "absent.toml")


def test_every_limit_key_is_documented():
    doc = (Path(__file__).parents[1] / "docs" / "gating.md").read_text()
    for key in BUDGET_LIMITS:
        assert f"`{key}`" in doc, key


def test_the_repositorys_own_budgets_parse_and_name_benchmarks_make_bench_runs():
    root = Path(__file__).parents[1]
    budgets = load_budgets(root / "perf-budgets.toml")
    assert budgets.figures
    runner = (root / "tests" / "perf" / "run_benchmarks.py").read_text()
    for figure in budgets.figures:
        assert f'"{figure.benchmark}":' in runner, figure.benchmark
