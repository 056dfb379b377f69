"""GPU memory probes: per-component CUDA peaks (torch) and this process's GPU memory
(NVML); the helpers used around an out-of-memory retry are in :mod:`mlobs.probes.gpu_oom`.

What mlobs never does:

* import torch (or onnxruntime): torch is used only when ``sys.modules`` already holds it;
  ``pynvml`` (package ``nvidia-ml-py``, extra ``mlobs[gpu]``) is imported lazily by
  :func:`open_nvml`;
* initialize CUDA. ``torch.cuda.is_available()`` calls ``cuInit`` (which breaks CUDA in
  a later ``fork`` child unless ``PYTORCH_NVML_BASED_CUDA_CHECK=1``), and
  ``current_device()`` / ``mem_get_info()`` create a CUDA context. The probes therefore
  ask ``torch.cuda.is_initialized()`` and use torch's CUDA API only once the program
  itself has initialized CUDA. A torch build without CUDA or ROCm (``torch.version.cuda``
  and ``torch.version.hip`` both ``None``) is remembered per torch module object, so
  without torch or with a CPU build :func:`cuda_start` costs one dict lookup and one
  comparison; a CUDA build whose CUDA is not initialised (the usual Linux wheel on a
  machine without a GPU) costs an ``is_initialized()`` call and a set add/discard per
  component;

and every function here returns ``None`` / ``(None, None)`` / ``{}`` rather than raise
(the reason is logged at debug level on the ``mlobs`` logger).

Peak semantics (:func:`cuda_start` / :func:`cuda_end`). torch keeps one peak counter per
device, and resetting it for one component resets it for every other component on that
device. The probe resets a device's peak only when no other component is active on it
(a count of active components per device), so components overlapping on one device (nested,
or in threads) each get the peak since the start of the earliest component in their chain of
overlapping components: an over-estimate, never an under-estimate. A component that
starts before CUDA is initialized gets the peak since initialization (its own, when it
initialized CUDA itself); while such a component is active, no device is reset.
Resets made by the program itself (``torch.cuda.reset_peak_memory_stats``) are not seen.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any

log = logging.getLogger("mlobs")

#: where torch is looked up, never imported. Logic tests replace it with a dict holding a
#: fake torch; everything else leaves it alone.
_modules: Any = sys.modules

_NONE: tuple[None, None] = (None, None)

# The torch module object known to lack CUDA/ROCm: its components get no token.
_no_cuda_torch: Any = None

# Active components per CUDA device index (guarded by _lock), and the tokens of components
# started before CUDA was initialized: while any is active, no device is reset (a set:
# adding and discarding are atomic, so that path takes no lock).
_lock = threading.Lock()
_active_by_device: dict[int, int] = {}
_pending: set[CudaToken] = set()
# Bumped in a fork child: tokens from the parent no longer touch the counts.
_generation = 0

# device string -> -1 (the current CUDA device), n (cuda:n) or None (not a CUDA device).
_parsed_devices: dict[str, int | None] = {}
CURRENT_DEVICE = -1


def parse_device(device: Any) -> int | None:
    """``"cuda"`` → -1 (current device), ``"cuda:1"`` → 1, anything else → None."""
    if not isinstance(device, str):
        device = str(device)  # e.g. a torch.device
    try:
        return _parsed_devices[device]
    except KeyError:
        pass
    kind, _, index = device.strip().lower().partition(":")
    value: int | None = None
    if kind == "cuda":
        if not index:
            value = CURRENT_DEVICE
        elif index.isdigit():
            value = int(index)
    if len(_parsed_devices) < 256:  # bounded: device strings come from user code
        _parsed_devices[device] = value
    return value


class CudaToken:
    """What :func:`cuda_start` hands to :func:`cuda_end` (opaque to callers)."""

    __slots__ = ("cuda", "devices", "index", "generation", "allocated_at_start_bytes")

    def __init__(self, cuda: Any, devices: tuple[int, ...] | None, index: int | None,
                 allocated_at_start_bytes: int | None = 0) -> None:
        self.cuda = cuda        # torch.cuda; None once ended
        self.devices = devices  # counted device indices; None: CUDA was not initialized
        self.index = index      # the parsed device argument (see parse_device)
        self.generation = _generation
        self.allocated_at_start_bytes = allocated_at_start_bytes  # see _start


def cuda_start(device: str | None) -> CudaToken | None:
    """Start measuring CUDA peak memory for one component (caller's thread).

    Args:
        device: the component's device: ``"cuda:1"`` measures device 1, ``"cuda"`` the
            current device; ``None`` or a non-CUDA device (``"cpu"``) measures every
            device.

    Returns:
        A token for :func:`cuda_end`, or ``None`` when torch is not imported or has no
        CUDA (nothing to measure). When CUDA is not initialized yet the token notes it
        and nothing is initialized here. Never raises.

    Cost: without torch, or with a torch lacking CUDA, one dict lookup and a comparison
    (tens of nanoseconds); with CUDA initialized, a lock and one peak reset per device.
    """
    torch = _modules.get("torch")
    if torch is None or torch is _no_cuda_torch:
        return None
    return _start(torch, device)


def _start(torch: Any, device: str | None) -> CudaToken | None:
    global _no_cuda_torch
    try:
        cuda = torch.cuda
        index = None if device is None else parse_device(device)
        if not cuda.is_initialized():
            version = torch.version
            if version.cuda is None and version.hip is None:
                _no_cuda_torch = torch
                return None
            token = CudaToken(cuda, None, index)
            _pending.add(token)
            return token
        if index is None:
            devices = tuple(range(cuda.device_count()))
        elif index == CURRENT_DEVICE:
            devices = (cuda.current_device(),)
        elif index < cuda.device_count():
            devices = (index,)
        else:
            return None  # no such device: the component itself will fail on it
        reset = 0
        with _lock:
            for i in devices:
                active = _active_by_device.get(i, 0)
                if active == 0 and not _pending:
                    try:
                        cuda.reset_peak_memory_stats(i)
                        reset += 1
                    except Exception as exc:  # keep counting: cuda_end will decrement
                        log.debug("mlobs: reset_peak_memory_stats(%s) failed: %r", i, exc)
                _active_by_device[i] = active + 1
        # The start (torch's allocated bytes) only where every peak was reset here: else the
        # peak may be a neighbour's, and so would an increase. Never raises: the token must
        # be returned to undo the counting.
        allocated = _allocated(cuda, devices) if reset == len(devices) else None
        return CudaToken(cuda, devices, index, allocated)
    except Exception as exc:
        log.debug("mlobs: CUDA peak measurement not started: %r", exc)
        return None


def _allocated(cuda: Any, devices: tuple[int, ...]) -> int | None:
    try:
        return sum(cuda.memory_allocated(i) for i in devices)
    except Exception as exc:
        log.debug("mlobs: memory_allocated at the start not read: %r", exc)
        return None


def cuda_end(token: CudaToken | None) -> tuple[int | None, int | None]:
    """End the measurement started by :func:`cuda_start` (caller's thread).

    Returns:
        ``(peak_gpu_allocated_bytes, peak_gpu_reserved_bytes)``: torch's
        ``max_memory_allocated`` / ``max_memory_reserved`` summed over the token's
        devices (for a single device, exactly torch's own numbers); ``(None, None)``
        for a ``None`` token, a token already ended, when CUDA was never initialized,
        or on any error. Never raises.
    """
    if token is None or token.cuda is None:
        return _NONE
    cuda, devices, token.cuda = token.cuda, token.devices, None
    current = token.generation == _generation
    try:
        if devices is None:
            try:
                if not cuda.is_initialized():
                    return _NONE
                index = token.index
                if index is None:
                    devices = tuple(range(cuda.device_count()))
                else:
                    devices = (cuda.current_device() if index == CURRENT_DEVICE else index,)
                return _read_peaks(cuda, devices)
            finally:
                _pending.discard(token)
        try:
            return _read_peaks(cuda, devices)
        finally:
            # After reading: while this component counts as active nobody resets.
            if current:
                with _lock:
                    for i in devices:
                        active = _active_by_device.get(i, 0) - 1
                        if active > 0:
                            _active_by_device[i] = active
                        else:
                            _active_by_device.pop(i, None)
    except Exception as exc:
        log.debug("mlobs: CUDA peak memory not read: %r", exc)
        return _NONE


def _read_peaks(cuda: Any, devices: tuple[int, ...]) -> tuple[int | None, int | None]:
    if not cuda.is_initialized():  # e.g. a fork child of a CUDA parent: stats read as 0
        return _NONE
    allocated_bytes = reserved_bytes = 0
    for i in devices:
        # One stats call per device; these are the values max_memory_allocated and
        # max_memory_reserved return (they flatten and sort the same dict, twice).
        stats = cuda.memory_stats_as_nested_dict(i)
        allocated_bytes += stats.get("allocated_bytes", {}).get("all", {}).get("peak", 0)
        reserved_bytes += stats.get("reserved_bytes", {}).get("all", {}).get("peak", 0)
    return allocated_bytes, reserved_bytes


def initialized_cuda() -> Any:
    """torch.cuda when torch is imported and CUDA initialized, else None."""
    torch = _modules.get("torch")
    if torch is None or torch is _no_cuda_torch:
        return None
    cuda = torch.cuda
    return cuda if cuda.is_initialized() else None


# -- NVML -----------------------------------------------------------------------------------

def _visible_handles(nvml: Any, visible: str | None) -> list[Any]:
    """NVML handles of the devices CUDA would show, in CUDA's order.

    ``visible`` is ``CUDA_VISIBLE_DEVICES``: integer indices and (prefixes of) ``GPU-``
    UUIDs are honoured like CUDA does (an invalid entry ends the list; empty hides every
    device); other forms (``MIG-...``) fall back to every device. Integer indices are
    taken in NVML's PCI bus order, which is CUDA's order when
    ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` or the GPUs are all alike.
    """
    handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
    if visible is None:
        return handles
    chosen: list[Any] = []
    uuids: list[str] | None = None
    for entry in visible.split(","):
        entry = entry.strip()
        if entry.lstrip("+-").isdigit():
            if not 0 <= int(entry) < len(handles):
                break  # "-1" is the usual way to hide every device
            handle = handles[int(entry)]
        elif entry.startswith("GPU-"):
            if uuids is None:
                uuids = [str(nvml.nvmlDeviceGetUUID(h)) for h in handles]
            matches = [h for h, uuid in zip(handles, uuids) if uuid.startswith(entry)]
            if len(matches) != 1:
                break
            handle = matches[0]
        elif not entry:
            break  # "" hides every device
        else:
            log.debug("mlobs: CUDA_VISIBLE_DEVICES entry %r not understood; NVML reads "
                      "every device", entry)
            return handles
        if handle not in chosen:
            chosen.append(handle)
    return chosen


class NvmlReader:
    """This process's view of the GPUs through NVML (no CUDA context, no torch).

    Args:
        nvml: the initialized ``pynvml`` module.
        handles: the visible devices, in CUDA's order (index ``i`` here is ``cuda:i``).
    """

    def __init__(self, nvml: Any, handles: list[Any]) -> None:
        self._nvml = nvml
        self.handles = handles

    @property
    def device_count(self) -> int:
        """Number of visible devices."""
        return len(self.handles)

    def process_used_bytes(self) -> int | None:
        """GPU memory used by this process, in bytes, summed over the visible devices.

        Reads NVML's compute and graphics process lists of every visible device and
        keeps the entries whose pid is this process's (per device, the larger of the
        two lists' values per MIG instance, so a process with both kinds of context is
        not counted twice). Cost per call: two NVML queries per visible device (four
        driver calls; no allocation on the GPU), of the order of tens of microseconds
        per device, fine for the sampler's every tick.

        Inside a container with its own PID namespace NVML reports host pids, which do
        not match: the result is then 0.

        Returns:
            Bytes (0 when NVML lists no memory for this process), or None when every
            query failed. Never raises.
        """
        nvml, pid = self._nvml, os.getpid()
        total_bytes = 0
        answered = False
        for handle in self.handles:
            per_instance: dict[tuple[Any, Any], int] = {}
            for query in (nvml.nvmlDeviceGetComputeRunningProcesses,
                          nvml.nvmlDeviceGetGraphicsRunningProcesses):
                try:
                    processes = query(handle)
                except Exception:  # e.g. graphics not supported: the other list still counts
                    continue
                answered = True
                for process in processes:
                    used = process.usedGpuMemory
                    if process.pid == pid and used is not None:
                        key = (getattr(process, "gpuInstanceId", None),
                               getattr(process, "computeInstanceId", None))
                        if used > per_instance.get(key, 0):
                            per_instance[key] = used
            total_bytes += sum(per_instance.values())
        return total_bytes if answered else None

    def memory_info(self, index: int = 0) -> dict[str, int] | None:
        """``free_bytes``, ``total_bytes``, ``used_bytes`` of visible device ``index``
        (whole device, every process); None when unknown. Never raises."""
        try:
            info = self._nvml.nvmlDeviceGetMemoryInfo(self.handles[index])
            return {"free_bytes": int(info.free), "total_bytes": int(info.total),
                    "used_bytes": int(info.used)}
        except Exception as exc:
            log.debug("mlobs: NVML memory info of device %s not read: %r", index, exc)
            return None

    def devices(self) -> list[dict[str, Any]]:
        """Per visible device: index, name, total_memory_bytes, compute_capability
        (``"8.0"``); a fact that cannot be read is left out. Never raises."""
        nvml = self._nvml
        facts = []
        for index, handle in enumerate(self.handles):
            fact: dict[str, Any] = {"index": index}
            for key, read in (("name", lambda: str(nvml.nvmlDeviceGetName(handle))),
                              ("total_memory_bytes",
                               lambda: int(nvml.nvmlDeviceGetMemoryInfo(handle).total)),
                              ("compute_capability", lambda: "%d.%d" % tuple(
                                  nvml.nvmlDeviceGetCudaComputeCapability(handle)))):
                try:
                    fact[key] = read()
                except Exception as exc:
                    log.debug("mlobs: NVML %s of device %s not read: %r", key, index, exc)
            facts.append(fact)
        return facts

    def driver(self) -> dict[str, str]:
        """``driver_version`` (``"550.54.15"``) and ``cuda_driver_version`` (the CUDA
        version the driver supports, ``"12.4"``); what cannot be read is left out."""
        nvml = self._nvml
        facts = {}
        try:
            facts["driver_version"] = str(nvml.nvmlSystemGetDriverVersion())
        except Exception as exc:
            log.debug("mlobs: NVML driver version not read: %r", exc)
        try:
            version = int(nvml.nvmlSystemGetCudaDriverVersion())  # e.g. 12040
            facts["cuda_driver_version"] = f"{version // 1000}.{version % 1000 // 10}"
        except Exception as exc:
            log.debug("mlobs: NVML CUDA driver version not read: %r", exc)
        return facts


# (pid, reader) of the last open_nvml(): a fork child (other pid) opens NVML again.
_nvml_cache: tuple[int, NvmlReader | None] | None = None
_nvml_lock = threading.Lock()


def open_nvml() -> NvmlReader | None:
    """This process's :class:`NvmlReader`, opened on first use and cached per process.

    Returns:
        None when ``nvidia-ml-py`` is not installed, the driver library
        (``libnvidia-ml``) is missing or fails to initialize, or no device is visible.
        Never raises (the reason is logged at debug level).
    """
    global _nvml_cache
    pid = os.getpid()
    cached = _nvml_cache
    if cached is not None and cached[0] == pid:
        return cached[1]
    with _nvml_lock:
        cached = _nvml_cache
        if cached is None or cached[0] != pid:
            cached = _nvml_cache = (pid, _open_nvml())
        return cached[1]


def _open_nvml() -> NvmlReader | None:
    try:
        import pynvml
    except Exception as exc:
        log.debug("mlobs: NVML unavailable, nvidia-ml-py not importable: %r", exc)
        return None
    try:
        pynvml.nvmlInit()
    except Exception as exc:
        log.debug("mlobs: NVML unavailable (driver library missing?): %r", exc)
        return None
    try:
        handles = _visible_handles(pynvml, os.environ.get("CUDA_VISIBLE_DEVICES"))
    except Exception as exc:
        log.debug("mlobs: NVML devices not listed: %r", exc)
        handles = []
    if not handles:
        log.debug("mlobs: NVML sees no visible GPU")
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass
        return None
    return NvmlReader(pynvml, handles)


def reset_after_fork() -> None:
    """In a fork child: forget the parent's NVML reader and active-component counts.

    Registered with ``os.register_at_fork``; calling it again is harmless.
    """
    global _nvml_cache, _nvml_lock, _lock, _generation
    _nvml_cache = None
    _nvml_lock = threading.Lock()
    _lock = threading.Lock()
    _active_by_device.clear()
    _pending.clear()
    _generation += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=reset_after_fork)
