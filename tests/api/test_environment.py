"""The environment recorded on runs (mlobs.hooks.environment)."""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import subprocess
import sys
import textwrap
from importlib import metadata
from types import SimpleNamespace

import pytest

import mlobs
from mlobs.hooks import environment
from mlobs.hooks.environment import gpu_environment, process_environment, run_environment
from mlobs.testing import capture

HAS_TORCH = importlib.util.find_spec("torch") is not None


def test_process_facts_are_recorded_once():
    env = process_environment()
    assert env["mlobs_version"] == metadata.version("mlobs")
    assert env["python"] == platform.python_version()
    assert env["packages"]["mlobs"] == metadata.version("mlobs")
    assert env["pid"] == os.getpid()
    assert process_environment() is env


def test_a_run_records_a_json_serializable_environment_with_its_seed():
    with capture() as rec:
        with mlobs.run("youtube", "abc", seed=1234):
            pass
    env = rec.runs[0].environment
    assert env["seed"] == 1234
    assert env["mlobs_version"] == metadata.version("mlobs")
    assert "cuda_available" in env["gpu"]
    assert json.loads(json.dumps(env, allow_nan=False)) == env
    # Each run gets its own copy: changing one does not change the next.
    env["packages"]["mlobs"] = env["gpu"]["changed"] = "x"
    again = run_environment(None)
    assert again["packages"]["mlobs"] != "x" and "changed" not in again["gpu"]
    assert "seed" not in again


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
def test_gpu_section_follows_a_later_torch_import(tmp_path):
    code = textwrap.dedent("""
        import json, sys
        from mlobs.hooks.environment import run_environment
        before = run_environment(None)["gpu"]
        assert "torch" not in sys.modules, "environment capture imported torch"
        import torch
        after = run_environment(None)["gpu"]
        print(json.dumps({"before": before, "after": after,
                          "initialized": torch.cuda.is_initialized(),
                          "version": torch.__version__, "cuda": torch.version.cuda,
                          "hip": torch.version.hip}))
    """)
    env = dict(os.environ, MLOBS_ROOT=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert "torch_version" not in seen["before"]
    after = seen["after"]
    assert after["torch_version"] == seen["version"]
    assert after["torch_cuda_version"] == seen["cuda"]
    assert seen["initialized"] is False  # capturing never initializes CUDA
    assert after["cuda_initialized"] is False
    if seen["cuda"] is None and seen["hip"] is None:
        assert after["cuda_available"] is False


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
def test_gpu_section_with_torch_imported():
    import torch

    initialized = torch.cuda.is_initialized()
    section = run_environment(None)["gpu"]
    assert section["torch_version"] == torch.__version__
    assert section["torch_cuda_version"] == torch.version.cuda
    assert torch.cuda.is_initialized() == initialized
    if torch.version.cuda is None and torch.version.hip is None:
        assert section["cuda_available"] is False
        assert "gpus" not in section or section["gpus_source"] == "nvml"


def test_onnxruntime_providers_when_it_is_imported(monkeypatch):
    # A stand-in module (onnxruntime is not a dependency): the code only reads
    # get_available_providers() from an already imported module.
    ort = SimpleNamespace(get_available_providers=lambda: ["CUDAExecutionProvider",
                                                           "CPUExecutionProvider"])
    monkeypatch.setitem(sys.modules, "onnxruntime", ort)
    assert gpu_environment()["onnxruntime_providers"] == ["CUDAExecutionProvider",
                                                          "CPUExecutionProvider"]


def test_capture_failures_never_break_a_run(monkeypatch):
    def broken():
        raise RuntimeError("provider registry exploded")

    monkeypatch.setitem(sys.modules, "onnxruntime", SimpleNamespace(
        get_available_providers=broken))
    section = gpu_environment()
    assert "onnxruntime_providers" not in section and "cuda_available" in section

    def failing_process_environment():
        raise OSError("no hostname")

    monkeypatch.setattr(environment, "process_environment", failing_process_environment)
    env = run_environment(7)
    assert env["seed"] == 7 and env["pid"] == os.getpid() and "gpu" in env
    json.dumps(env, allow_nan=False)


def test_gpu_section_with_cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    torch.cuda.init()
    section = run_environment(None)["gpu"]
    assert section["cuda_available"] is True and section["cuda_initialized"] is True
    assert section["gpus_source"] == "torch"
    assert len(section["gpus"]) == torch.cuda.device_count()
    first = section["gpus"][0]
    assert first["name"] == torch.cuda.get_device_name(0)
    assert first["total_memory_bytes"] == torch.cuda.get_device_properties(0).total_memory
    major, minor = torch.cuda.get_device_capability(0)
    assert first["compute_capability"] == f"{major}.{minor}"
    if torch.version.cuda is not None and torch.backends.cudnn.is_available():
        assert section["cudnn_version"] == torch.backends.cudnn.version()
    assert json.loads(json.dumps(section, allow_nan=False)) == section
