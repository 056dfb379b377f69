"""OOM batch-size degradation (model system rules §8) through the hook API.

The OOMs here are real ``MemoryError``s from a component that cannot fit a batch above a
threshold; the test with a real allocator failing under ``RLIMIT_AS`` is
``test_oom_rlimit_torch.py``.
"""

import asyncio

import pytest

import mlobs
from mlobs.testing import capture


class CudaOutOfMemory(RuntimeError):
    """Carries the message torch's CUDA allocator writes (matched by the classifier)."""


def fits_up_to(limit: int, seen: list[int]):
    def infer(batch_size: int) -> int:
        seen.append(batch_size)
        if batch_size > limit:
            # a real allocation that fails: the size asked for is larger than any machine
            raise MemoryError(f"Unable to allocate {batch_size} GiB for an array")
        return batch_size
    return infer


def test_with_form_halves_until_it_fits_and_records_each_oom():
    seen: list[int] = []
    infer = fits_up_to(8, seen)
    with capture() as rec:
        with mlobs.run("youtube", "abc") as run:
            with run.component("asr", batch_size=32, on_oom=mlobs.HalveBatch(min=1)) as c:
                for attempt in c.attempts():
                    with attempt:
                        used = infer(c.batch_size)
    assert seen == [32, 16, 8] and used == 8
    asr = rec.component("asr")
    assert (asr.status, asr.batch_size, asr.batch_size_requested, asr.oom_count) == \
        ("ok", 8, 32, 2)
    ooms = [e for e in asr.events if e.kind == "oom"]
    assert [(e.attributes["attempt"], e.attributes["batch_size"]) for e in ooms] == \
        [(1, 32), (2, 16)]
    snapshot = ooms[0].attributes
    assert snapshot["device_kind"] == "cpu" and snapshot["rss_bytes"] > 0
    assert snapshot["requested_bytes"] == 32 * 1024**3
    assert run.status == "ok"


def test_policy_floor_above_the_fitting_size_ends_oom_on_cpu():
    seen: list[int] = []
    with capture() as rec:
        with pytest.raises(MemoryError):
            with mlobs.run("youtube", "abc") as run:
                with run.component("asr", batch_size=32, on_oom=mlobs.HalveBatch(min=16)) as c:
                    for attempt in c.attempts():
                        with attempt:
                            fits_up_to(8, seen)(c.batch_size)
    assert seen == [32, 16]
    asr = rec.component("asr")
    assert (asr.status, asr.error_code, asr.oom_count, asr.batch_size) == ("error", "oom", 2, 16)
    assert run.status == "error" and rec.run().error_code == "oom"


def test_gpu_oom_exhausting_the_policy_is_insufficient_gpu_memory():
    with capture() as rec:
        with mlobs.run("youtube", "abc") as run:
            with run.component("asr", batch_size=4, on_oom=mlobs.HalveBatch(min=2),
                               device="cuda:0", required=False) as c:
                for attempt in c.attempts():
                    with attempt:
                        raise CudaOutOfMemory(
                            "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 7.79 GiB "
                            "total capacity; 5.10 GiB already allocated)")
    asr = rec.component("asr")
    assert (asr.error_code, asr.oom_count, asr.batch_size, asr.batch_size_requested) == \
        ("insufficient_gpu_memory", 2, 2, 4)
    event = [e for e in asr.events if e.kind == "oom"][-1]
    assert event.attributes["device_kind"] == "cuda"
    assert event.attributes["requested_bytes"] == 2 * 1024**3
    assert run.status == "ok"  # optional component: best-effort


def test_oom_without_a_policy_is_one_event_and_error_oom():
    with capture() as rec:
        with mlobs.run("youtube", "abc") as run:
            with run.component("embed", batch_size=64, required=False):
                raise MemoryError()
    embed = rec.component("embed")
    assert (embed.error_code, embed.oom_count, embed.batch_size) == ("oom", 1, 64)
    assert [e.kind for e in embed.events] == ["oom"]
    assert embed.events[0].attributes["attempt"] is None


def test_decorator_passes_the_current_batch_size_and_callers_may_start_elsewhere():
    seen: list[int] = []

    @mlobs.component("asr", batch_size=64, on_oom=mlobs.HalveBatch())
    def transcribe(audio: str, batch_size: int) -> tuple[str, int]:
        return audio, fits_up_to(10, seen)(batch_size)

    with capture() as rec:
        with mlobs.run("youtube", "abc"):
            assert transcribe("a.wav") == ("a.wav", 8)
            assert transcribe("b.wav", batch_size=4) == ("b.wav", 4)
    assert seen == [64, 32, 16, 8, 4]
    first, second = [c for c in rec.components if c.component == "asr"]
    assert (first.batch_size_requested, first.batch_size, first.oom_count) == (64, 8, 3)
    assert (second.batch_size_requested, second.batch_size, second.oom_count) == (4, 4, 0)
    # outside a run the function is just called
    assert transcribe("c.wav", batch_size=2) == ("c.wav", 2)


def test_async_decorator_degrades_too():
    seen: list[int] = []

    @mlobs.component("embed", batch_size=16, on_oom=mlobs.HalveBatch())
    async def embed(batch_size: int) -> int:
        await asyncio.sleep(0)
        return fits_up_to(4, seen)(batch_size)

    async def main() -> int:
        with mlobs.run("youtube", "abc"):
            return await embed()

    with capture() as rec:
        assert asyncio.run(main()) == 4
    assert rec.component("embed").oom_count == 2


def test_failed_attempt_memory_is_released_before_the_next_attempt():
    # The failed attempt's frame holds a 100 MiB buffer through the exception's traceback;
    # the retry must drop it before the next attempt allocates again.
    def infer(batch_size: int) -> int:
        held = bytearray(100 * 1024 * 1024)  # zero-filled: resident
        if batch_size == 2:
            raise MemoryError("the second buffer does not fit")
        return len(held)

    with capture(sample_interval_ms=1) as rec:
        with mlobs.run("youtube", "abc") as run:
            with run.component("asr", batch_size=2, on_oom=mlobs.HalveBatch()) as c:
                for attempt in c.attempts():
                    with attempt:
                        infer(c.batch_size)
    asr = rec.component("asr")
    assert asr.status == "ok" and asr.oom_count == 1
    rss_at_oom = asr.events[0].attributes["rss_bytes"]
    assert asr.peak_rss_bytes - rss_at_oom < 50 * 1024 * 1024  # never two buffers at once
    assert run.status == "ok"


@pytest.mark.parametrize("kwargs, message", [
    ({"on_oom": mlobs.HalveBatch()}, "needs a batch_size"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1"),
    ({"batch_size": 8, "on_oom": "halve"}, "on_oom must be an OOM policy"),
    ({"retry": 3}, "retry must be an mlobs.RetryPolicy"),
])
def test_invalid_declarations_are_refused(kwargs, message):
    with capture():
        with mlobs.run("youtube", "abc") as run:
            with pytest.raises(mlobs.ConfigError, match=message):
                run.component("asr", **kwargs)


def test_decorator_refuses_on_oom_without_a_batch_size_parameter():
    with pytest.raises(mlobs.ConfigError, match="take a batch_size argument"):
        @mlobs.component("asr", batch_size=8, on_oom=mlobs.HalveBatch())
        def transcribe(audio): ...


def test_halve_batch_refuses_a_floor_below_one():
    with pytest.raises(mlobs.ConfigError):
        mlobs.HalveBatch(min=0)


def test_outside_a_run_the_function_gets_the_declared_size_and_one_attempt():
    seen: list[int] = []

    @mlobs.component("asr", batch_size=32, on_oom=mlobs.HalveBatch())
    def transcribe(batch_size: int) -> int:
        return fits_up_to(64, seen)(batch_size)

    assert transcribe() == 32
    handle = mlobs.current()
    tries = 0
    with pytest.raises(MemoryError):
        for attempt in handle.attempts():
            with attempt:
                tries += 1
                raise MemoryError()
    assert tries == 1


def test_a_callers_batch_size_is_checked_like_a_declared_one():
    @mlobs.component("asr", batch_size=8, on_oom=mlobs.HalveBatch())
    def transcribe(batch_size: int) -> int:
        return batch_size

    with capture():
        with mlobs.run("youtube", "abc"):
            with pytest.raises(mlobs.ConfigError, match="batch_size must be an integer"):
                transcribe(batch_size="big")
            assert transcribe(batch_size=3) == 3
