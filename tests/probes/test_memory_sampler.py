"""Per-component peak RSS: the sampler charges memory to the components active at the time."""

import threading
import time

import mlobs
from mlobs.probes.rss import make_rss_reader
from mlobs.testing import capture

MIB = 1024 * 1024


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
