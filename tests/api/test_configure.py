"""Settings precedence (arguments > MLOBS_* > defaults), and fork safety."""

import multiprocessing
import os
from pathlib import Path

import pytest

import mlobs
from mlobs.core.config import settings_from_env
from mlobs.core.manifest import read_manifest


def test_embedded_defaults(monkeypatch, tmp_path):
    for name in ("MLOBS_ROOT", "MLOBS_DB_URL", "MLOBS_SINKS", "MLOBS_SAMPLE_INTERVAL_MS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    settings = settings_from_env()
    assert settings.root == tmp_path / "mlobs-data"
    assert settings.db_url == f"sqlite:///{tmp_path / 'mlobs-data' / 'warehouse.db'}"
    assert settings.sinks == ("manifest", "warehouse") and settings.db_is_embedded_default


def test_environment_then_arguments(monkeypatch, tmp_path):
    monkeypatch.setenv("MLOBS_ROOT", str(tmp_path / "env-root"))
    monkeypatch.setenv("MLOBS_SINKS", "manifest")
    monkeypatch.setenv("MLOBS_SAMPLE_INTERVAL_MS", "2")
    settings = settings_from_env()
    assert settings.root == tmp_path / "env-root" and settings.sinks == ("manifest",)
    assert settings.sample_interval_ms == 2.0
    configured = mlobs.configure(root=tmp_path / "arg-root", sinks=[])
    assert configured.root == tmp_path / "arg-root" and configured.sinks == ()
    assert configured.db_url.endswith("arg-root/warehouse.db")  # the warehouse follows root
    monkeypatch.setenv("MLOBS_DB_URL", "postgresql+psycopg://postgres@127.0.0.1/test")
    assert mlobs.configure(root=tmp_path).db_url.startswith("postgresql")
    assert not mlobs.configure(sinks=[]).db_is_embedded_default


@pytest.mark.parametrize("name, value, message", [
    ("MLOBS_SINKS", "manifest,kafka", "unknown sink"),
    ("MLOBS_SAMPLE_INTERVAL_MS", "fast", "MLOBS_SAMPLE_INTERVAL_MS"),
])
def test_bad_environment_values_are_named(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(mlobs.ConfigError, match=message):
        settings_from_env()


@pytest.mark.parametrize("db_url, message", [
    ("warehouse.db", "invalid warehouse URL"),
    ("mysql://mlobs@db/mlobs", "unsupported warehouse URL"),
])
def test_a_warehouse_url_mlobs_cannot_use_is_a_config_error(monkeypatch, tmp_path, db_url,
                                                            message):
    """Not an outage to spool through: such a database can never answer."""
    with pytest.raises(mlobs.ConfigError, match=message):
        mlobs.configure(root=tmp_path, db_url=db_url)
    monkeypatch.setenv("MLOBS_DB_URL", db_url)
    monkeypatch.setenv("MLOBS_ROOT", str(tmp_path))
    mlobs.recording.recorder.set_recorder(None)  # the next run builds its sinks from the environment
    with pytest.raises(mlobs.ConfigError, match=message):
        mlobs.run("youtube", "abc")
    assert not (tmp_path / "spool").exists()
    mlobs.configure(root=tmp_path, db_url=f"sqlite:///{tmp_path / 'w.db'}")  # still usable


def test_configure_refuses_while_a_run_is_open(tmp_path):
    mlobs.configure(root=tmp_path, sinks=["manifest"])
    with mlobs.run("youtube", "abc"):
        with pytest.raises(mlobs.ConfigError, match="run is open"):
            mlobs.configure(root=tmp_path)


def test_disabled_records_nothing_but_keeps_the_status_rules(tmp_path):
    mlobs.configure(root=tmp_path, disabled=True)
    with mlobs.run("youtube", "abc") as run:
        with run.component("asr"):
            raise mlobs.Empty("no_speech")
    assert run.status == "ok" and not (tmp_path / "runs").exists()


def _child_pipeline(root: str, queue) -> None:
    with mlobs.run("youtube", f"child-{os.getpid()}") as run:
        with run.component("asr"):
            pass
    queue.put(str(run.manifest_path))


def test_a_forked_worker_records_its_own_runs(tmp_path):
    mlobs.configure(root=tmp_path, sinks=["manifest"])
    with mlobs.run("youtube", "parent") as parent:  # sink threads are running before the fork
        with parent.component("warmup"):
            pass
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child_pipeline, args=(str(tmp_path), queue))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    run, components = read_manifest(Path(queue.get(timeout=5)))
    assert run.status == "ok" and [c.component for c in components] == ["asr"]
    assert read_manifest(parent.manifest_path)[0].status == "ok"


def _child_in_inherited_run(queue) -> None:
    @mlobs.component("in_child")
    def step():
        return os.getpid()

    step()
    queue.put(mlobs.current_run() is None)


def test_a_process_forked_inside_a_run_does_not_write_into_it(tmp_path):
    mlobs.configure(root=tmp_path, sinks=["manifest"])
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    with mlobs.run("youtube", "parent") as run:
        child = ctx.Process(target=_child_in_inherited_run, args=(queue,))
        child.start()
        child.join(30)
    assert child.exitcode == 0 and queue.get(timeout=5) is True
    assert [c.component for c in read_manifest(run.manifest_path)[1]] == []
