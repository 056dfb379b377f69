"""The ``prometheus`` exporter's settings: enabling it by name, its environment variables
and the errors bad values give."""

import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("mlobs_prometheus")

import mlobs  # noqa: E402
from mlobs.core.config import plugin_sink_names  # noqa: E402
from mlobs.core.config import settings_from_env as mlobs_settings_from_env  # noqa: E402
from mlobs.recording.plugins import create_plugin_sink  # noqa: E402
from mlobs_prometheus import PrometheusSettings, PrometheusSink, settings_from_env  # noqa: E402


def test_defaults():
    assert settings_from_env({}) == PrometheusSettings(
        port=None, addr="127.0.0.1", pushgateway=None, job="mlobs", grouping_key={},
        push_timeout_s=5.0, max_label_values=200, multiprocess_dir=None)


def test_every_variable_is_read(tmp_path):
    got = settings_from_env({
        "MLOBS_PROMETHEUS_PORT": "9464", "MLOBS_PROMETHEUS_ADDR": "0.0.0.0",
        "MLOBS_PROMETHEUS_PUSHGATEWAY": "http://gateway:9091",
        "MLOBS_PROMETHEUS_JOB": "nightly-text", "MLOBS_PROMETHEUS_PUSH_TIMEOUT_S": "2.5",
        "MLOBS_PROMETHEUS_GROUPING_KEY": "pipeline=text, cluster=eu-1",
        "MLOBS_PROMETHEUS_MAX_LABEL_VALUES": "50",
        "MLOBS_PROMETHEUS_DURATION_BUCKETS_S": "0.001, 0.01,0.1,1",
        "MLOBS_PROMETHEUS_MEMORY_BUCKETS_BYTES": "1e6,1e9"})
    assert got == PrometheusSettings(
        port=9464, addr="0.0.0.0", pushgateway="http://gateway:9091", job="nightly-text",
        grouping_key={"pipeline": "text", "cluster": "eu-1"}, push_timeout_s=2.5,
        max_label_values=50, duration_buckets_s=(0.001, 0.01, 0.1, 1.0),
        memory_buckets_bytes=(1e6, 1e9))
    assert settings_from_env({"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}).multiprocess_dir \
        == tmp_path


@pytest.mark.parametrize("env, message", [
    ({"MLOBS_PROMETHEUS_PORT": "http"}, "MLOBS_PROMETHEUS_PORT must be an integer"),
    ({"MLOBS_PROMETHEUS_PORT": "70000"}, "MLOBS_PROMETHEUS_PORT must be between 0 and 65535"),
    ({"MLOBS_PROMETHEUS_PUSHGATEWAY": "ftp://gateway"}, "must be an http"),
    ({"MLOBS_PROMETHEUS_PUSHGATEWAY": "http://gateway:port"}, "invalid port"),
    ({"MLOBS_PROMETHEUS_JOB": "my job"}, "MLOBS_PROMETHEUS_JOB must be"),
    ({"MLOBS_PROMETHEUS_GROUPING_KEY": "run_id"}, "name=value pairs"),
    ({"MLOBS_PROMETHEUS_GROUPING_KEY": "job=x"}, "other than job"),
    ({"MLOBS_PROMETHEUS_GROUPING_KEY": "video=a/b"}, "name=value pairs"),
    ({"MLOBS_PROMETHEUS_PUSH_TIMEOUT_S": "0"}, "must be > 0"),
    ({"MLOBS_PROMETHEUS_MAX_LABEL_VALUES": "0"}, "between 1 and"),
    ({"PROMETHEUS_MULTIPROC_DIR": "/nonexistent/mlobs"}, "is not a directory"),
    ({"MLOBS_PROMETHEUS_DURATION_BUCKETS_S": "0.1,1ms"},
     "MLOBS_PROMETHEUS_DURATION_BUCKETS_S must be numbers separated by commas, got '1ms'"),
    ({"MLOBS_PROMETHEUS_DURATION_BUCKETS_S": "1,0.5"}, "must be strictly increasing"),
    ({"MLOBS_PROMETHEUS_DURATION_BUCKETS_S": "0,1"}, "positive finite bounds"),
    ({"MLOBS_PROMETHEUS_MEMORY_BUCKETS_BYTES": "1e6,inf"}, "\\+Inf is always added"),
])
def test_bad_values_are_refused_with_the_variable_named(env, message):
    with pytest.raises(mlobs.ConfigError, match=message):
        settings_from_env(env)


def test_the_pushgateway_cannot_be_used_in_multiprocess_mode(tmp_path):
    with pytest.raises(mlobs.ConfigError, match="does not push in multiprocess mode"):
        settings_from_env({"PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
                           "MLOBS_PROMETHEUS_PUSHGATEWAY": "http://gateway:9091"})


def test_the_entry_point_is_installed_and_errors_come_out_as_config_errors(monkeypatch):
    assert "prometheus" in plugin_sink_names()
    monkeypatch.setenv("MLOBS_PROMETHEUS_PORT", "nope")
    with pytest.raises(mlobs.ConfigError,
                       match=r"sink 'prometheus' from mlobs-prometheus could not be created: "
                             r"MLOBS_PROMETHEUS_PORT must be an integer"):
        create_plugin_sink("prometheus", mlobs_settings_from_env({}))


def test_multiprocess_mode_needs_the_variable_before_prometheus_client_is_imported(
        tmp_path, monkeypatch):
    # this test process imported prometheus_client without the variable
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    with pytest.raises(mlobs.ConfigError, match="set after prometheus_client was imported"):
        create_plugin_sink("prometheus", mlobs_settings_from_env({}))


def test_a_port_in_use_is_a_config_error():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        from prometheus_client import CollectorRegistry
        with pytest.raises(mlobs.ConfigError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            PrometheusSink(CollectorRegistry(), PrometheusSettings(port=port))


ENABLED_BY_NAME = textwrap.dedent("""
    import json, sys, urllib.request
    import mlobs
    from mlobs.recording.recorder import get_recorder
    from prometheus_client.parser import text_string_to_metric_families
    if sys.argv[2] == "configure":
        mlobs.configure(root=sys.argv[1], sinks=["manifest", "prometheus"])
    with mlobs.run("youtube", "abc") as run:
        for name in ("cleaning", "chunking", "chunking"):
            with run.component(name):
                pass
    mlobs.flush()
    sink = get_recorder().sink("prometheus")
    url = f"http://127.0.0.1:{sink.http_port}/metrics"
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    counts = {s.labels["component"]: s.value for f in text_string_to_metric_families(text)
              for s in f.samples
              if s.name == "mlobs_component_runs_total" and s.labels["status"] == "ok"}
    print(json.dumps(counts))
""")


@pytest.mark.parametrize("how", ["environment", "configure"])
def test_enabled_by_name_it_serves_the_pipeline_metrics(tmp_path, how):
    env = {"MLOBS_ROOT": str(tmp_path), "MLOBS_PROMETHEUS_PORT": "0",
           "PATH": "/usr/bin:/bin"}
    if how == "environment":
        env["MLOBS_SINKS"] = "manifest,warehouse,prometheus"
    done = subprocess.run([sys.executable, "-c", ENABLED_BY_NAME, str(tmp_path), how],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"cleaning": 1.0, "chunking": 2.0}
    assert list(Path(tmp_path, "runs").rglob("manifest.json"))
