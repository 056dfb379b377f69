"""Status rules of ARCHITECTURE §4 as a user of the hook API sees them."""

import asyncio
import concurrent.futures

import pytest

import mlobs
import mlobs.hooks.component
from mlobs.testing import capture
from support.unprintable import Unprintable

PROFILE = mlobs.AnalysisProfile("baseline", optional={"summary"})


def test_ok_empty_and_metrics_are_recorded():
    with capture() as rec:
        with mlobs.run("youtube", "abc", profile=PROFILE, pipeline_version="1.4.0",
                       config={"lang": "en"}) as run:
            with run.component("asr", producer_version="2.1.0", schema_version="3",
                               batch_size=16) as c:
                c.set_items(12)
                c.metric("wer", 0.12)
                c.warn("audio clipped")
            with run.component("faces") as c:
                c.empty("no_faces")
    assert run.status == "ok"
    asr = rec.component("asr")
    assert (asr.status, asr.items, asr.metrics, asr.warnings) == ("ok", 12, {"wer": 0.12},
                                                                  ["audio clipped"])
    assert (asr.producer_version, asr.schema_version, asr.batch_size) == ("2.1.0", "3", 16)
    faces = rec.component("faces")
    assert (faces.status, faces.empty_reason, faces.error_code) == ("empty", "no_faces", None)
    final = rec.run()
    assert final.status == "ok" and final.profile == "baseline"
    assert final.config_hash == mlobs.config_hash({"lang": "en"})


def test_raised_empty_is_a_success_and_does_not_propagate():
    with capture() as rec:
        with mlobs.run("youtube", "abc") as run:
            with run.component("asr"):
                raise mlobs.Empty("no_speech")
            after = True
    assert after and run.status == "ok"
    assert rec.component("asr").empty_reason == "no_speech"


def test_required_failure_fails_fast_and_fails_the_run():
    calls = []
    with capture() as rec:
        with pytest.raises(ValueError, match="bad audio"):
            with mlobs.run("youtube", "abc", profile=PROFILE) as run:
                with run.component("asr"):
                    raise ValueError("bad audio")
                calls.append("later component ran")  # pragma: no cover - must not run
    assert calls == []
    asr = rec.component("asr")
    assert (asr.status, asr.error_code, asr.error_type) == ("error", "internal", "ValueError")
    assert asr.error_message == "bad audio" and asr.required is True
    final = rec.run()
    assert final.status == "error" and final.error_code == "internal"
    assert "asr" in final.error_message


def test_optional_failure_is_best_effort_with_a_run_warning():
    with capture() as rec:
        with mlobs.run("youtube", "abc", profile=PROFILE) as run:
            with run.component("summary"):
                raise mlobs.ComponentError("triton_unavailable", "503 from triton")
            with run.component("chunking"):
                pass
    assert run.status == "ok"
    summary = rec.component("summary")
    assert (summary.status, summary.error_code, summary.required) == (
        "error", "triton_unavailable", False)
    assert rec.component("chunking").status == "ok"
    assert any("summary" in w and "triton_unavailable" in w for w in rec.run().warnings)


def test_required_failure_caught_by_user_still_fails_the_run():
    with capture() as rec:
        with mlobs.run("youtube", "abc") as run:
            try:
                with run.component("asr"):
                    raise ConnectionRefusedError("asr server down")
            except ConnectionRefusedError:
                pass
    assert run.status == "error"
    assert rec.component("asr").error_code == "transient"
    assert rec.run().error_code == "transient"


def test_profile_overrides_the_components_own_declaration():
    profile = mlobs.AnalysisProfile("strict", required={"ocr"})
    with capture() as rec:
        with pytest.raises(RuntimeError):
            with mlobs.run("youtube", "abc", profile=profile) as run:
                with run.component("ocr", required=False):
                    raise RuntimeError("ocr broke")
    assert rec.component("ocr").required is True
    with pytest.raises(mlobs.ConfigError):
        mlobs.AnalysisProfile("bad", optional={"x"}, required={"x"})


def test_decorated_component_records_inside_a_run_and_not_outside():
    @mlobs.component("chunking", producer_version="1.0", required=False)
    def chunk(text):
        mlobs.current().set_items(len(text.split()))
        return text.split()

    with capture() as rec:
        assert chunk("a b c") == ["a", "b", "c"]  # outside any run: unobserved
        assert rec.components == []
        with mlobs.run("youtube", "abc"):
            chunk("a b")
            chunk("c")
    records = sorted(rec.components, key=lambda c: c.attempt)
    assert [(c.attempt, c.items, c.required) for c in records] == [(1, 2, False), (2, 1, False)]


def test_decorated_optional_failure_returns_none():
    @mlobs.component(required=False)
    def flaky():
        raise ValueError("nope")

    with capture() as rec:
        with mlobs.run("youtube", "abc") as run:
            assert flaky() is None
    assert run.status == "ok" and rec.component("flaky").status == "error"


def test_components_in_a_thread_pool_belong_to_the_run():
    @mlobs.component("visual_module")
    def module(i):
        if i % 3 == 0:
            raise mlobs.Empty("no_faces")
        return i

    with capture() as rec:
        with mlobs.run("youtube", "abc") as run:
            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                results = list(pool.map(module, range(9)))
    assert results == [None, 1, 2, None, 4, 5, None, 7, 8]
    records = rec.components
    assert len(records) == 9 and {c.run_id for c in records} == {run.run_id}
    assert sorted(c.attempt for c in records) == list(range(1, 10))
    assert sum(c.status == "empty" for c in records) == 3


def test_async_components():
    @mlobs.component("embed")
    async def embed(x):
        await asyncio.sleep(0.01)
        return x * 2

    async def pipeline():
        with mlobs.run("youtube", "abc") as run:
            values = await asyncio.gather(*(embed(i) for i in range(4)))
        return run, values

    with capture() as rec:
        run, values = asyncio.run(pipeline())
    assert values == [0, 2, 4, 6]
    records = rec.components
    assert len(records) == 4 and all(c.duration_ms >= 10 for c in records)


def test_timestamps_are_utc_and_durations_monotonic():
    with capture() as rec:
        with mlobs.run("youtube", "abc") as run:
            with run.component("sleep"):
                import time
                time.sleep(0.02)
    c = rec.component("sleep")
    assert c.started_at.utcoffset().total_seconds() == 0
    assert 20 <= c.duration_ms < 1000
    assert c.finished_at > c.started_at
    assert rec.run().duration_ms >= c.duration_ms


def test_an_integration_can_time_part_of_the_block_and_the_timestamps_follow():
    import time
    with capture() as rec:
        with mlobs.run("youtube", "abc") as run:
            with run.component("body") as c:
                time.sleep(0.03)  # set-up, outside the interval
                c.restart_clock()
                time.sleep(0.01)
                c.stop_clock()
                time.sleep(0.03)  # after the body, outside too
    body = rec.component("body")
    assert 10 <= body.duration_ms < 25
    span_ms = (body.finished_at - body.started_at).total_seconds() * 1000
    assert abs(span_ms - body.duration_ms) < 0.01
    final = rec.run()
    assert (body.started_at - final.started_at).total_seconds() >= 0.03


def test_keyboard_interrupt_is_recorded_and_never_swallowed():
    with capture() as rec:
        with pytest.raises(KeyboardInterrupt):
            with mlobs.run("youtube", "abc", profile=PROFILE) as run:
                with run.component("summary"):  # optional, yet not swallowed
                    raise KeyboardInterrupt
    assert rec.component("summary").error_code == "interrupted"
    assert run.status == "error"


def test_bad_user_input_is_a_clear_error_or_a_warning():
    with pytest.raises(mlobs.ConfigError, match="video_id"):
        mlobs.run("youtube", "")
    with pytest.raises(mlobs.ConfigError, match="serialisable"):
        mlobs.run("youtube", "abc", config={"s": {1, 2}})
    with capture() as rec:
        with mlobs.run("youtube", "abc") as run:
            with pytest.raises(mlobs.ConfigError):
                run.component("x", models=["whisper"])
            with run.component("asr") as c:
                c.metric("wer", "high")
                c.set_items(-1)
    asr = rec.component("asr")
    assert asr.metrics == {} and asr.items is None and len(asr.warnings) == 2


def test_current_outside_a_component_is_a_harmless_handle():
    handle = mlobs.current()
    handle.set_items(3)
    handle.metric("x", 1.0)
    handle.empty("nothing")
    assert mlobs.current_run() is None


def test_identifiers_longer_than_the_warehouse_columns_are_refused_up_front():
    with pytest.raises(mlobs.ConfigError, match="at most 255"):
        mlobs.run("youtube", "v" * 256)
    with pytest.raises(mlobs.ConfigError, match="component name"):
        mlobs.component("c" * 300)(lambda: None)
    with pytest.raises(mlobs.ConfigError, match="at most 128"):
        mlobs.Empty("r" * 129)
    with capture():
        with mlobs.run("youtube", "abc") as run:
            with pytest.raises(mlobs.ConfigError):
                run.component("asr", device="d" * 200)


def test_run_timestamps_bracket_its_components_and_their_events():
    with capture() as rec:
        with mlobs.run("youtube", "abc") as run:
            with run.component("asr") as c:
                c.event("retry", attempt=1)
    final, asr = rec.run(), rec.component("asr")
    assert final.started_at <= asr.started_at <= asr.finished_at <= final.finished_at
    assert asr.started_at <= asr.events[0].occurred_at <= asr.finished_at


def test_events_with_attributes_json_cannot_hold_become_warnings():
    with capture() as rec:
        with mlobs.run("youtube", "abc") as run:
            with run.component("asr") as c:
                c.event("oom", batch_size=32, requested_bytes=2**31)
                c.event("retry", when=object())
                c.event("k" * 200)
    asr = rec.component("asr")
    assert [(e.kind, e.attributes) for e in asr.events] == [
        ("oom", {"batch_size": 32, "requested_bytes": 2**31})]
    assert len(asr.warnings) == 2 and all("event ignored" in w for w in asr.warnings)


@pytest.mark.parametrize("where", ["optional", "required", "run body"])
def test_an_exception_whose_message_cannot_be_read_is_recorded_and_not_replaced(where):
    """mlobs must neither swallow nor replace the user's exception, nor lose the record."""
    def pipeline():
        with mlobs.run("youtube", "abc", profile=PROFILE) as run:
            if where == "run body":
                raise Unprintable()
            with run.component("summary" if where == "optional" else "asr"):
                raise Unprintable()
            with run.component("chunking"):
                pass

    with capture() as rec:
        if where == "optional":
            pipeline()
        else:
            with pytest.raises(Unprintable):
                pipeline()
    final = rec.run()
    if where == "optional":
        assert final.status == "ok" and rec.component("chunking").status == "ok"
        assert any("summary" in w and "unprintable Unprintable" in w for w in final.warnings)
    else:
        assert final.status == "error" and "unprintable Unprintable" in final.error_message
    if where != "run body":
        failed = rec.component("summary" if where == "optional" else "asr")
        assert (failed.status, failed.error_type) == ("error", "Unprintable")
        assert failed.error_message == "<unprintable Unprintable: RuntimeError: no message>"


class Unreachable(Unprintable, ConnectionError):
    """A transient failure (a ConnectionError) whose message cannot be read."""


def test_a_retried_exception_whose_message_cannot_be_read_is_retried_and_recorded():
    failures = iter([Unreachable(), None])
    with capture() as rec:
        with mlobs.run("youtube", "abc") as run:
            with run.component("asr", retry=mlobs.RetryPolicy(initial_backoff_s=0.001)) as c:
                for attempt in c.attempts():
                    with attempt:
                        failure = next(failures)
                        if failure is not None:
                            raise failure
    asr = rec.component("asr")
    assert (asr.status, asr.retry_count) == ("ok", 1)
    [retry] = [e.attributes for e in asr.events if e.kind == "retry"]
    assert retry["error_code"] == "transient" and "unprintable Unreachable" in retry["message"]


def test_event_attributes_and_the_run_config_are_copied_when_given():
    """A dict changed after it was handed over (e.g. a NaN computed later) changes no
    record: the warehouse would refuse the record otherwise."""
    config = {"asr": {"beam_size": 5}}
    stats = {"frames": 10}
    with capture() as rec:
        with mlobs.run("youtube", "abc", config=config) as run:
            with run.component("asr") as c:
                c.event("progress", stats=stats, window=(0, 10))
                stats["loss"] = float("nan")
            config["asr"]["beam_size"] = float("inf")
    assert rec.run().config == {"asr": {"beam_size": 5}}
    [event] = rec.component("asr").events
    assert event.attributes == {"stats": {"frames": 10}, "window": [0, 10]}


SURROGATE = b"clip-\xff.wav".decode("utf-8", "surrogateescape")  # an undecodable file name


class BrokenRepr:
    def __repr__(self):
        raise RuntimeError("no repr")

    __str__ = __repr__


def test_text_that_cannot_be_written_is_escaped_or_refused_and_loses_no_record(tmp_path):
    """A lone surrogate in free text (a warning, an exception's message) is escaped; in an
    identifier it is refused up front with ConfigError; the run's manifest is written."""
    mlobs.configure(root=tmp_path, sinks=["manifest"])
    with pytest.raises(mlobs.ConfigError, match="lone surrogate"):
        mlobs.run("youtube", SURROGATE)
    with mlobs.run("youtube", "abc", profile=PROFILE) as run:
        with pytest.raises(mlobs.ConfigError, match="lone surrogate"):
            run.component(SURROGATE)
        with run.component("asr") as c:
            c.warn(f"skipped {SURROGATE}")
            c.warn(BrokenRepr())
            c.event("decoded", path=SURROGATE)  # not JSON-encodable: a warning instead
            c.metric(SURROGATE, 1.0)
        with run.component("summary"):
            raise OSError(f"cannot open {SURROGATE}")
    mlobs.flush()
    from mlobs.core.manifest import read_manifest
    record, components = read_manifest(run.manifest_path)
    asr, summary = components
    assert asr.warnings[:2] == ["skipped clip-\\udcff.wav",
                                "<unprintable BrokenRepr: RuntimeError: no repr>"]
    assert [w.split(":")[0] for w in asr.warnings[2:]] == ["event ignored", "metric ignored"]
    assert summary.error_message == "cannot open clip-\\udcff.wav"
    assert any("clip-\\udcff.wav" in w for w in record.warnings)


def test_metric_and_item_values_are_stored_as_plain_numbers_or_refused_with_a_warning():
    import enum

    class Count(enum.IntEnum):
        THREE = 3

    with capture() as rec:
        with mlobs.run("youtube", "abc") as run:
            with run.component("asr") as c:
                c.set_items(Count.THREE)
                c.metric("frames", Count.THREE)
                c.metric("huge", 10**400)  # beyond a float: refused
                c.metric(BrokenRepr(), 1.0)
                c.set_items(BrokenRepr())
    asr = rec.component("asr")
    assert asr.items == 3 and type(asr.items) is int
    assert asr.metrics == {"frames": 3} and type(asr.metrics["frames"]) is int
    assert len(asr.warnings) == 3 and all("ignored" in w for w in asr.warnings)


@pytest.mark.parametrize("field, value", [("device", None), ("version", 3),
                                          ("engine", ["onnx"]), ("name", ""),
                                          ("precision", SURROGATE)])
def test_a_model_ref_with_a_field_that_is_not_text_is_refused_up_front(field, value):
    with pytest.raises(mlobs.ConfigError, match=f"ModelRef.{field}"):
        mlobs.ModelRef(**{"name": "whisper", field: value})


def stream(run, n=10):
    """A streaming stage: the component spans the generator's yields."""
    with run.component("decode"):
        yield from range(n)


def test_a_stream_its_consumer_closes_early_is_ok_with_a_warning():
    with capture() as rec:
        with mlobs.run("youtube", "abc") as run:
            frames = stream(run)
            assert [next(frames) for _ in range(3)] == [0, 1, 2]
            frames.close()  # GeneratorExit inside the component
    decode = rec.component("decode")
    assert run.status == "ok" and decode.status == "ok"
    assert decode.warnings == [mlobs.hooks.component.CLOSED_EARLY_WARNING]


def test_a_stream_closed_in_another_context_is_recorded():
    """Closed from another thread, or finalised by asyncio's loop in a new task: the
    component's context variable was set elsewhere and must not make mlobs raise."""
    import threading

    async def frames(run):
        with run.component("decode-async"):
            for i in range(10):
                await asyncio.sleep(0)
                yield i

    async def consume(run):
        async for frame in frames(run):
            if frame == 2:
                break
        await asyncio.sleep(0.05)  # the loop finalises the abandoned generator

    loop_errors = []
    with capture() as rec:
        with mlobs.run("youtube", "abc") as run:
            threaded = stream(run)
            next(threaded)
            closer = threading.Thread(target=threaded.close)
            closer.start()
            closer.join()
            loop = asyncio.new_event_loop()
            loop.set_exception_handler(lambda _, context: loop_errors.append(context))
            try:
                loop.run_until_complete(consume(run))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
    assert loop_errors == [] and run.status == "ok"
    assert {c.component: c.status for c in rec.components} == {"decode": "ok",
                                                               "decode-async": "ok"}


def test_a_component_handle_is_entered_once():
    with capture() as rec:
        with mlobs.run("youtube", "abc") as run:
            handle = run.component("asr")
            with handle as c:
                c.set_items(1)
            with pytest.raises(mlobs.ConfigError, match="already entered"):
                with handle:
                    pass  # pragma: no cover - not entered
    asr = rec.component("asr")
    assert (asr.items, asr.attempt) == (1, 1)
