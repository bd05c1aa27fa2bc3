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


def test_events_on_cancellation(registry: Registry, events: list[Event]) -> None:
    r = make(FakeClock(100.0), registry=registry)
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(r.call_async(Flaky([asyncio.CancelledError()])))
    assert list(map(type, events[1:])) == [
        RetryAttemptStarted,
        RetryAttemptFinished,
        RetryCompleted,
        RetryGaveUp,
    ]
    assert events[-1].outcome is RetryOutcome.FAILED_WITHOUT_RETRY  # type: ignore[union-attr]


# -- every call counted once, the same with and without listeners (issue 16) -----------------------

STEPS = ("ok", "fail", "retried_ok", "cancel_first", "cancel_second", "cancel_in_sleep")
EXPECTED = {  # the outcome each step must count
    "ok": "success_without_retry",
    "fail": "failed_with_retry",
    "retried_ok": "success_with_retry",
    "cancel_first": "failed_without_retry",
    "cancel_second": "failed_with_retry",
    "cancel_in_sleep": "failed_without_retry",
}


class Cancelled(BaseException):
    """A sync stand-in for cancellation: a BaseException that is not an Exception."""


def _failures(step: str, stop: type[BaseException]) -> list[BaseException]:
    return {
        "ok": [],
        "fail": [ConnectionError(), ConnectionError()],
        "retried_ok": [ConnectionError()],
        "cancel_first": [stop()],
        "cancel_second": [ConnectionError(), stop()],
        "cancel_in_sleep": [ConnectionError()],
    }[step]


def _run_steps(steps: list[str], listened: bool, use_async: bool) -> dict[str, int]:
    registry = Registry()
    if listened:
        registry.bus.subscribe(lambda event: None)
    stop: type[BaseException] = asyncio.CancelledError if use_async else Cancelled
    sleeping = {"stop": False}

    def sleep(seconds: float) -> None:
        if sleeping["stop"]:
            raise stop()

    async def async_sleep(seconds: float) -> None:
        sleep(seconds)

    retry = Retry("steps", attempts=2, registry=registry, sleep=sleep, async_sleep=async_sleep, jitter=0.0)
    for step in steps:
        sleeping["stop"] = step == "cancel_in_sleep"
        failures = _failures(step, stop)
        try:
            if use_async:
                asyncio.run(retry.call_async(Flaky(list(failures))))
            else:
                flaky = Flaky(list(failures))

                def once(flaky: Flaky = flaky) -> int:
                    flaky.calls += 1
                    if flaky.failures:
                        raise flaky.failures.pop(0)
                    return 1

                retry.call(once)
        except (Exception, Cancelled, asyncio.CancelledError):
            pass
    return retry.snapshot().calls


@pytest.mark.parametrize("use_async", [False, True])
@pytest.mark.parametrize("step", STEPS)
def test_each_outcome_is_counted_once_with_and_without_listeners(step: str, use_async: bool) -> None:
    for listened in (False, True):
        calls = _run_steps([step], listened, use_async)
        assert calls[EXPECTED[step]] == 1, (step, listened, calls)
        assert sum(calls.values()) == 1, (step, listened, calls)


def test_random_steps_count_the_same_with_and_without_listeners() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=60, deadline=None)
    @given(steps=st.lists(st.sampled_from(STEPS), max_size=12), use_async=st.booleans())
    def check(steps: list[str], use_async: bool) -> None:
        quiet = _run_steps(steps, False, use_async)
        listened = _run_steps(steps, True, use_async)
        assert quiet == listened
        for outcome in RetryOutcome:
            assert quiet[outcome.value] == sum(EXPECTED[step] == outcome.value for step in steps)

    check()


def test_a_task_cancelled_in_its_first_attempt_counts_once() -> None:
    """Real task cancellation, fast path (no listener) and listened path alike."""
    for listened in (False, True):
        registry = Registry()
        if listened:
            registry.bus.subscribe(lambda event: None)
        retry = Retry("cancel", registry=registry)

        async def main(retry: Retry = retry) -> None:
            started = asyncio.Event()

            async def hang() -> None:
                started.set()
                await asyncio.sleep(3600)

            task = asyncio.create_task(retry.call_async(hang))
            await asyncio.wait_for(started.wait(), 5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(task, 5)

        asyncio.run(main())
        assert retry.snapshot().calls["failed_without_retry"] == 1, listened
