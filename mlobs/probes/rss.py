"""Reading this process's CPU memory: resident set size and a snapshot for OOM events.

RSS comes from ``/proc/self/statm`` on Linux (one small ``pread``, about 0.7 µs) and
psutil elsewhere. psutil is imported where it is read (an OOM snapshot, a batch size
choice, RSS off Linux), not by ``import mlobs``: its import costs tens of milliseconds.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Callable

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _statm_reader() -> Callable[[], int] | None:
    try:
        fd = os.open("/proc/self/statm", os.O_RDONLY)
    except OSError:
        return None

    def read() -> int:
        # statm's second field is resident pages; pread avoids reopening the file.
        return int(os.pread(fd, 128, 0).split()[1]) * _PAGE_SIZE

    return read


def make_rss_reader() -> Callable[[], int]:
    """A function returning the current RSS in bytes."""
    reader = _statm_reader()
    if reader is not None:
        return reader
    import psutil

    process = psutil.Process()
    return lambda: process.memory_info().rss


def cpu_memory_snapshot() -> dict[str, int]:
    """CPU memory facts for an OOM event, in bytes.

    Keys: ``rss_bytes`` and ``vms_bytes`` (this process), ``available_bytes`` (the
    machine's, from psutil), and ``address_space_limit_bytes`` when ``RLIMIT_AS`` limits
    the process (allocations fail once ``vms_bytes`` would pass it). Never raises: a fact
    that cannot be read is left out.
    """
    snapshot: dict[str, int] = {}
    try:
        # psutil's first import may come here, with memory short: then no facts of it.
        import psutil

        info = psutil.Process().memory_info()
        snapshot["rss_bytes"], snapshot["vms_bytes"] = int(info.rss), int(info.vms)
        snapshot["available_bytes"] = int(psutil.virtual_memory().available)
    except Exception:  # psutil.Error, OSError, or that import failing (MemoryError)
        pass
    limit = address_space_limit_bytes()
    if limit is not None:
        snapshot["address_space_limit_bytes"] = limit
    return snapshot


def address_space_limit_bytes() -> int | None:
    """The soft ``RLIMIT_AS`` of this process in bytes, or ``None`` when unlimited."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def cpu_free_bytes() -> int:
    """Memory this process can still allocate, in bytes: the machine's available memory,
    further bounded by what ``RLIMIT_AS`` leaves of the address space."""
    import psutil

    free = int(psutil.virtual_memory().available)
    limit = address_space_limit_bytes()
    if limit is not None:
        free = min(free, max(0, limit - int(psutil.Process().memory_info().vms)))
    return free
