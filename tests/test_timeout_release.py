"""A Timeout lets go of a finished call at once, even behind a call that is still running.

Before issue 17 each async call's deadline entry held its task (and so the task's result) until
every call started before it had finished: one slow call kept 20k finished calls of 10 KB alive.
"""

from __future__ import annotations

import asyncio
import gc
import weakref

import seawall
from seawall.limits.expiry import COMPACT_FLOOR


class Payload:
    """A call's result, weakly referable so the test can see when it is freed."""

    def __init__(self) -> None:
        self.data = bytearray(10_000)


def test_finished_calls_are_released_while_an_earlier_call_still_runs() -> None:
    timeout = seawall.Timeout("upstream", 30.0, registry=seawall.Registry())
    results: list[weakref.ref[Payload]] = []

    async def slow() -> None:
        await asyncio.sleep(3600)

    async def quick() -> Payload:
        await asyncio.sleep(0)
        return Payload()

    async def batch() -> None:
        """100 quick calls; the frame that awaited them is gone when this returns."""
        tasks = [asyncio.create_task(timeout.call_async(quick)) for _ in range(100)]
        for task in tasks:
            results.append(weakref.ref(await task))

    async def scenario() -> tuple[int, int]:
        blocker = asyncio.create_task(timeout.call_async(slow))
        await asyncio.sleep(0)  # the slow call is first in the timeout's wheel
        for _ in range(20):
            await batch()
        gc.collect()
        alive = sum(ref() is not None for ref in results)
        (wheel,) = timeout._wheels.values()
        size = len(wheel)
        blocker.cancel()
        await asyncio.gather(blocker, return_exceptions=True)
        return alive, size

    alive, size = asyncio.run(asyncio.wait_for(scenario(), timeout=20))
    # Every finished task (and its 10 KB result) was freed at once; asyncio itself may still hold
    # one of the newest batch for a moment (it did on 3.11, with no gc referrer), never more.
    assert alive <= 1
    assert size <= 2 * max(COMPACT_FLOOR, 100) + 1  # the wheel keeps the running calls, not 2,000
