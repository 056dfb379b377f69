"""``promtool`` (Debian's ``prometheus`` package, installed by ``make``) on what the
exporter produces and on its deployable configs: exposition lint, alert rules (checked and
unit-tested), the scrape config example."""

import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("mlobs_prometheus")

from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402

from mlobs_prometheus import PrometheusSettings, PrometheusSink  # noqa: E402
from support.ci import required_tool  # noqa: E402

DEPLOY = Path(__file__).resolve().parents[2] / "exporters" / "mlobs-prometheus" / "deploy"



@pytest.fixture(scope="module")
def promtool() -> str:
    return required_tool("promtool")


def tool(*args: str, stdin: bytes | None = None, cwd: Path | None = None
        ) -> subprocess.CompletedProcess:
    return subprocess.run(args, input=stdin, capture_output=True, timeout=60, cwd=cwd)


def test_the_exposition_passes_promtool_check_metrics(promtool, make_run):
    registry = CollectorRegistry()
    sink = PrometheusSink(registry, PrometheusSettings(max_label_values=4))
    for status in ("ok", "error"):
        run, components = make_run(status=status)
        sink.export([*components, run])
    # a refused label value too: the overflow counter is part of the exposition
    sink.export([replace(components[0], component="video 123 asr")])
    text = generate_latest(registry)
    # a sample, not just HELP/TYPE (those are written even before any refusal)
    assert b'mlobs_prometheus_label_overflow_total{label="component"} ' in text
    done = tool(promtool, "check", "metrics", stdin=text)
    assert done.returncode == 0, (done.stdout + done.stderr).decode()
    assert done.stdout.strip() == b"" and done.stderr.strip() == b""  # no lint remarks


def test_the_alert_rules_are_valid_and_their_unit_tests_pass(promtool):
    checked = tool(promtool, "check", "rules", "mlobs.rules.yml", cwd=DEPLOY)
    assert checked.returncode == 0, (checked.stdout + checked.stderr).decode()
    assert b"SUCCESS: 6 rules found" in checked.stdout
    tested = tool(promtool, "test", "rules", "mlobs.rules.test.yml", cwd=DEPLOY)
    assert tested.returncode == 0, (tested.stdout + tested.stderr).decode()


def test_the_scrape_config_example_is_valid(promtool):
    done = tool(promtool, "check", "config", "prometheus.yml", cwd=DEPLOY)
    assert done.returncode == 0, (done.stdout + done.stderr).decode()
    assert b"is valid prometheus config file syntax" in done.stdout
