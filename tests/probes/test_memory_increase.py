"""What a component itself added to memory: rss_at_start_bytes and peak_rss_increase_bytes,
so that components of one process, which all see its large RSS as their peak, can be told
apart."""

import time

import mlobs
from mlobs.probes.rss import make_rss_reader
from mlobs.testing import capture

MIB = 1024 * 1024


def test_the_increase_points_at_the_component_that_allocated_not_at_its_neighbours():
    held = bytearray(150 * MIB)  # the process is large before any component starts
    with capture(sample_interval_ms=2) as rec:
        with mlobs.run("youtube", "abc") as run:
            with run.component("quiet"):
                time.sleep(0.02)
            with run.component("allocates"):
                block = bytearray(120 * MIB)  # touched: zero-filled
                time.sleep(0.02)
                del block
            with run.component("quiet_after"):
                time.sleep(0.02)
    del held
    quiet, allocates, after = (rec.component(n) for n in ("quiet", "allocates", "quiet_after"))
    # Every peak is at least the process's 150 MiB: the peak alone cannot tell them apart.
    assert min(c.peak_rss_bytes for c in (quiet, allocates, after)) >= 150 * MIB
    assert allocates.peak_rss_increase_bytes >= 110 * MIB
    assert quiet.peak_rss_increase_bytes < 20 * MIB
    assert after.peak_rss_increase_bytes < 20 * MIB
    for c in (quiet, allocates, after):
        assert c.rss_at_start_bytes >= 150 * MIB
        assert c.peak_rss_increase_bytes == c.peak_rss_bytes - c.rss_at_start_bytes


def test_the_start_is_the_process_rss_when_the_component_began():
    with capture(sample_interval_ms=2) as rec:
        with mlobs.run("youtube", "abc") as run:
            before = make_rss_reader()()
            with run.component("c"):
                pass
    start = rec.component("c").rss_at_start_bytes
    assert abs(start - before) < 16 * MIB


def test_with_memory_probes_off_nothing_is_made_up():
    with capture(memory_probes=False) as rec:
        with mlobs.run("youtube", "abc") as run:
            with run.component("c"):
                pass
    c = rec.component("c")
    assert (c.peak_rss_bytes, c.rss_at_start_bytes, c.peak_rss_increase_bytes) == (
        None, None, None)
    assert (c.gpu_allocated_at_start_bytes, c.peak_gpu_allocated_increase_bytes) == (
        None, None)
