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


class PeakRssCounter:
    """The kernel's high-water mark of this process's RSS, reset on demand (Linux).

    ``peak_bytes`` is ``getrusage(RUSAGE_SELF).ru_maxrss`` (KiB on Linux, one syscall of
    about 1 µs); ``reset`` writes ``5`` to ``/proc/self/clear_refs``, which sets the mark
    to the current RSS (proc(5), Linux 4.0 and later). The mark follows every page the
    process touched, so an allocation freed before anyone looked is still seen.

    ``ru_maxrss`` also holds the mark the process had before its last ``exec`` (the
    kernel keeps it in the process's signal struct, and ``clear_refs`` does not clear
    it): a process forked from a large parent and then exec'd starts with the parent's
    mark. A caller compares ``peak_bytes`` right after ``reset`` with the RSS to know
    whether it can trust it.

    Raises:
        OSError: on construction, when the file cannot be opened or written (not Linux,
            a sandbox, an old kernel).
    """

    def __init__(self) -> None:
        self._fd = os.open("/proc/self/clear_refs", os.O_WRONLY)
        try:
            self.reset()
        except OSError:
            os.close(self._fd)
            raise

    def reset(self) -> None:
        os.write(self._fd, b"5")

    @staticmethod
    def peak_bytes() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def close(self) -> None:
        try:
            os.close(self._fd)
        except OSError:
            pass


def open_peak_rss_counter() -> PeakRssCounter | None:
    """A :class:`PeakRssCounter`, or ``None`` where the kernel offers none."""
    if not os.path.exists("/proc/self/clear_refs"):
        return None
    try:
        return PeakRssCounter()
    except OSError:
        return None


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
