"""How long a run stalls an asyncio event loop: ``async with mlobs.run`` against ``with``.

A ticker task sleeps 1 ms at a time and notes the longest gap between its wake-ups while
one run of ``COMPONENTS`` components runs on the same loop (``tests/support/loop_stall``);
the manifest and warehouse sinks are on, under a temporary root. Printed, in ms:

* idle:       the ticker alone (the floor: the 1 ms sleep plus scheduling)
* async with: ``async with mlobs.run(...)`` / ``async with run.component(...)``; the run's
              end waits for the sinks on an executor thread (target ≤ 5 ms)
* with:       the same run in the sync form, which blocks the loop while the sinks write
              (one manifest write with fsync, one warehouse transaction)

``RUNS`` runs per form after a warm-up, alternating, so drift in machine load hits both
alike (median and max); and the first run of a fresh process per form (the recorder
built by ``mlobs.configure()`` before the loop starts; the run reads the environment,
and the warehouse sink creates its schema). What remains of the async figure is mostly
the sink threads holding the GIL (``sys.getswitchinterval()``: 5 ms), not the loop
waiting.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: support.*

from support.loop_stall import max_stall_ms  # noqa: E402

RUNS = 20
COMPONENTS = 5
TARGET_MS = 5.0


async def async_form(video_id: str) -> None:
    import mlobs
    async with mlobs.run("bench", video_id) as run:
        for i in range(COMPONENTS):
            async with run.component(f"c{i}") as c:
                c.set_items(i)


async def sync_form(video_id: str) -> None:
    import mlobs
    with mlobs.run("bench", video_id) as run:
        for i in range(COMPONENTS):
            with run.component(f"c{i}") as c:
                c.set_items(i)


FORMS = {"async with": async_form, "with": sync_form}


async def _idle() -> None:
    await asyncio.sleep(0.02)


async def _measure() -> tuple[list[float], dict[str, list[float]]]:
    for form in FORMS.values():
        await form("warm-up")
    idle = [await max_stall_ms(_idle) for _ in range(RUNS)]
    stalls: dict[str, list[float]] = {label: [] for label in FORMS}
    for i in range(RUNS):
        for label, form in FORMS.items():
            stalls[label].append(await max_stall_ms(lambda: form(f"video-{i}")))
    return idle, stalls


def first_run_ms(label: str) -> float:
    """The first run's stall in a fresh interpreter (this file with ``--first-run``)."""
    with tempfile.TemporaryDirectory(prefix="mlobs-bench-") as root:
        out = subprocess.run([sys.executable, __file__, "--first-run", label, root],
                             check=True, capture_output=True, text=True).stdout
    return float(out.split()[-1])


def _first_run_child(label: str, root: str) -> None:
    import mlobs
    mlobs.configure(root=root, sinks=["manifest", "warehouse"])
    print(asyncio.run(max_stall_ms(lambda: FORMS[label]("first"))))


def main() -> dict[str, float]:
    import mlobs
    with tempfile.TemporaryDirectory(prefix="mlobs-bench-") as root:
        mlobs.configure(root=root, sinks=["manifest", "warehouse"])
        idle, stalls = asyncio.run(_measure())
        lost = sum(s.failed + s.dropped for s in mlobs.sink_stats())
        mlobs.configure(sinks=[])  # the sinks let go of the root before it is removed
    first = {label: first_run_ms(label) for label in FORMS}
    print(f"event-loop stall per run ({COMPONENTS} components; manifest + warehouse "
          f"sinks; {RUNS} runs per form after a warm-up; ms)")
    print(f"  {'':<22}{'median':>8}{'max':>8}{'first run':>11}")
    print(f"  {'idle (ticker alone)':<22}{statistics.median(idle):8.2f}{max(idle):8.2f}")
    for label in FORMS:
        values = stalls[label]
        print(f"  {label:<22}{statistics.median(values):8.2f}{max(values):8.2f}"
              f"{first[label]:11.2f}")
    worst = max(stalls["async with"])
    ratio = statistics.median(stalls["with"]) / statistics.median(stalls["async with"])
    print(f"  async with: max stall {worst:.2f} ms after the warm-up (target ≤ "
          f"{TARGET_MS:g} ms: {'met' if worst <= TARGET_MS else 'NOT met'}); "
          f"the median of with is {ratio:.1f}× that of async with")
    print(f"  records failed or dropped by sinks: {lost}")
    return {"async_max_ms": worst,
            "async_median_ms": statistics.median(stalls["async with"]),
            "sync_max_ms": max(stalls["with"]),
            "sync_median_ms": statistics.median(stalls["with"]),
            "async_first_ms": first["async with"], "sync_first_ms": first["with"]}


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--first-run":
        _first_run_child(sys.argv[2], sys.argv[3])
    else:
        main()
