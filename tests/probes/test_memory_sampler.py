"""Per-component peak RSS: the sampler charges memory to the components active at the time."""

import threading
import time

import pytest

import mlobs
from mlobs.probes import memory_sampler
from mlobs.probes.rss import make_rss_reader, open_peak_rss_counter
from mlobs.testing import capture
from support.sampling import counting_sampler

MIB = 1024 * 1024
HAS_COUNTER = open_peak_rss_counter() is not None


@pytest.fixture(params=["kernel mark", "samples only"], autouse=True)
def peak_source(request, monkeypatch):
    """Every peak test runs with the kernel's peak-RSS mark and without it (macOS, a
    sandbox without /proc/self/clear_refs): the sampler thread alone."""
    if request.param == "kernel mark" and not HAS_COUNTER:
        pytest.skip("this kernel offers no resettable peak-RSS mark")
    if request.param == "samples only":
        monkeypatch.setattr(memory_sampler, "open_peak_rss_counter", lambda: None)
    return request.param


def test_a_component_that_allocates_gets_the_peak_and_a_later_one_does_not():
    with capture(sample_interval_ms=2) as rec:
        with mlobs.run("youtube", "abc") as run:
            baseline = make_rss_reader()()
            with run.component("allocates"):
                block = bytearray(200 * MIB)  # zero-filled: the pages are touched
                time.sleep(0.05)
                del block
            time.sleep(0.02)
            with run.component("after"):
                time.sleep(0.05)
    allocates, after = rec.component("allocates"), rec.component("after")
    assert allocates.peak_rss_bytes - baseline >= 180 * MIB
    assert after.peak_rss_bytes - baseline < 50 * MIB


def test_every_component_gets_a_peak_even_when_shorter_than_the_interval():
    with capture(sample_interval_ms=50) as rec:
        with mlobs.run("youtube", "abc") as run:
            with run.component("tiny"):
                pass
    assert rec.component("tiny").peak_rss_bytes > 10 * MIB


def test_peak_is_within_ten_percent_and_neighbour_threads_are_not_charged():
    n_bytes = 256 * MIB
    read_rss = make_rss_reader()
    before_done, freed = threading.Event(), threading.Event()

    def neighbour(name: str, start: threading.Event | None, done: threading.Event | None,
                  run) -> None:
        if start is not None:
            start.wait(5)
        with run.component(name):
            time.sleep(0.03)
        if done is not None:
            done.set()

    with capture(sample_interval_ms=2) as rec:
        with mlobs.run("youtube", "abc") as run:
            with run.component("allocates"):
                # one neighbour ends before the allocation, the other starts after the free;
                # both overlap this component in time.
                first = threading.Thread(target=neighbour, args=("before", None, before_done, run))
                first.start()
                before_done.wait(5)
                baseline = read_rss()
                block = bytearray(n_bytes)  # zero-filled: the pages are touched
                time.sleep(0.05)
                del block
                after = threading.Thread(target=neighbour, args=("after", freed, None, run))
                after.start()
                freed.set()
                after.join()
                first.join()
    charged = rec.component("allocates").peak_rss_bytes - baseline
    assert abs(charged - n_bytes) <= 0.10 * n_bytes, charged / MIB
    for name in ("before", "after"):
        assert rec.component(name).peak_rss_bytes - baseline < 0.10 * n_bytes, name


def test_memory_probes_off_leaves_peaks_unset():
    with capture(memory_probes=False) as rec:
        with mlobs.run("youtube", "abc") as run:
            with run.component("quiet"):
                pass
    assert rec.component("quiet").peak_rss_bytes is None


def test_warm_up_waits_for_the_sampler_s_start_up_once():
    # Without the wait, a Celery pool process's first task body ran beside this start-up.
    from mlobs.probes.memory_sampler import MemorySampler

    opened = threading.Event()

    class SlowStart(MemorySampler):
        def _open_gpu_reader(self):
            opened.wait(5)  # NVML's start-up, released by the test
            return None

    quick = SlowStart(5.0)
    t0 = time.perf_counter()  # before the timer starts: it may fire 0.05 s after its start
    threading.Timer(0.05, opened.set).start()
    try:
        assert quick.warm_up(5.0) is True
        assert time.perf_counter() - t0 >= 0.05
    finally:
        quick.stop()

    opened.clear()
    hung = SlowStart(5.0)
    try:
        t0 = time.perf_counter()
        assert hung.warm_up(0.05) is False  # not ready yet: the caller goes on
        assert hung.warm_up(5.0) is False  # and only the first call waits
        assert time.perf_counter() - t0 < 1.0
        opened.set()
        deadline = time.perf_counter() + 5.0
        while not hung.warm_up(0.0) and time.perf_counter() < deadline:
            time.sleep(0.005)
        assert hung.warm_up(0.0) is True
    finally:
        opened.set()
        hung.stop()


def test_the_sampler_parks_while_no_component_runs_and_wakes_for_the_next():
    from mlobs.probes.memory_sampler import PARK_AFTER_IDLE_SAMPLES
    sampler, reads = counting_sampler(1)
    real_read = make_rss_reader()
    try:
        sampler.end_component(sampler.start_component())
        deadline = time.monotonic() + 5
        while not sampler._parked and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sampler._parked
        parked_at = len(reads)
        time.sleep(0.1)  # a hundred intervals: no sample taken
        assert len(reads) == parked_at
        assert parked_at <= PARK_AFTER_IDLE_SAMPLES + 10
        baseline = real_read()
        tracker = sampler.start_component()  # wakes it: it samples the body again
        block = bytearray(200 * MIB)
        time.sleep(0.05)
        del block
        sampler.end_component(tracker)
        assert tracker.peak_rss_bytes - baseline >= 180 * MIB
    finally:
        sampler.stop()


def test_a_late_wake_up_does_not_make_the_sampler_spin():
    sampler, reads = counting_sampler(5)
    try:
        tracker = sampler.start_component()
        time.sleep(0.05)
        sampler._wake.set()  # a start that saw the sampler parked, arriving late
        before = len(reads)
        time.sleep(0.2)
        sampler.end_component(tracker)
        assert len(reads) - before <= 0.2 / 0.005 + 10  # about one sample per interval
    finally:
        sampler.stop()

