"""CPU time per thread of this process and per named process, read from Linux's ``/proc``:
where a benchmark's wall time goes (which thread is busy, and whether the machine's cores
were). Elsewhere every reading is None and callers print nothing."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

_TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat_cpu_s(stat: Path) -> float | None:
    """user + system CPU seconds from a ``/proc/.../stat`` file (None: unreadable)."""
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_S


def _processes_cpu_s(command: str) -> dict[int, float]:
    """CPU seconds of every process named ``command`` (e.g. the server's backends), by
    pid."""
    found: dict[int, float] = {}
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() != command:
                continue
        except OSError:
            continue
        cpu = _stat_cpu_s(comm.with_name("stat"))
        if cpu is not None:
            found[int(comm.parent.name)] = cpu
    return found


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU seconds so far of this process's threads (by name) and of the processes named
    ``command``, with the wall clock."""

    wall_s: float
    threads: dict[str, float]
    processes: dict[int, float]

    @classmethod
    def take(cls, command: str) -> CpuSnapshot:
        threads: dict[str, float] = {}
        for thread in threading.enumerate():
            if thread.native_id is None:
                continue
            cpu = _stat_cpu_s(Path(f"/proc/self/task/{thread.native_id}/stat"))
            if cpu is not None:
                threads[thread.name] = threads.get(thread.name, 0.0) + cpu
        # Work moved to a child process (mlobs's warehouse writer) is work too.
        children = children_cpu_s()
        if children:
            threads[CHILDREN] = children
        return cls(time.perf_counter(), threads, _processes_cpu_s(command))


#: The name under which :meth:`CpuSnapshot.take` counts this process's children.
CHILDREN = "child processes"


def children_cpu_s() -> float:
    """CPU seconds so far of this process's live children (e.g. mlobs's warehouse
    writer)."""
    import psutil
    total = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.Error:  # it ended meanwhile
            continue
        total += times.user + times.system
    return total


def cpu_per_item_us(before: CpuSnapshot, after: CpuSnapshot, items: int
                    ) -> tuple[dict[str, float], float | None, float] | None:
    """Microseconds of CPU per item spent by each thread between the snapshots (a thread
    started in between counts from zero), by the named processes, and of wall time; None
    when ``/proc`` could not be read."""
    if not after.threads:
        return None
    per_item = 1e6 / items
    threads = {name: (cpu - before.threads.get(name, 0.0)) * per_item
               for name, cpu in after.threads.items()}
    # Per pid: a process started in between counts from zero (one that ended is lost).
    processes = (sum(cpu - before.processes.get(pid, 0.0)
                     for pid, cpu in after.processes.items()) * per_item
                 if after.processes else None)
    return threads, processes, (after.wall_s - before.wall_s) * per_item
