"""A generator function under ``@mlobs.component`` is one component spanning its
iteration (sync and async generators), with the component current only inside the body."""

from __future__ import annotations

import asyncio
import inspect
import time

import pytest

import mlobs
from mlobs.hooks.component import CLOSED_EARLY_WARNING
from mlobs.testing import capture

PROFILE = mlobs.AnalysisProfile("baseline", optional={"thumbnails"})
STEP_S = 0.02
PAUSE_S = 0.2


def current_name() -> str | None:
    return getattr(mlobs.current(), "name", None)


@mlobs.component("decode", producer_version="1.0", batch_size=4)
def decode(n, seen=None):
    """Yields 0..n-1, one per STEP_S."""
    for i in range(n):
        time.sleep(STEP_S)
        if seen is not None:
            seen.append(current_name())
        mlobs.current().set_items(i + 1)
        yield i
    return "decoded"


def test_the_component_spans_the_iteration_not_the_call():
    with capture() as rec:
        with mlobs.run("youtube", "abc") as run:
            frames = decode(3)
            time.sleep(PAUSE_S)  # between the call and the first next(): not recorded
            assert rec.components == []  # the call alone records nothing
            assert list(frames) == [0, 1, 2]
    record = rec.component("decode")
    assert (record.status, record.items, record.batch_size) == ("ok", 3, 4)
    assert 3 * STEP_S * 1000 <= record.duration_ms < PAUSE_S * 1000
    assert run.status == "ok"
    assert inspect.isgeneratorfunction(decode) and decode.__doc__.startswith("Yields")


def test_the_return_value_send_and_throw_reach_the_body():
    seen = []

    @mlobs.component("echo")
    def echo():
        received = []
        try:
            while True:
                seen.append(current_name())
                received.append((yield len(received)))
        except KeyError:
            seen.append(current_name())
            yield "caught"
        return received

    with capture() as rec:
        with mlobs.run("youtube", "abc"):
            gen = echo()
            assert next(gen) == 0
            assert gen.send("a") == 1 and gen.send("b") == 2
            assert gen.throw(KeyError("stop")) == "caught"
            with pytest.raises(StopIteration) as stop:
                next(gen)
    assert stop.value.value == ["a", "b"]
    assert seen == ["echo"] * 4 and rec.component("echo").status == "ok"


def test_the_component_is_current_in_the_body_only():
    seen, between = [], []
    with capture() as rec:
        with mlobs.run("youtube", "abc") as run:
            with run.component("consume") as consumer:
                for _ in decode(3, seen):
                    between.append(mlobs.current())
                after = mlobs.current()
            outside = mlobs.current()
    assert seen == ["decode"] * 3
    assert between == [consumer] * 3 and after is consumer
    assert outside is mlobs.current()  # the do-nothing handle
    assert {c.component for c in rec.components} == {"decode", "consume"}


def test_a_component_opened_across_a_yield_is_current_again_at_the_next_step():
    seen = []

    @mlobs.component("segments")
    def segments(run):
        with run.component("inner"):  # spans the yields
            for i in range(2):
                seen.append(current_name())
                yield i
                seen.append(current_name())
        seen.append(current_name())

    with capture() as rec:
        with mlobs.run("youtube", "abc") as run:
            for _ in segments(run):
                seen.append(("consumer", current_name()))
    assert seen == ["inner", ("consumer", None), "inner", "inner", ("consumer", None),
                    "inner", "segments"]
    assert {c.component: c.status for c in rec.components} == {"inner": "ok",
                                                               "segments": "ok"}


def test_closing_it_early_ends_the_component_ok_with_the_warning():
    with capture() as rec:
        with mlobs.run("youtube", "abc") as run:
            frames = decode(10)
            assert [next(frames), next(frames)] == [0, 1]
            frames.close()
            assert current_name() is None
    record = rec.component("decode")
    assert (record.status, record.items, record.warnings) == ("ok", 2,
                                                              [CLOSED_EARLY_WARNING])
    assert run.status == "ok"


def test_a_failure_follows_the_status_rules():
    @mlobs.component("thumbnails")  # optional in PROFILE
    def thumbnails():
        yield 1
        raise OSError("disk full")

    @mlobs.component("faces")
    def faces():
        yield 1
        raise mlobs.Empty("no_faces")

    @mlobs.component("asr")
    def asr():
        yield "hello"
        raise ValueError("bad audio")

    with capture() as rec:
        with pytest.raises(ValueError, match="bad audio"):
            with mlobs.run("youtube", "abc", profile=PROFILE):
                assert list(thumbnails()) == [1]  # swallowed: the iteration just ends
                assert list(faces()) == [1]
                list(asr())
    statuses = {c.component: (c.status, c.error_code, c.empty_reason)
                for c in rec.components}
    assert statuses == {"thumbnails": ("error", "internal", None),
                        "faces": ("empty", None, "no_faces"),
                        "asr": ("error", "internal", None)}
    final = rec.run()
    assert final.status == "error" and "thumbnails" in final.warnings[0]


def test_outside_a_run_it_runs_unobserved_and_unchanged():
    seen = []
    with capture() as rec:
        frames = decode(2, seen)
        assert inspect.isgenerator(frames) and list(frames) == [0, 1]
    assert seen == [None, None] and rec.components == []
    # Still a generator function, for code that asks (frameworks, contextlib).
    assert inspect.isgeneratorfunction(decode)


def test_a_generator_never_iterated_records_nothing():
    with capture() as rec:
        with mlobs.run("youtube", "abc"):
            decode(3)
    assert rec.components == []


@pytest.mark.parametrize("cache", [True, "bypass"])
def test_cache_on_a_generator_function_is_refused_when_decorating(cache):
    with pytest.raises(mlobs.ConfigError, match="cache=.* not supported on a generator"):
        @mlobs.component("decode", producer_version="1", schema_version="1", cache=cache)
        def frames():
            yield 1

    with pytest.raises(mlobs.ConfigError, match="not supported on a generator"):
        @mlobs.component("decode", cache=cache)
        async def async_frames():
            yield 1


def test_retry_and_on_oom_on_a_generator_function_are_refused():
    with pytest.raises(mlobs.ConfigError, match="on_oom and retry are not supported"):
        @mlobs.component("decode", retry=mlobs.RetryPolicy(max_attempts=2))
        def frames():
            yield 1


# -- async generators ------------------------------------------------------------------

@mlobs.component("stream")
async def stream(n, seen):
    for i in range(n):
        await asyncio.sleep(STEP_S)
        seen.append(current_name())
        yield i


def test_an_async_generator_is_one_component_over_its_iteration():
    seen, between = [], []

    async def main():
        async with mlobs.run("youtube", "abc") as run:
            async with run.component("consume") as consumer:
                async for _ in stream(3, seen):
                    between.append(mlobs.current() is consumer)
        return run

    with capture() as rec:
        run = asyncio.run(main())
    record = rec.component("stream")
    assert record.status == "ok" and record.duration_ms >= 3 * STEP_S * 1000
    assert seen == ["stream"] * 3 and between == [True] * 3
    assert run.status == "ok" and inspect.isasyncgenfunction(stream)


def test_interleaved_async_generators_each_see_their_own_component():
    seen_a, seen_b = [], []

    @mlobs.component("other")
    async def other(n, seen):
        for i in range(n):
            await asyncio.sleep(STEP_S / 2)
            seen.append(current_name())
            yield i

    async def consume(gen):
        return [item async for item in gen]

    async def main():
        async with mlobs.run("youtube", "abc"):
            return await asyncio.gather(consume(stream(3, seen_a)),
                                        consume(other(5, seen_b)))

    with capture() as rec:
        assert asyncio.run(main()) == [[0, 1, 2], [0, 1, 2, 3, 4]]
    assert seen_a == ["stream"] * 3 and seen_b == ["other"] * 5
    assert {c.component for c in rec.components} == {"stream", "other"}


def test_an_async_generator_closed_early_or_abandoned_ends_ok_with_the_warning():
    loop_errors = []

    async def main():
        async with mlobs.run("youtube", "abc"):
            closed = stream(10, [])
            assert await closed.__anext__() == 0
            await closed.aclose()
            async for item in stream(10, []):  # abandoned: the loop finalises it
                if item == 1:
                    break
            await asyncio.sleep(STEP_S)

    with capture() as rec:
        loop = asyncio.new_event_loop()
        loop.set_exception_handler(lambda _, context: loop_errors.append(context))
        try:
            loop.run_until_complete(main())
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
        records = rec.components
    assert loop_errors == []
    assert [(c.component, c.status, c.warnings) for c in records] == [
        ("stream", "ok", [CLOSED_EARLY_WARNING])] * 2


def test_an_async_generator_outside_a_run_is_unobserved():
    seen = []

    async def main():
        return [item async for item in stream(2, seen)]

    with capture() as rec:
        assert asyncio.run(main()) == [0, 1]
    assert seen == [None, None] and rec.components == []
    assert inspect.isasyncgenfunction(stream)
