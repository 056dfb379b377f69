"""Environment capture for the run record: interpreter, OS, host, package versions, GPUs.

Process facts are computed once per process (package metadata lookups take milliseconds)
and copied into every run; the seed, when given to ``mlobs.run``, is added per run.

The ``gpu`` section is computed when a run starts, because the program may import torch or
initialize CUDA after importing mlobs; it is cached per state (process, torch imported,
CUDA initialized, onnxruntime imported), so an unchanged state costs a few lookups. It
never imports torch or onnxruntime and never initializes CUDA (see
:mod:`mlobs.probes.gpu`): GPUs come from torch once CUDA is initialized, else from NVML.

Nothing here raises: a fact that cannot be read is left out (logged at debug level), and
everything recorded is JSON-serializable.
"""

from __future__ import annotations

import copy
import functools
import logging
import os
import platform
import socket
import sys
from collections.abc import Callable
from typing import Any

from mlobs.probes import gpu

log = logging.getLogger("mlobs")

#: distributions whose versions are recorded when installed.
TRACKED_PACKAGES = ("mlobs", "numpy", "scipy", "scikit-learn", "torch", "transformers",
                    "onnxruntime", "onnxruntime-gpu", "tensorrt", "tritonclient",
                    "tensorflow", "jax", "vllm", "nvidia-ml-py", "sqlalchemy")


def _fact(label: str, read: Callable[[], Any]) -> Any:
    """``read()``, or None (logged) when it fails."""
    try:
        return read()
    except Exception as exc:
        log.debug("mlobs: environment fact %s not read: %r", label, exc)
        return None


def _package_versions() -> dict[str, str]:
    from importlib import metadata  # once per process; its import alone takes ~15 ms

    packages = {}
    for name in TRACKED_PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        except Exception as exc:  # a broken installation's metadata
            log.debug("mlobs: version of %s not read: %r", name, exc)
    return packages


def _mlobs_version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("mlobs")
    except Exception:
        # Not installed (a source checkout on sys.path): the package's own attribute.
        return getattr(sys.modules.get("mlobs"), "__version__", None)


@functools.lru_cache(maxsize=1)
def process_environment() -> dict[str, Any]:
    """Facts about this process that do not change while it runs."""
    return {
        "mlobs_version": _mlobs_version(),
        "python": _fact("python", platform.python_version),
        "python_implementation": _fact("python_implementation",
                                       platform.python_implementation),
        "platform": _fact("platform", platform.platform),
        "machine": _fact("machine", platform.machine),
        "host": _fact("host", socket.gethostname),
        "pid": os.getpid(),
        "cpu_count": os.cpu_count(),
        "argv0": os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else None,
        "packages": _package_versions(),
    }


# (state key, section) of the last gpu_environment(); see its docstring.
_gpu_cache: tuple[tuple[Any, ...], dict[str, Any]] | None = None


def gpu_environment() -> dict[str, Any]:
    """The ``gpu`` section: what torch, the driver and onnxruntime say about GPUs now.

    Keys, each present only when known: ``torch_version``, ``torch_cuda_version``
    (``torch.version.cuda``; None for a CPU build), ``torch_hip_version``,
    ``cudnn_version`` (``torch.backends.cudnn.version()``, e.g. 90100),
    ``cuda_initialized`` (torch imported), ``driver_version`` and
    ``cuda_driver_version`` (NVML), ``gpus`` (list of ``index``, ``name``,
    ``total_memory_bytes``, ``compute_capability``) with ``gpus_source`` (``"torch"``
    once CUDA is initialized, else ``"nvml"``), ``onnxruntime_providers`` (when
    onnxruntime is imported). ``cuda_available`` is always present: True or False, or
    None when it could only be learnt by initializing CUDA (torch with CUDA, CUDA not
    initialized yet, NVML not available).

    Returns:
        A new dict each call. Never raises.
    """
    global _gpu_cache
    try:
        modules = sys.modules
        torch, ort = modules.get("torch"), modules.get("onnxruntime")
        initialized = _cuda_initialized(torch)
        pid = os.getpid()
        cached = _gpu_cache
        # Modules compared by identity (holding them keeps an id() from being reused).
        if (cached is None or cached[0][0] != pid or cached[0][1] is not torch
                or cached[0][2] is not initialized or cached[0][3] is not ort):
            cached = _gpu_cache = ((pid, torch, initialized, ort),
                                   _gpu_section(torch, initialized, ort))
        return copy.deepcopy(cached[1])
    except Exception as exc:
        log.debug("mlobs: GPU environment not read: %r", exc)
        return {"cuda_available": None}


def _cuda_initialized(torch: Any) -> bool:
    if torch is None:
        return False
    return bool(_fact("cuda_initialized", lambda: torch.cuda.is_initialized()))


def _gpu_section(torch: Any, initialized: bool, ort: Any) -> dict[str, Any]:
    section: dict[str, Any] = {"cuda_available": None}
    if torch is not None:
        section.update(_torch_facts(torch, initialized))
    reader = gpu.open_nvml()
    if reader is not None:
        section.update(reader.driver())
        if "gpus" not in section:
            section["gpus"], section["gpus_source"] = reader.devices(), "nvml"
        if section["cuda_available"] is None:
            # NVML respects CUDA_VISIBLE_DEVICES like torch's own NVML-based check.
            section["cuda_available"] = reader.device_count > 0
    if ort is not None:
        providers = _fact("onnxruntime_providers",
                          lambda: [str(p) for p in ort.get_available_providers()])
        if providers is not None:
            section["onnxruntime_providers"] = providers
    return section


def _torch_facts(torch: Any, initialized: bool) -> dict[str, Any]:
    facts: dict[str, Any] = {"cuda_initialized": initialized}
    version = _fact("torch_version", lambda: str(torch.__version__))
    if version is not None:
        facts["torch_version"] = version
    cuda_version = _fact("torch_cuda_version", lambda: torch.version.cuda)
    hip_version = _fact("torch_hip_version", lambda: torch.version.hip)
    facts["torch_cuda_version"] = None if cuda_version is None else str(cuda_version)
    if hip_version is not None:
        facts["torch_hip_version"] = str(hip_version)
    # Only the already-imported submodule: no import happens here.
    cudnn = sys.modules.get("torch.backends.cudnn")
    if cudnn is not None:
        cudnn_version = _fact("cudnn_version", cudnn.version)
        if cudnn_version is not None:
            facts["cudnn_version"] = int(cudnn_version)
    if initialized:
        facts["cuda_available"] = True
        gpus = _fact("gpus", lambda: _torch_devices(torch.cuda))
        if gpus is not None:
            facts["gpus"], facts["gpus_source"] = gpus, "torch"
    elif cuda_version is None and hip_version is None:
        facts["cuda_available"] = False  # a CPU build of torch
    return facts


def _torch_devices(cuda: Any) -> list[dict[str, Any]]:
    devices = []
    for index in range(cuda.device_count()):
        props = cuda.get_device_properties(index)
        devices.append({"index": index, "name": str(props.name),
                        "total_memory_bytes": int(props.total_memory),
                        "compute_capability": f"{props.major}.{props.minor}"})
    return devices


def run_environment(seed: int | None) -> dict[str, Any]:
    """The environment recorded on one run (never raises)."""
    try:
        env = dict(process_environment())
        env["packages"] = dict(env["packages"])
    except Exception as exc:
        log.debug("mlobs: process environment not read: %r", exc)
        env = {}
    env["pid"] = os.getpid()  # may differ from the cached value after a fork
    env["gpu"] = gpu_environment()
    if seed is not None:
        env["seed"] = seed
    return env
