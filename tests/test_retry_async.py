"""Retry, async: success paths, give-up, deadline, hints, cancellation, events around awaits."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

import seawall
from conftest import FakeClock
from seawall import Registry, Retry, RetryOutcome
from seawall.events import Event, RetryAttemptFinished, RetryAttemptStarted, RetryCompleted, RetryGaveUp


def no_sync_sleep(seconds: float) -> None:
    raise AssertionError("async retry must not use the sync sleep")


def make(clock: FakeClock, **kw: Any) -> Retry:
    kw.setdefault("registry", Registry())
    return Retry("ra", async_sleep=clock.sleep, sleep=no_sync_sleep, clock=clock, rng=random.Random(2), **kw)


class Flaky:
    def __init__(self, failures: list[BaseException]) -> None:
        self.failures = failures
        self.calls = 0

    async def __call__(self, value: int = 1) -> int:
        self.calls += 1
        await asyncio.sleep(0)
        if self.failures:
            raise self.failures.pop(0)
        return value


def test_success_first_time() -> None:
    clock = FakeClock(100.0)
    r = make(clock)
    assert asyncio.run(r.call_async(Flaky([]), 7)) == 7
    assert clock.slept == []
    assert r.snapshot().calls["success_without_retry"] == 1


def test_success_after_retries() -> None:
    clock = FakeClock(100.0)
    r = make(clock, initial=0.5, jitter=0.0)
    fn = Flaky([ConnectionError(), TimeoutError()])
    assert asyncio.run(r.call_async(fn, value=3)) == 3
    assert clock.slept == [0.5, 1.0]
    assert fn.calls == 3


def test_give_up_reraises_original() -> None:
    clock = FakeClock(100.0)
    r = make(clock, attempts=2)
    last = ConnectionError("last")
    fn = Flaky([ConnectionError("first"), last])
    with pytest.raises(ConnectionError) as info:
        asyncio.run(r.call_async(fn))
    assert info.value is last
    assert r.snapshot().calls["failed_with_retry"] == 1


def test_permanent_not_retried() -> None:
    clock = FakeClock(100.0)
    r = make(clock)
    fn = Flaky([ValueError("bad data")])
    with pytest.raises(ValueError, match="bad data"):
        asyncio.run(r.call_async(fn))
    assert fn.calls == 1


def test_deadline_and_hint() -> None:
    clock = FakeClock(100.0)
    r = make(clock, attempts=10, initial=1.0, jitter=0.0, deadline=4.0)
    fn = Flaky([seawall.CircuitOpenError("b", seawall.BreakerState.OPEN, 2.5)] + [ConnectionError()] * 9)
    with pytest.raises(ConnectionError):
        asyncio.run(r.call_async(fn))
    assert clock.slept == [2.5]  # the next 2.0 would pass the 4 s deadline (1.5 s left)
    assert fn.calls == 2


def test_cancellation_not_retried() -> None:
    clock = FakeClock(100.0)
    r = make(clock)
    fn = Flaky([asyncio.CancelledError()])
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(r.call_async(fn))
    assert fn.calls == 1


def test_task_cancel_during_backoff_propagates() -> None:
    r = Retry("cancel", registry=Registry(), initial=5.0, jitter=0.0)  # real asyncio.sleep, but cancelled
    fn = Flaky([ConnectionError()] * 3)

    async def main() -> None:
        task = asyncio.create_task(r.call_async(fn))
        for _ in range(10):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=2.0)

    asyncio.run(main())
    assert fn.calls == 1


def test_decorator_and_events(registry: Registry, events: list[Any]) -> None:
    clock = FakeClock(100.0)
    r = make(clock, registry=registry, initial=1.0, jitter=0.0)
    events.clear()  # from the first call on (not the retry joining the registry)
    log = events  # the events, with the calls written in between
    state = {"n": 0}

    @r
    async def op(x: int) -> int:
        """Doc."""
        state["n"] += 1
        log.append("call")
        await asyncio.sleep(0)
        if state["n"] == 1:
            raise TimeoutError()
        return x * 2

    assert op.__name__ == "op"
    assert asyncio.run(op(4)) == 8
    kinds = [x if isinstance(x, str) else type(x) for x in log]
    assert kinds == [
        RetryAttemptStarted,
        "call",
        RetryAttemptFinished,
        RetryAttemptStarted,
        "call",
        RetryAttemptFinished,
        RetryCompleted,
    ]
    done = log[-1]
    assert done.outcome is RetryOutcome.SUCCESS_WITH_RETRY
    assert done.attempts == 2


def test_events_on_cancellation() -> None:
    clock = FakeClock(100.0)
    reg = Registry()
    r = make(clock, registry=reg)
    log: list[Event] = []
    reg.bus.subscribe(log.append)
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(r.call_async(Flaky([asyncio.CancelledError()])))
    assert [type(e) for e in log] == [RetryAttemptStarted, RetryAttemptFinished, RetryCompleted, RetryGaveUp]
    assert log[-1].outcome is RetryOutcome.FAILED_WITHOUT_RETRY  # type: ignore[union-attr]
