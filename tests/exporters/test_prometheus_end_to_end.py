"""End to end: a real Prometheus server scrapes a process that ran ``mlobs demo`` with the
``prometheus`` sink, and answers a p95-duration query for every component of the demo.

Needs Debian's ``prometheus`` package (``make`` installs it as root). Skipped without it,
except in CI (``CI=true``), where it fails.
"""

import json
import math
import os
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("mlobs_prometheus")
pytest.importorskip("sklearn")

from support.ci import required_tool  # noqa: E402
from support.ports import free_port  # noqa: E402
from support.processes import stop  # noqa: E402

#: runs the demo (sinks from MLOBS_SINKS), then keeps serving /metrics until stdin closes.
DEMO_THEN_SERVE = textwrap.dedent("""
    import sys
    from mlobs.demo.runner import run_demo
    summary = run_demo(root=sys.argv[1], max_videos=int(sys.argv[2]),
                       progress=lambda line: None)
    print(f"demo done: {summary.runs} runs, {summary.error_runs} failed", flush=True)
    sys.stdin.read()
""")
P95_QUERY = ("histogram_quantile(0.95, sum by (component, le) "
             "(mlobs_component_duration_seconds_bucket{job=\"mlobs-demo\"}))")
FIRST_SCRAPE_TIMEOUT_S = 120



@pytest.fixture
def prometheus_binary() -> str:
    return required_tool("prometheus")


@pytest.fixture
def demo(tmp_path):
    """The demo process: (its /metrics port, its MLOBS_ROOT), serving after the demo."""
    root, port = tmp_path / "mlobs-root", free_port()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("MLOBS_", "PROMETHEUS_"))}
    env.update({"MLOBS_ROOT": str(root), "MLOBS_SINKS": "manifest,warehouse,prometheus",
                "MLOBS_PROMETHEUS_PORT": str(port)})
    process = subprocess.Popen([sys.executable, "-c", DEMO_THEN_SERVE, str(root), "3"],
                               env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("demo done"), process.stderr.read() if not line else line
        assert line.strip().endswith(" 0 failed"), line
        yield port, root
    finally:
        process.stdin.close()
        stop(process)


@pytest.fixture
def prometheus(prometheus_binary, demo, tmp_path):
    """A Prometheus server scraping the demo process every second: its base URL."""
    demo_port, _ = demo
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(textwrap.dedent(f"""
        global:
          scrape_interval: 1s
          evaluation_interval: 1s
        scrape_configs:
          - job_name: mlobs-demo
            static_configs:
              - targets: ["127.0.0.1:{demo_port}"]
    """))
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [prometheus_binary, f"--config.file={config}",
         f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)
        log.close()


def demo_components(root: Path) -> set[str]:
    """The components the demo recorded, from its run manifests."""
    manifests = list((root / "runs").rglob("manifest.json"))
    assert manifests
    return {c["component"] for path in manifests
            for c in json.loads(path.read_text())["components"]}


def query(base_url: str, promql: str) -> list[dict]:
    url = f"{base_url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    with urllib.request.urlopen(url, timeout=5) as answer:
        body = json.load(answer)
    assert body["status"] == "success", body
    return body["data"]["result"]


def test_prometheus_answers_p95_durations_for_every_demo_component(demo, prometheus,
                                                                   tmp_path):
    _, root = demo
    expected = demo_components(root)
    assert len(expected) >= 5
    deadline = time.monotonic() + FIRST_SCRAPE_TIMEOUT_S
    p95: dict[str, float] = {}
    while time.monotonic() < deadline:
        try:
            p95 = {r["metric"]["component"]: float(r["value"][1])
                   for r in query(prometheus, P95_QUERY)}
        except (urllib.error.URLError, ConnectionError):
            pass  # the server is still starting
        if expected <= p95.keys():
            break
        time.sleep(1)
    log = (tmp_path / "prometheus.log").read_text(errors="replace")[-3000:]
    assert expected <= p95.keys(), f"missing {expected - p95.keys()}; log:\n{log}"
    for component in expected:
        assert math.isfinite(p95[component]) and 0 <= p95[component] <= 3600, \
            (component, p95[component])
    # the scrape itself is healthy and the counts add up to the manifests'
    [up] = query(prometheus, 'up{job="mlobs-demo"}')
    assert up["value"][1] == "1"
    manifests = [json.loads(p.read_text()) for p in (root / "runs").rglob("manifest.json")]
    runs = query(prometheus, 'sum(mlobs_runs_total{job="mlobs-demo"})')
    assert float(runs[0]["value"][1]) == len(manifests)
    invocations = query(prometheus, 'sum(mlobs_component_runs_total{job="mlobs-demo"})')
    assert float(invocations[0]["value"][1]) == sum(len(m["components"]) for m in manifests)
