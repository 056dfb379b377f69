"""Transient retries (model system rules §7) against a real local server that fails on cue."""

import asyncio
import json
import re
import urllib.request

import pytest

import mlobs
from mlobs.testing import capture
from support.flaky_server import FlakyServer, refused_port

FAST = mlobs.RetryPolicy(max_attempts=4, initial_backoff_s=0.05, max_backoff_s=1.0,
                         jitter_s=0.01)


def fetch(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=2) as response:
        return json.loads(response.read())


def test_503s_are_retried_with_growing_backoff_until_the_server_answers():
    with FlakyServer({"/asr": ["503", "reset", "503", '200:{"text": "hello"}']}) as server:
        with capture() as rec:
            with mlobs.run("youtube", "abc") as run:
                with run.component("asr", retry=FAST) as c:
                    for attempt in c.attempts():
                        with attempt:
                            answer = fetch(server.url("/asr"))
        gaps = server.gaps("/asr")
    assert answer == {"text": "hello"}
    asr = rec.component("asr")
    assert (asr.status, asr.retry_count) == ("ok", 3)
    retries = [e.attributes for e in asr.events if e.kind == "retry"]
    assert [r["attempt"] for r in retries] == [1, 2, 3]
    assert {r["error_code"] for r in retries} == {"transient"}
    waits = [r["wait_s"] for r in retries]
    # 0.05 · 2^n plus up to 0.01 of jitter
    for n, wait in enumerate(waits):
        assert 0.05 * 2**n <= wait <= 0.05 * 2**n + 0.01
    assert all(gap >= wait for gap, wait in zip(gaps, waits))


def test_retries_are_bounded_and_the_last_error_stays():
    with refused_port() as port:
        with capture() as rec:
            with mlobs.run("youtube", "abc") as run:
                with run.component("asr", retry=FAST, required=False) as c:
                    for attempt in c.attempts():
                        with attempt:
                            fetch(f"http://127.0.0.1:{port}/asr")
    asr = rec.component("asr")
    assert (asr.status, asr.error_code, asr.retry_count) == ("error", "transient", 3)
    assert len([e for e in asr.events if e.kind == "retry"]) == 3
    assert run.status == "ok"


@pytest.mark.parametrize("behaviour, code", [("500", "internal"), ("404", "internal")])
def test_non_transient_http_errors_are_not_retried(behaviour, code):
    with FlakyServer({"/asr": [behaviour, "200"]}) as server:
        with capture() as rec:
            with mlobs.run("youtube", "abc") as run:
                with run.component("asr", retry=FAST, required=False) as c:
                    for attempt in c.attempts():
                        with attempt:
                            fetch(server.url("/asr"))
        assert server.count("/asr") == 1
    assert (rec.component("asr").error_code, rec.component("asr").retry_count) == (code, 0)


def test_model_load_failed_is_never_retried():
    with FlakyServer({"/load": ["503"]}) as server:
        calls = []

        @mlobs.component("asr", retry=FAST, required=False)
        def transcribe():
            calls.append(1)
            try:
                fetch(server.url("/load"))
            except OSError as exc:
                raise mlobs.ModelLoadFailed(f"whisper-small: {exc}") from exc

        with capture() as rec:
            with mlobs.run("youtube", "abc"):
                transcribe()
    assert calls == [1]
    asr = rec.component("asr")
    assert (asr.error_code, asr.retry_count) == ("model_load_failed", 0)
    with pytest.raises(mlobs.ConfigError, match="never retried"):
        mlobs.RetryPolicy(retry_on={"transient", "model_load_failed"})


def test_client_timeouts_are_retried_as_timeout():
    with FlakyServer({"/slow": ["hang:1", '200:{"ok": true}']}) as server:
        with capture() as rec:
            with mlobs.run("youtube", "abc") as run:
                with run.component("asr", retry=FAST) as c:
                    for attempt in c.attempts():
                        with attempt:
                            with urllib.request.urlopen(server.url("/slow"), timeout=0.2) as r:
                                r.read()
    asr = rec.component("asr")
    assert asr.retry_count == 1
    assert asr.events[0].attributes["error_code"] == "timeout"


def test_async_decorator_retries_with_asyncio_sleep():
    with FlakyServer({"/asr": ["503", '200:{"text": "hi"}']}) as server:
        @mlobs.component("asr", retry=FAST)
        async def transcribe() -> dict:
            return await asyncio.to_thread(fetch, server.url("/asr"))

        async def main() -> dict:
            with mlobs.run("youtube", "abc"):
                return await transcribe()

        with capture() as rec:
            assert asyncio.run(main()) == {"text": "hi"}
    assert rec.component("asr").retry_count == 1


@pytest.mark.parametrize("bad, message", [
    ({"max_attempts": 0}, "max_attempts must be an integer >= 1, got 0"),
    ({"max_attempts": True}, "max_attempts must be an integer >= 1, got True"),
    ({"initial_backoff_s": -0.5}, "initial_backoff_s must be a finite number >= 0"),
    ({"max_backoff_s": float("nan")}, "max_backoff_s must be a finite number >= 0, got nan"),
    ({"jitter_s": True}, "jitter_s must be a finite number >= 0, got True"),
])
def test_a_retry_policy_refuses_bad_numbers_by_name(bad, message):
    with pytest.raises(mlobs.ConfigError, match=re.escape(message)):
        mlobs.RetryPolicy(**bad)
