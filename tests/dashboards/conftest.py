"""One warehouse on the local PostgreSQL filled with the demo and an incidents pipeline
(``support/dashboard_data.py``), and a real Prometheus scraping the process that filled
it, shared by every query test of the dashboards.

PostgreSQL missing: the tests are skipped, except in CI (CI=true), where they fail.
Prometheus missing (Debian's ``prometheus``, installed by ``make test``): the same for the
PromQL tests; the SQL tests still run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import text

from support.ports import free_port
from support.processes import stop

SCRIPT = Path(__file__).resolve().parents[1] / "support" / "dashboard_data.py"
#: the demo twice plus the incidents take seconds; a loaded CI machine gets more.
READY_TIMEOUT_S = 300
FIRST_SCRAPE_TIMEOUT_S = 60
#: Prometheus's scrape interval in these tests (test_queries.py assumes it).
SCRAPE_INTERVAL_S = 1


@dataclass
class DashboardData:
    db_url: str
    started_at: datetime
    summary: dict
    #: base URL of the Prometheus server, or None when it is not installed.
    prometheus_url: str | None
    prometheus_log: Path


def _start_prometheus(binary: str, target_port: int, tmp: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    config = tmp / "prometheus.yml"
    config.write_text(textwrap.dedent(f"""
        global:
          scrape_interval: {SCRAPE_INTERVAL_S}s
          evaluation_interval: {SCRAPE_INTERVAL_S}s
        scrape_configs:
          - job_name: mlobs
            static_configs:
              - targets: ["127.0.0.1:{target_port}"]
    """))
    log = (tmp / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
    log.close()
    return process, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def dashboard_data(pg_admin_engine, tmp_path_factory) -> DashboardData:
    """The filled warehouse and the Prometheus scraping its filler, for the session."""
    tmp = tmp_path_factory.mktemp("dashboards")
    name = f"mlobs_dash_{uuid.uuid4().hex[:12]}"
    with pg_admin_engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    db_url = pg_admin_engine.url.set(database=name).render_as_string(hide_password=False)
    metrics_port = free_port()
    processes = []
    prometheus_url = None
    binary = shutil.which("prometheus")
    command = [sys.executable, str(SCRIPT), "--root", str(tmp / "root"), "--db-url", db_url]
    if binary is not None:
        server, prometheus_url = _start_prometheus(binary, metrics_port, tmp)
        processes.append(server)
        command += ["--metrics-port", str(metrics_port)]
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("MLOBS_", "PROMETHEUS_"))}
    started_at = datetime.now(timezone.utc)
    log = tmp / "filler.log"
    filler = subprocess.Popen(command, env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=log.open("wb"), text=True)
    processes.append(filler)
    try:
        if prometheus_url is not None:
            # the runs start once Prometheus has scraped the zero state, so the rates
            # over them are not all zero
            assert json.loads(_line(filler, log)) == {"serving": True}
            _await_scrape(prometheus_url, tmp / "prometheus.log")
            filler.stdin.write("go\n")
            filler.stdin.flush()
        summary = json.loads(_line(filler, log))
        yield DashboardData(db_url, started_at, summary, prometheus_url,
                            tmp / "prometheus.log")
    finally:
        if filler.stdin:
            filler.stdin.close()
        for process in reversed(processes):
            stop(process)
        with pg_admin_engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _await_scrape(prometheus_url: str, log: Path) -> None:
    """Until Prometheus reports the mlobs target up (its first scrape succeeded)."""
    query = urllib.parse.urlencode({"query": 'up{job="mlobs"} == 1'})
    deadline = time.monotonic() + FIRST_SCRAPE_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{prometheus_url}/api/v1/query?{query}",
                                        timeout=5) as answer:
                if json.load(answer)["data"]["result"]:
                    return
        except OSError:
            pass  # the server is still starting
        time.sleep(0.5)
    tail = log.read_text(errors="replace")[-3000:]
    raise AssertionError(f"Prometheus did not scrape the filler within "
                         f"{FIRST_SCRAPE_TIMEOUT_S} s:\n{tail}")


def _line(filler: subprocess.Popen, log: Path) -> str:
    """The script's next stdout line, read on a thread so a hung script times out."""
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(filler.stdout.readline()),
                              daemon=True)
    reader.start()
    reader.join(READY_TIMEOUT_S)
    if lines and lines[0].endswith("\n"):
        return lines[0]
    raise AssertionError(f"the dashboard data script printed no line within "
                         f"{READY_TIMEOUT_S} s (exit {filler.poll()}); its log:\n"
                         f"{log.read_text(errors='replace')[-4000:]}")
