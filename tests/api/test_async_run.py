"""``async with mlobs.run(...)`` and ``async with run.component(...)``: what may block (the
environment, waiting for the sinks, exit hooks, the component cache's files) runs off the
event loop, and the records are the same as with ``with``.

Stall bounds are generous (a loaded 2-core machine): the median over several runs, so a
scheduler hiccup in one run does not fail a test while blocking, which stalls every run,
does; ``tests/perf/bench_async.py`` prints the figures (target ≤ 5 ms).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import threading
import time

import pytest

import mlobs
import mlobs.hooks.component_cache
import mlobs.hooks.run
from mlobs.core.records import RunRecord
from mlobs.hooks.joined_run import JoinedRun
from mlobs.recording.recorder import get_recorder
from mlobs.testing import MemorySink, capture
from support.loop_stall import max_stall_ms

#: the median loop stall accepted from the async forms (the target is ≤ 5 ms).
STALL_BOUND_MS = 25.0
#: how long the slow sink's exports, environment and exit hook take: a single run that
#: stalls less than half of it did not wait on the loop.
SLOW_S = 0.1


class SlowSink:
    """A sink whose every export takes ``SLOW_S`` (a remote database far away)."""

    name = "slow"

    def __init__(self) -> None:
        self.final_statuses: list[str] = []

    def export(self, items) -> None:
        time.sleep(SLOW_S)
        self.final_statuses += [r.status for r in items
                                if isinstance(r, RunRecord) and r.status != "running"]

    def force_flush(self, timeout_s: float) -> bool:
        return True

    def shutdown(self, timeout_s: float) -> None:
        return None


class FailingSink(SlowSink):
    name = "failing"

    def export(self, items) -> None:
        raise OSError("disk on fire")


def manifest_status(run: mlobs.Run) -> str:
    return json.loads(run.manifest_path.read_text())["status"]


async def async_run(video_id: str) -> mlobs.Run:
    async with mlobs.run("youtube", video_id) as run:
        for name in ("asr", "chunking", "embedding"):
            async with run.component(name) as c:
                c.set_items(3)
    # The block waited for the sinks: the manifest is final when it ends.
    assert manifest_status(run) == "ok"
    return run


async def sync_run(video_id: str) -> mlobs.Run:
    with mlobs.run("youtube", video_id) as run:
        for name in ("asr", "chunking", "embedding"):
            with run.component(name) as c:
                c.set_items(3)
    return run


async def stalls(form, runs: int) -> list[float]:
    """The loop's longest stall during each of ``runs`` runs of ``form``, in ms."""
    return [await max_stall_ms(lambda i=i: form(f"vid-{form.__name__}-{i}"))
            for i in range(runs)]


def test_async_run_with_the_default_sinks_does_not_stall_the_loop(isolated_root):
    mlobs.configure(root=isolated_root, sinks=["manifest", "warehouse"])

    async def main() -> list[float]:
        await async_run("warm-up")  # schema creation, first imports on the sink threads
        return await stalls(async_run, 5)

    measured = asyncio.run(main())
    assert statistics.median(measured) < STALL_BOUND_MS, measured
    assert all(s.failed == s.dropped == 0 for s in mlobs.sink_stats())


def test_async_run_end_waits_for_slow_sinks_off_the_loop(isolated_root):
    """A sink taking 100 ms per export: ``with`` stalls the loop that long at every run
    end (the old and only form), ``async with`` does not, and still waits for it."""
    slow = SlowSink()
    mlobs.configure(root=isolated_root, sinks=["manifest", "warehouse"], extra_sinks=[slow])

    async def main() -> tuple[list[float], list[float]]:
        await async_run("warm-up")
        return await stalls(async_run, 3), await stalls(sync_run, 2)

    async_stalls, sync_stalls = asyncio.run(main())
    assert min(sync_stalls) >= 0.8 * SLOW_S * 1000, sync_stalls  # the ticker sees it
    assert statistics.median(async_stalls) < STALL_BOUND_MS, (async_stalls, sync_stalls)
    assert slow.final_statuses == ["ok"] * 6  # every final record reached the sink


def test_async_run_reads_the_environment_off_the_loop(monkeypatch):
    threads = []
    real = mlobs.hooks.run.run_environment

    def slow_environment(seed):
        threads.append(threading.current_thread())
        time.sleep(SLOW_S)  # a first run: package metadata, NVML
        return {**real(seed), "read_by": "executor"}

    monkeypatch.setattr(mlobs.hooks.run, "run_environment", slow_environment)

    runs = []

    async def body():
        async with mlobs.run("youtube", "abc", seed=7) as run:
            assert mlobs.current_run() is run
        runs.append(run)

    async def main():
        return await max_stall_ms(body), threading.current_thread()

    with capture() as rec:
        stall, loop_thread = asyncio.run(main())
    run = runs[0]
    assert threads and loop_thread not in threads
    assert stall < SLOW_S * 1000 / 2
    assert rec.run().environment["read_by"] == "executor"
    assert rec.run().environment["seed"] == 7 and run.status == "ok"


def test_async_run_exit_hooks_and_late_warnings_run_off_the_loop():
    memory = MemorySink()
    mlobs.configure(sinks=[], extra_sinks=[memory, FailingSink()])
    hook_threads = []

    def hook(run):
        hook_threads.append(threading.current_thread())
        time.sleep(SLOW_S)  # an integration assembling the manifest from the warehouse

    async def main():
        async def body():
            async with mlobs.run("youtube", "abc") as run:
                run.at_exit(hook)
                async with run.component("asr"):
                    pass
            assert hook_threads  # the block ended after its hooks
        stall = await max_stall_ms(body)
        return stall, threading.current_thread()

    stall, loop_thread = asyncio.run(main())
    assert hook_threads and loop_thread not in hook_threads
    assert stall < SLOW_S * 1000 / 2
    (final,) = memory.runs
    assert final.status == "ok"
    assert any("sink 'failing' failed to export" in w for w in final.warnings)


def test_async_run_status_rule_is_the_same_as_with():
    async def main():
        async with mlobs.run("youtube", "abc",
                             profile=mlobs.AnalysisProfile("p", optional={"summary"})) as run:
            async with run.component("summary"):
                raise ValueError("optional: swallowed")
            async with run.component("asr"):
                raise RuntimeError("required: propagates")

    with capture() as rec:
        with pytest.raises(RuntimeError, match="required"):
            asyncio.run(main())
    final = rec.run()
    assert (final.status, final.error_code) == ("error", "internal")
    assert "summary" in final.warnings[0]
    assert {c.component: c.status for c in rec.components} == {"summary": "error",
                                                               "asr": "error"}
    assert mlobs.current_run() is None


def cached(run):
    return run.component("asr", producer_version="2.1", schema_version="3", cache=True,
                         inputs={"audio": "sha-1"})


def test_async_component_cache_lookup_and_save_run_off_the_loop(tmp_path, monkeypatch):
    cache_threads = []
    for method in ("begin", "finish"):
        real = getattr(mlobs.hooks.component_cache.ComponentCache, method)

        def spy(self, call, *args, _real=real):
            cache_threads.append(threading.current_thread())
            return _real(self, call, *args)
        monkeypatch.setattr(mlobs.hooks.component_cache.ComponentCache, method, spy)

    async def main():
        async with mlobs.run("youtube", "abc") as run:
            async with cached(run) as c:
                assert not c.hit and mlobs.current() is c
                c.set_result({"text": "hello"})
            assert mlobs.current() is not c
        async with mlobs.run("youtube", "abc") as run:
            async with cached(run) as c:
                hit, result = c.hit, c.result
        return threading.current_thread(), hit, result

    with capture(root=tmp_path) as rec:
        loop_thread, hit, result = asyncio.run(main())
    assert (hit, result) == (True, {"text": "hello"})
    assert len(cache_threads) == 3 and loop_thread not in cache_threads  # 2 lookups, 1 save
    assert [(c.cache_status, c.cache_version) for c in rec.components] == [("miss", 1),
                                                                           ("hit", 1)]


def test_async_decorator_with_cache_serves_a_hit_off_the_loop(tmp_path, monkeypatch):
    lookups, calls = [], []
    real = mlobs.hooks.component_cache.ComponentCache.begin

    def spy(self, call):
        lookups.append(threading.current_thread())
        return real(self, call)
    monkeypatch.setattr(mlobs.hooks.component_cache.ComponentCache, "begin", spy)

    @mlobs.component("embed", producer_version="1", schema_version="1", cache=True)
    async def embed(text):
        calls.append(text)
        await asyncio.sleep(0)
        return [len(text)]

    async def main():
        results = []
        for _ in range(2):
            async with mlobs.run("youtube", "abc"):
                results.append(await embed("hello"))
        return results, threading.current_thread()

    with capture(root=tmp_path) as rec:
        results, loop_thread = asyncio.run(main())
    assert results == [[5], [5]] and calls == ["hello"]
    assert len(lookups) == 2 and loop_thread not in lookups
    assert [c.cache_status for c in rec.components] == ["miss", "hit"]


def test_a_task_cancelled_during_a_cache_lookup_ends_its_component(tmp_path, monkeypatch):
    real = mlobs.hooks.component_cache.ComponentCache.begin

    def slow_lookup(self, call):
        time.sleep(0.2)
        return real(self, call)
    monkeypatch.setattr(mlobs.hooks.component_cache.ComponentCache, "begin", slow_lookup)
    seen_after = []

    async def worker(run):
        try:
            async with cached(run):
                pass  # pragma: no cover - cancelled before the body
        except asyncio.CancelledError:
            seen_after.append(mlobs.current())
            raise

    async def main():
        async with mlobs.run("youtube", "abc") as run:
            task = asyncio.create_task(worker(run))
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        return run

    with capture(root=tmp_path) as rec:
        run = asyncio.run(main())
    assert seen_after == [mlobs.current()]  # the component is no longer current
    asr = rec.component("asr")
    assert (asr.status, asr.error_type) == ("error", "CancelledError")
    assert run.status == "error"  # a required component failed


def test_a_joined_run_under_async_with_records_components_only():
    async def main():
        async with mlobs.run("youtube", "abc") as run:
            context = run.run_context()
        async with JoinedRun(get_recorder(), context, attempt=2) as joined:
            async with joined.component("asr"):
                pass
        return run

    with capture() as rec:
        run = asyncio.run(main())
    assert [r.run_id for r in rec.runs] == [run.run_id]  # no run record of its own
    asr = rec.component("asr")
    assert (asr.run_id, asr.attempt) == (run.run_id, 2)
