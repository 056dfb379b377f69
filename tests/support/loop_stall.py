"""How long an asyncio event loop stalls while some coroutine runs on it.

A ticker task sleeps 1 ms at a time and notes the longest gap between its wake-ups; a
loop that is never blocked gives gaps of about 1 ms (the sleep plus scheduling), a call
that blocks the loop for N ms gives a gap of at least N ms.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

TICK_S = 0.001


async def max_stall_ms(body: Callable[[], Awaitable[Any]]) -> float:
    """Run ``await body()`` beside the ticker; the longest gap between two ticks, in ms
    (the ticker ticks a few times before and after the body, so a stall at its very start
    or end is seen)."""
    longest = 0.0
    done = asyncio.Event()

    async def tick() -> None:
        nonlocal longest
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(TICK_S)
            now = time.perf_counter()
            longest = max(longest, now - last)
            last = now

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(5 * TICK_S)
    try:
        await body()
        await asyncio.sleep(5 * TICK_S)
    finally:
        done.set()
        await ticker
    return longest * 1000.0
