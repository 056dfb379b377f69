"""The kernel's peak-RSS mark at component boundaries: exact peaks without samples."""

import json
import os
import sys

import pytest

from mlobs.probes.rss import make_rss_reader, open_peak_rss_counter
from support.sampling import counting_sampler

MIB = 1024 * 1024

pytestmark = pytest.mark.skipif(open_peak_rss_counter() is None,
                                reason="this kernel offers no resettable peak-RSS mark")


def test_a_spike_between_samples_is_seen_and_the_thread_samples_nothing():
    sampler, reads = counting_sampler(10_000)  # one sample per 10 s: none in this test
    real_read = make_rss_reader()
    try:
        sampler.end_component(sampler.start_component())
        baseline = real_read()
        at_start = len(reads)
        tracker = sampler.start_component()
        block = bytearray(200 * MIB)  # allocated and freed between two looks
        del block
        sampler.end_component(tracker)
        assert tracker.peak_rss_bytes - baseline >= 190 * MIB
        assert len(reads) - at_start <= 1  # the start's reading; the thread took none
        quiet = sampler.start_component()
        sampler.end_component(quiet)
        assert quiet.peak_rss_bytes - baseline < 20 * MIB  # the mark was reset
    finally:
        sampler.stop()


CHILD = """
import json, time
import mlobs
from mlobs.probes.rss import make_rss_reader
from mlobs.testing import capture
with capture(sample_interval_ms=2) as rec:
    with mlobs.run("youtube", "abc") as run:
        baseline = make_rss_reader()()
        with run.component("quiet"):
            time.sleep(0.02)
        with run.component("allocates"):
            block = bytearray(100 * 1024 * 1024)
            time.sleep(0.05)
            del block
print(json.dumps({name: rec.component(name).peak_rss_bytes - baseline
                  for name in ("quiet", "allocates")}))
"""


def exec_child_of_large_parent(code: str):
    """Run ``code`` in a process forked from this one while it holds 300 MiB, then
    exec'd (fork + exec, not vfork: the child's image holds the parent's pages), and
    return the JSON of its last output line. Such a process starts with the parent's mark
    in getrusage's ru_maxrss: the kernel keeps the old image's mark at exec, and
    clear_refs does not clear it."""
    block = bytearray(300 * MIB)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.dup2(write_fd, 1)
        os.execv(sys.executable, [sys.executable, "-c", code])
    os.close(write_fd)
    del block
    with os.fdopen(read_fd) as out:
        output = out.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return json.loads(output.strip().splitlines()[-1])


def test_a_mark_inherited_through_exec_is_not_charged_to_a_component(tmp_path):
    peaks = exec_child_of_large_parent(CHILD)
    assert peaks["quiet"] < 50 * MIB, peaks["quiet"] / MIB
    assert peaks["allocates"] >= 90 * MIB, peaks["allocates"] / MIB


def test_a_trusted_mark_spares_the_rss_reading_at_most_starts_and_gives_the_start_rss():
    from mlobs.probes.memory_sampler import RECHECK_EVERY_STARTS
    sampler, reads = counting_sampler(10_000)
    real_read = make_rss_reader()
    held = bytearray(64 * MIB)  # the process grew since the sampler was made
    try:
        starts = 4 * RECHECK_EVERY_STARTS
        for _ in range(starts):
            tracker = sampler.start_component()
            rss = real_read()
            sampler.end_component(tracker)
            # The start RSS is the mark right after its reset: the RSS then.
            assert abs(tracker.start_rss_bytes - rss) < 4 * MIB
        # One reading at the first start (the check) and at one start in
        # RECHECK_EVERY_STARTS after it; none at the ends (the mark covers them).
        assert len(reads) <= starts // RECHECK_EVERY_STARTS + 1
    finally:
        sampler.stop()
        del held


SHRINKING_CHILD = """
import json
from mlobs.probes.memory_sampler import RECHECK_EVERY_STARTS, MemorySampler
from mlobs.probes.rss import make_rss_reader
read = make_rss_reader()
sampler = MemorySampler(10_000, gpu=False)
big = bytearray(500 * 1024 * 1024)  # above the mark inherited through exec
sampler.end_component(sampler.start_component())  # the mark is the RSS here
del big  # now the inherited mark is above the RSS
errors = []
for _ in range(2 * RECHECK_EVERY_STARTS):
    tracker = sampler.start_component()
    rss = read()
    sampler.end_component(tracker)
    errors.append(max(abs(tracker.start_rss_bytes - rss), tracker.peak_rss_bytes - rss))
sampler.stop()
print(json.dumps(max(errors)))
"""


def test_after_the_process_shrinks_below_an_exec_inherited_mark_the_start_is_still_the_rss():
    worst = exec_child_of_large_parent(SHRINKING_CHILD)
    assert worst < 16 * MIB, worst / MIB  # not the 300 MiB inherited mark


def test_without_ctypes_libc_the_probe_falls_back_to_os_calls(monkeypatch):
    # libc through ctypes keeps the GIL; where it cannot be loaded the probe still works.
    from mlobs.probes import rss

    monkeypatch.setattr(rss, "_libc", lambda: None)
    counter, read = rss.PeakRssCounter(), make_rss_reader()
    assert counter._libc_write is None
    block = bytearray(64 * 1024 * 1024)
    block[::4096] = b"x" * len(block[::4096])  # touch every page
    assert read() >= 64 * 1024 * 1024
    del block  # a large block goes back to the kernel
    counter.reset()  # the mark falls to the current RSS (the kernel's counters lag a bit)
    assert abs(counter.peak_bytes() - read()) < 8 * 1024 * 1024
    counter.close()
