"""Async use of CircuitBreaker: decorator, call_async, async with, cancellation, 1,000 tasks."""

from __future__ import annotations

import asyncio
import inspect

import pytest

from conftest import FakeClock
from seawall import BreakerState, CircuitBreaker, CircuitOpenError, Registry


class Boom(Exception):
    pass


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make(clock: FakeClock, **settings: int) -> CircuitBreaker:
    return CircuitBreaker("svc", clock=clock, registry=Registry(), reset_timeout=5.0, **settings)


@pytest.mark.anyio
async def test_async_decorator_keeps_signature_and_trips(fake_clock: FakeClock) -> None:
    cb = make(fake_clock, failure_threshold=2)

    @cb
    async def fetch(key: str, *, fail: bool = False) -> str:
        """Fetch a key."""
        await asyncio.sleep(0)
        if fail:
            raise Boom(key)
        return key.upper()

    assert inspect.iscoroutinefunction(fetch)
    assert fetch.__name__ == "fetch"
    assert fetch.__doc__ == "Fetch a key."
    assert str(inspect.signature(fetch)) == "(key: 'str', *, fail: 'bool' = False) -> 'str'"
    assert await fetch("a") == "A"
    for _ in range(2):
        with pytest.raises(Boom):
            await fetch("b", fail=True)
    with pytest.raises(CircuitOpenError) as info:
        await fetch("c")
    assert info.value.retry_after == 5.0
    fake_clock.advance(5.0)
    assert await fetch("d") == "D"
    assert cb.state is BreakerState.CLOSED


@pytest.mark.anyio
async def test_call_async_and_async_with(fake_clock: FakeClock) -> None:
    cb = make(fake_clock, failure_threshold=1)

    async def double(x: int) -> int:
        return 2 * x

    assert await cb.call_async(double, 4) == 8
    async with cb:
        await asyncio.sleep(0)
    with pytest.raises(Boom):
        async with cb:
            raise Boom("inside")
    with pytest.raises(CircuitOpenError):
        async with cb:
            pytest.fail("the block must not run")
    assert cb.snapshot().calls == {"success": 2, "failure": 1, "rejected": 1, "ignored": 0, "cancelled": 0}


@pytest.mark.anyio
async def test_cancelled_probe_frees_slot_and_counts_as_cancelled(fake_clock: FakeClock) -> None:
    cb = make(fake_clock, failure_threshold=1)
    with pytest.raises(Boom):
        await cb.call_async(_raise_boom)
    fake_clock.advance(5.0)
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(cb.call_async(hang))
    await asyncio.wait_for(started.wait(), 5)
    assert cb.snapshot().half_open_in_flight == 1
    with pytest.raises(CircuitOpenError):
        await cb.call_async(_raise_boom)  # the single probe slot is taken
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cb.snapshot().half_open_in_flight == 0
    assert cb.state is BreakerState.HALF_OPEN
    assert cb.snapshot().calls == {"success": 0, "failure": 1, "rejected": 1, "ignored": 0, "cancelled": 1}


async def _raise_boom() -> None:
    raise Boom("x")


@pytest.mark.anyio
async def test_async_with_blocks_are_per_task(fake_clock: FakeClock) -> None:
    cb = make(fake_clock, failure_threshold=100)
    gate = asyncio.Event()

    async def worker(fail: bool) -> None:
        async with cb:
            await gate.wait()
            if fail:
                raise Boom("x")

    tasks = [asyncio.create_task(worker(i % 2 == 0)) for i in range(10)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
    assert sum(isinstance(r, Boom) for r in results) == 5
    assert cb.snapshot().calls == {"success": 5, "failure": 5, "rejected": 0, "ignored": 0, "cancelled": 0}


def test_thousand_tasks_all_inside_at_once(fake_clock: FakeClock) -> None:
    """The lock is never held across an await: 1,000 tasks are inside the breaker together."""
    cb = make(fake_clock, failure_threshold=2000)
    inside = 0
    peak = 0

    async def main() -> None:
        release = asyncio.Event()
        all_in = asyncio.Event()

        @cb
        async def work(i: int) -> int:
            nonlocal inside, peak
            inside += 1
            peak = max(peak, inside)
            if inside == 1000:
                all_in.set()
            await release.wait()
            inside -= 1
            if i % 4 == 0:
                raise Boom(str(i))
            return i

        tasks = [asyncio.create_task(work(i)) for i in range(1000)]
        await asyncio.wait_for(all_in.wait(), 10)
        release.set()
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
        assert sum(isinstance(r, Boom) for r in results) == 250

    asyncio.run(main())
    assert peak == 1000
    assert cb.snapshot().calls == {
        "success": 750,
        "failure": 250,
        "rejected": 0,
        "ignored": 0,
        "cancelled": 0,
    }
    assert cb.state is BreakerState.CLOSED
