"""prometheus_client's multiprocess mode: several processes record, one exposition sums them.

Each process is started with ``PROMETHEUS_MULTIPROC_DIR`` set (as the prometheus_client
documentation requires: before the process imports the client) and ``MLOBS_SINKS``
naming the sink; one of them also serves ``/metrics``.
"""

import os
import subprocess
import sys
import textwrap
import urllib.request

import pytest

pytest.importorskip("mlobs_prometheus")

from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402
from prometheus_client.multiprocess import MultiProcessCollector  # noqa: E402

from support.exposition import sample_sum  # noqa: E402
from support.ports import free_port  # noqa: E402

RECORDER = textwrap.dedent("""
    import sys
    import mlobs
    components, serve = int(sys.argv[1]), sys.argv[2] == "serve"
    with mlobs.run("youtube", "video-" + sys.argv[1]) as run:
        for _ in range(components):
            with run.component("asr", device="cuda:0"):
                pass
        with run.component("ocr", required=False):
            raise RuntimeError("boom")
    mlobs.flush()
    if serve:
        print("ready", flush=True)
        sys.stdin.read()  # serve until the test closes stdin
""")


def env_for(tmp_path, multiproc_dir, index: int, port: int | None = None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("MLOBS_", "PROMETHEUS_"))}
    env.update({"PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir),
                "MLOBS_ROOT": str(tmp_path / f"root-{index}"), "MLOBS_SINKS": "prometheus"})
    if port is not None:
        env["MLOBS_PROMETHEUS_PORT"] = str(port)
    return env


def test_the_exposition_sums_every_process(tmp_path):
    multiproc_dir = tmp_path / "prometheus-multiproc"
    multiproc_dir.mkdir()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", RECORDER, "2", "serve"],
                              env=env_for(tmp_path, multiproc_dir, 0, port),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready", server.stderr.read()
        # two more processes at once, each with its own files; one also asks for the port
        # (in use: in multiprocess mode that is expected and not an error)
        workers = [subprocess.Popen([sys.executable, "-c", RECORDER, str(n), "record"],
                                    env=env_for(tmp_path, multiproc_dir, n,
                                                port if n == 3 else None),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                   for n in (3, 5)]
        for worker in workers:
            _, err = worker.communicate(timeout=120)
            assert worker.returncode == 0, err
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            served = answer.read().decode()
    finally:
        server.stdin.close()
        server.wait(timeout=30)
    assert server.returncode == 0, server.stderr.read()

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(multiproc_dir))
    collected = generate_latest(registry).decode()
    for text in (served, collected):
        assert sample_sum(text, "mlobs_component_runs_total", component="asr",
                          status="ok") == 2 + 3 + 5
        assert sample_sum(text, "mlobs_component_duration_seconds_count",
                          component="asr", device="cuda") == 10
        assert sample_sum(text, "mlobs_component_duration_seconds_bucket",
                          component="asr", le="+Inf") == 10
        assert sample_sum(text, "mlobs_component_runs_total", component="ocr",
                          status="error") == 3
        assert sample_sum(text, "mlobs_runs_total", status="ok") == 3
        assert sample_sum(text, "mlobs_runs_total", status="error") == 0
        assert sample_sum(text, "mlobs_component_peak_memory_bytes_count",
                          component="asr", kind="rss") == 10
    # one file per process and metric type, no pid label in the exposition
    assert len({p.name.rsplit("_", 1)[1] for p in multiproc_dir.glob("*.db")}) == 3
    assert "pid=" not in served
