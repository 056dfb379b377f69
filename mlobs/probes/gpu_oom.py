"""GPU memory around an out-of-memory error: freeing torch's cache between retries, the
memory facts of an OOM event, and the free memory a batch size is chosen from. Like
:mod:`mlobs.probes.gpu`, never imports torch, never initializes CUDA, never raises.
"""

from __future__ import annotations

import gc
import logging

from mlobs.probes.gpu import CURRENT_DEVICE, initialized_cuda, open_nvml, parse_device

log = logging.getLogger("mlobs")


def release_gpu_cache() -> None:
    """Between OOM retry attempts: ``gc.collect()``, then, when torch is imported and CUDA
    initialized, ``torch.cuda.empty_cache()`` (cached blocks go back to the driver).
    Never imports torch; never raises."""
    try:
        gc.collect()
        cuda = initialized_cuda()
        if cuda is not None:
            cuda.empty_cache()
    except Exception as exc:
        log.debug("mlobs: GPU cache not released: %r", exc)


def cuda_memory_snapshot(device: str | None) -> dict[str, int]:
    """GPU memory at the moment of an OOM, for its event.

    Args:
        device: ``"cuda:n"``; ``None``, ``"cuda"`` or a non-CUDA device (a component
            degraded to CPU) mean the current device (index 0 without torch).

    Returns:
        With torch imported and CUDA initialized: ``device_index``, ``allocated_bytes``,
        ``reserved_bytes`` (this process's caching allocator), ``free_bytes``,
        ``total_bytes`` (the whole device). Otherwise, through NVML: ``device_index``,
        ``free_bytes``, ``total_bytes``, ``used_bytes`` (the whole device) and
        ``process_used_bytes`` (this process, every visible device) when known.
        ``{}`` when neither is available. Never raises.
    """
    snapshot: dict[str, int] = {}
    try:
        index = None if device is None else parse_device(device)
        cuda = initialized_cuda()
        if cuda is not None:
            i = cuda.current_device() if index is None or index == CURRENT_DEVICE else index
            snapshot["device_index"] = i
            snapshot["allocated_bytes"] = int(cuda.memory_allocated(i))
            snapshot["reserved_bytes"] = int(cuda.memory_reserved(i))
            free_bytes, total_bytes = cuda.mem_get_info(i)
            snapshot["free_bytes"], snapshot["total_bytes"] = int(free_bytes), int(total_bytes)
            return snapshot
        reader = open_nvml()
        if reader is None:
            return snapshot
        i = 0 if index is None or index == CURRENT_DEVICE else index
        info = reader.memory_info(i)
        if info is not None:
            snapshot["device_index"] = i
            snapshot.update(info)
        used = reader.process_used_bytes()
        if used is not None:
            snapshot["process_used_bytes"] = used
    except Exception as exc:  # keep what was read before the failure
        log.debug("mlobs: GPU memory snapshot incomplete: %r", exc)
    return snapshot


def cuda_free_bytes(device: str | None) -> int | None:
    """Free memory of a CUDA device in bytes (the whole device, every process).

    Args:
        device: ``"cuda:n"``; ``None`` or ``"cuda"`` mean the current device (index 0
            without torch).

    Returns:
        torch's ``mem_get_info`` when torch is imported and CUDA initialized (for a
        device this process has not used yet, that creates its CUDA context), else
        NVML's; None for a non-CUDA device or when unknown. Never raises.
    """
    try:
        index = CURRENT_DEVICE if device is None else parse_device(device)
        if index is None:
            return None
        cuda = initialized_cuda()
        if cuda is not None:
            return int(cuda.mem_get_info(cuda.current_device() if index == CURRENT_DEVICE
                                         else index)[0])
        reader = open_nvml()
        if reader is None:
            return None
        info = reader.memory_info(0 if index == CURRENT_DEVICE else index)
        return None if info is None else info["free_bytes"]
    except Exception as exc:
        log.debug("mlobs: free GPU memory not read: %r", exc)
        return None
