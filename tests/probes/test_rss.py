"""Per-component peak RSS: the sampler charges memory to the components active at the time."""

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
