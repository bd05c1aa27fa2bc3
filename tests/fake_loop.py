"""An asyncio event loop on fake time: when it would wait, the clock jumps to the next timer.

The loop is asyncio's own selector loop (real scheduling, real cancellation); only `time()` reads
a `FakeClock` and the selector, instead of blocking for `timeout` seconds, moves that clock on.
So `asyncio.sleep(10)` returns at once with the clock 10 s later, and a test can check at which
fake instant something happened. A loop with nothing scheduled and nothing ready is a deadlock in
the test: it raises instead of hanging.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

from conftest import FakeClock

T = TypeVar("T")


class _FakeTimeSelector(selectors.DefaultSelector):
    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self._fake = clock

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:
            raise RuntimeError("fake-time loop: nothing scheduled and nothing ready (the test would hang)")
        self._fake.advance(timeout)
        return ready


class FakeTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self, clock: FakeClock) -> None:
        super().__init__(_FakeTimeSelector(clock))
        self._fake = clock
        self._clock_resolution = 1e-9

    def time(self) -> float:
        return self._fake.now


def run(coro: Coroutine[Any, Any, T], clock: FakeClock) -> T:
    """Run `coro` to its end on a fresh fake-time loop driven by `clock`, then close the loop."""
    loop = FakeTimeLoop(clock)
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()
