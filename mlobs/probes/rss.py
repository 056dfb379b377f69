"""Reading this process's CPU memory: resident set size and a snapshot for OOM events.

RSS comes from ``/proc/self/statm`` on Linux (one small ``pread``, about 0.7 µs) and
psutil elsewhere. psutil is imported where it is read (an OOM snapshot, a batch size
choice, RSS off Linux), not by ``import mlobs``: its import costs tens of milliseconds.

The reads and writes made at component boundaries keep the GIL (libc's calls through
``ctypes.PyDLL``; ``os.pread`` and ``os.write`` where ctypes cannot load libc). Under
CPython's GIL a thread waiting for it asks the holder to let go only when no hand-over
happened during its 5 ms wait, and the pipeline's thread letting go around each of its
sub-microsecond calls and taking it straight back counts as one: the sink thread then
starved behind a CPU-bound pipeline (measured: 9,500 of 10,000 records of 0.5 ms
components still queued at the run's end, the whole run's export left to wait for).
"""

from __future__ import annotations

import functools
import os
import resource
from collections.abc import Callable
from typing import Any

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@functools.cache
def _libc() -> Any:
    """libc through ``ctypes.PyDLL`` (its calls keep the GIL) with ``write`` and ``pread``
    typed, or None where ctypes cannot load it."""
    try:
        import ctypes

        libc = ctypes.PyDLL(None, use_errno=True)
        libc.write.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t)
        libc.pread.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_long)
        libc.write.restype = libc.pread.restype = ctypes.c_ssize_t
    except (ImportError, OSError, AttributeError):
        return None
    return libc


def _raise_errno() -> None:
    import ctypes

    errno = ctypes.get_errno()
    raise OSError(errno, os.strerror(errno))


def _statm_reader() -> Callable[[], int] | None:
    try:
        fd = os.open("/proc/self/statm", os.O_RDONLY)
    except OSError:
        return None
    libc = _libc()
    if libc is None:
        def read() -> int:
            # statm's second field is resident pages; pread avoids reopening the file.
            return int(os.pread(fd, 128, 0).split()[1]) * _PAGE_SIZE
        return read
    import ctypes

    pread, buffer = libc.pread, ctypes.create_string_buffer(128)

    def read_holding_gil() -> int:
        size = pread(fd, buffer, 128, 0)
        if size < 0:
            _raise_errno()
        return int(buffer.raw[:size].split()[1]) * _PAGE_SIZE
    return read_holding_gil


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
        libc = _libc()
        self._libc_write = None if libc is None else libc.write
        try:
            self.reset()
        except OSError:
            os.close(self._fd)
            raise

    def reset(self) -> None:
        write = self._libc_write
        if write is None:
            os.write(self._fd, b"5")
        elif write(self._fd, b"5", 1) != 1:
            _raise_errno()

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
