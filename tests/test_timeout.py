"""Timeout: async cancellation at the deadline (on a fake-time loop), the sync deadline design,
nesting, counts, events and bad input."""

from __future__ import annotations

import asyncio
import inspect
import sys

import pytest

import seawall
from conftest import FakeClock, decorated_store, run_threads
from fake_loop import run
from seawall import CallTimeoutError, ErrorCategory, Registry, Timeout, classify
from seawall.events import CallTimedOut


def make(clock: FakeClock, seconds: float = 1.0, registry: Registry | None = None) -> Timeout:
    return Timeout("dep", seconds, clock=clock, registry=registry or Registry())


def test_async_overrun_is_cancelled_at_its_deadline(fake_clock: FakeClock) -> None:
    start = fake_clock.now
    tm = make(fake_clock, 1.0)
    seen: dict[str, float] = {}

    async def slow() -> str:
        try:
            await asyncio.sleep(10.0)
        except asyncio.CancelledError:
            seen["cancelled_at"] = fake_clock.now
            raise
        return "late"

    async def main() -> None:
        with pytest.raises(CallTimeoutError) as caught:
            await tm.call_async(slow)
        seen["raised_at"] = fake_clock.now
        assert caught.value.cancelled is True
        assert caught.value.seconds == 1.0
        assert isinstance(caught.value, TimeoutError)
        assert caught.value.__suppress_context__  # the CancelledError is ours, not the caller's concern

    run(main(), fake_clock)
    # the timer fires at the deadline and the cancellation lands in the same loop iteration
    assert seen == {"cancelled_at": start + 1.0, "raised_at": start + 1.0}
    snap = tm.snapshot()
    assert snap.calls == {"success": 0, "failure": 0, "timed_out": 1, "cancelled": 0}
    assert snap.durations.count == 1
    assert snap.durations.sum == pytest.approx(1.0)


def test_async_success_and_failure_are_counted_and_the_timer_is_dropped(fake_clock: FakeClock) -> None:
    tm = make(fake_clock, 5.0)

    @tm
    async def work(fail: bool) -> str:
        await asyncio.sleep(0.5)
        if fail:
            raise ConnectionError("down")
        return "ok"

    async def main() -> None:
        assert await work(False) == "ok"
        with pytest.raises(ConnectionError):
            await work(True)
        await asyncio.sleep(60.0)  # a left-over timer would cancel this sleep

    run(main(), fake_clock)
    snap = tm.snapshot()
    assert snap.calls == {"success": 1, "failure": 1, "timed_out": 0, "cancelled": 0}
    assert snap.durations.count == 2
    assert snap.durations.quantile(0.5) is not None


def test_the_callers_own_cancellation_stays_cancellation(fake_clock: FakeClock) -> None:
    tm = make(fake_clock, 5.0)

    async def main() -> None:
        task = asyncio.ensure_future(tm.call_async(asyncio.sleep, 10.0))
        await asyncio.sleep(1.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main(), fake_clock)
    # counted once, as cancelled (it used to be counted in no outcome), with its duration
    snap = tm.snapshot()
    assert snap.calls == {"success": 0, "failure": 0, "timed_out": 0, "cancelled": 1}
    assert snap.durations.count == 1
    assert snap.durations.sum == pytest.approx(1.0)


def test_an_outer_asyncio_timeout_counts_as_cancelled(fake_clock: FakeClock) -> None:
    if not hasattr(asyncio, "timeout"):
        pytest.skip("asyncio.timeout is 3.11+")
    tm = make(fake_clock, 5.0)

    async def main() -> None:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.0):
                await tm.call_async(asyncio.sleep, 10.0)

    run(main(), fake_clock)
    assert tm.snapshot().calls == {"success": 0, "failure": 0, "timed_out": 0, "cancelled": 1}


def test_a_sync_call_interrupted_counts_as_cancelled(fake_clock: FakeClock) -> None:
    tm = make(fake_clock, 5.0)

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tm.call(interrupted)
    assert tm.snapshot().calls == {"success": 0, "failure": 0, "timed_out": 0, "cancelled": 1}


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Task.uncancel is 3.11+")
def test_a_caller_cancelling_at_the_deadline_wins(fake_clock: FakeClock) -> None:
    tm = make(fake_clock, 2.0)

    async def main() -> None:
        task = asyncio.ensure_future(tm.call_async(asyncio.sleep, 10.0))
        await asyncio.sleep(0)  # let it start and arm its timer
        asyncio.get_running_loop().call_at(fake_clock.now + 2.0, task.cancel)
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main(), fake_clock)


def test_a_function_swallowing_the_cancellation_still_times_out(fake_clock: FakeClock) -> None:
    tm = make(fake_clock, 1.0)

    async def stubborn() -> str:
        try:
            await asyncio.sleep(10.0)
        except asyncio.CancelledError:
            return "swallowed"
        return "late"

    async def main() -> None:
        with pytest.raises(CallTimeoutError):
            await tm.call_async(stubborn)
        await asyncio.sleep(1.0)  # our cancellation request was withdrawn: this is not cancelled

    run(main(), fake_clock)
    assert tm.snapshot().calls["timed_out"] == 1


def test_inner_timeout_never_outlives_the_outer(fake_clock: FakeClock) -> None:
    registry = Registry()
    outer = Timeout("outer", 2.0, clock=fake_clock, registry=registry)
    inner = Timeout("inner", 5.0, clock=fake_clock, registry=registry)
    start = fake_clock.now
    seen: list[float | None] = []

    async def body() -> None:
        seen.append(seawall.remaining())
        await asyncio.sleep(10.0)

    async def main() -> None:
        with pytest.raises(CallTimeoutError):
            await outer.call_async(inner.call_async, body)

    run(main(), fake_clock)
    assert seen == [2.0]
    assert fake_clock.now == start + 2.0


def test_sync_call_runs_under_a_deadline_it_can_read(fake_clock: FakeClock) -> None:
    tm = make(fake_clock, 2.0)
    seen: list[float | None] = []

    def work(cost: float) -> str:
        seen.append(seawall.remaining())
        fake_clock.advance(cost)
        seen.append(seawall.remaining())
        return "done"

    assert seawall.remaining() is None
    assert tm.call(work, 0.5) == "done"
    assert seen == [2.0, 1.5]
    with pytest.raises(CallTimeoutError) as caught:
        tm.call(work, 3.0)  # runs to its end (nothing can stop it), then is reported late
    assert caught.value.cancelled is False
    assert caught.value.elapsed == 3.0
    assert "not interrupted" in str(caught.value)
    assert seen[-1] == 0.0
    assert seawall.remaining() is None
    assert tm.snapshot().calls == {"success": 1, "failure": 0, "timed_out": 1, "cancelled": 0}


def test_sync_failure_after_the_deadline_is_a_timeout_caused_by_it(fake_clock: FakeClock) -> None:
    tm = make(fake_clock, 1.0)

    def read() -> None:
        fake_clock.advance(1.5)
        raise OSError("socket timed out")  # e.g. an I/O timeout sized from remaining()

    with pytest.raises(CallTimeoutError) as caught:
        tm.call(read)
    assert isinstance(caught.value.__cause__, OSError)

    def fails_fast() -> None:
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        tm.call(fails_fast)
    assert tm.snapshot().calls == {"success": 0, "failure": 1, "timed_out": 1, "cancelled": 0}


def test_no_time_left_refuses_before_calling(fake_clock: FakeClock) -> None:
    registry = Registry()
    outer = Timeout("outer", 1.0, clock=fake_clock, registry=registry)
    inner = Timeout("inner", 5.0, clock=fake_clock, registry=registry)
    called: list[str] = []

    def step() -> None:
        fake_clock.advance(1.0)
        try:
            inner.call(called.append, "inner ran")
        except CallTimeoutError as exc:
            called.append(f"refused with {exc.seconds}")

    with pytest.raises(CallTimeoutError):
        outer.call(step)
    assert called == ["refused with 0.0"]
    assert inner.snapshot().calls["timed_out"] == 1


def test_within_puts_a_deadline_in_scope(fake_clock: FakeClock) -> None:
    tm = make(fake_clock, 10.0)
    with seawall.within(3.0, clock=fake_clock):
        assert seawall.remaining() == 3.0
        with seawall.within(5.0, clock=fake_clock):
            assert seawall.remaining() == 3.0  # the nearer outer deadline wins
        assert tm.call(seawall.remaining) == 3.0
    assert seawall.remaining() is None


def test_timeouts_classify_as_transient_and_retries_retry_them(fake_clock: FakeClock) -> None:
    registry = Registry()
    tm = Timeout("dep", 1.0, clock=fake_clock, registry=registry)
    rt = seawall.Retry("dep", attempts=3, initial=0.0, sleep=lambda s: None, registry=registry)
    costs = [2.0, 2.0, 0.1]

    @rt
    @tm
    def call() -> str:
        fake_clock.advance(costs.pop(0))
        return "ok"

    assert classify(CallTimeoutError("x", 1.0, 2.0, False)) is ErrorCategory.TRANSIENT
    assert call() == "ok"
    assert tm.snapshot().calls == {"success": 1, "failure": 0, "timed_out": 2, "cancelled": 0}


def test_events_only_for_overruns_and_snapshot_publishes_nothing(fake_clock: FakeClock) -> None:
    registry = Registry()
    seen: list[object] = []
    registry.bus.subscribe(seen.append)
    tm = Timeout("dep", 1.0, clock=fake_clock, registry=registry)
    seen.clear()  # PrimitiveRegistered
    tm.call(lambda: None)
    tm.snapshot()
    assert seen == []
    with pytest.raises(CallTimeoutError):
        tm.call(fake_clock.advance, 4.0)
    assert seen == [CallTimedOut("dep", 1.0, 4.0, False)]
    assert registry.items("timeout") == [tm]


def test_get_or_create_and_config() -> None:
    registry = Registry()
    tm = seawall.timeout("db", 2, registry=registry)
    assert seawall.timeout("db", 2.0, registry=registry) is tm
    assert seawall.timeout("db", registry=registry) is tm
    assert tm.config == {"seconds": 2.0}
    with pytest.raises(ValueError, match="seconds"):
        seawall.timeout("db", 3.0, registry=registry)
    with pytest.raises(ValueError, match="does not exist"):
        seawall.timeout("other", registry=registry)


@pytest.mark.parametrize(
    ("kwargs", "error", "text"),
    [
        ({"name": "", "seconds": 1.0}, ValueError, "name"),
        ({"name": "x", "seconds": 1.0, "clock": 3}, TypeError, "clock must be callable"),
    ],
)
def test_bad_settings_name_the_field(kwargs: dict[str, object], error: type[Exception], text: str) -> None:
    with pytest.raises(error, match=text):
        Timeout(registry=Registry(), **kwargs)  # type: ignore[arg-type]


def test_counts_stay_exact_under_threads() -> None:
    tm = Timeout("dep", 60.0, registry=Registry())
    call = tm(lambda: None)

    def worker() -> None:
        for _ in range(1000):
            call()

    run_threads(16, worker)
    snap = tm.snapshot()
    assert snap.calls == {"success": 16000, "failure": 0, "timed_out": 0, "cancelled": 0}
    assert snap.durations.count == 16000
    assert sum(snap.durations.counts) == 16000


def test_many_calls_each_cancelled_at_their_own_deadline(fake_clock: FakeClock) -> None:
    tm = make(fake_clock, 1.0)
    start = fake_clock.now
    cancelled_at: dict[int, float] = {}

    async def call(number: int) -> None:
        await asyncio.sleep(number * 0.01)  # staggered starts
        began = fake_clock.now
        try:
            await tm.call_async(asyncio.sleep, 0.5 if number % 2 else 10.0)  # odd ones finish in time
        except CallTimeoutError:
            cancelled_at[number] = fake_clock.now - began

    async def main() -> None:
        await asyncio.gather(*(call(n) for n in range(100)))

    run(main(), fake_clock)
    assert sorted(cancelled_at) == list(range(0, 100, 2))
    assert list(cancelled_at.values()) == pytest.approx([1.0] * 50)  # each at its own deadline
    assert tm.snapshot().calls == {"success": 50, "failure": 0, "timed_out": 50, "cancelled": 0}
    assert fake_clock.now - start == pytest.approx(0.98 + 1.0)
    assert all(len(wheel) == 0 for wheel in tm._wheels.values())  # nothing left behind


def test_decorated_functions_and_methods_keep_their_names(fake_clock: FakeClock) -> None:
    tm = make(fake_clock, 5.0)
    Store = decorated_store(tm)
    store = Store()
    assert store.get("a") == "A"
    assert (Store.get.__name__, Store.get.__doc__) == ("get", "Get a key.")
    assert inspect.iscoroutinefunction(Store.aget)
    assert run(store.aget("b"), fake_clock) == "b"
    assert tm.snapshot().calls["success"] == 2


def test_an_exporter_can_choose_the_buckets_before_calls_are_counted(fake_clock: FakeClock) -> None:
    tm = make(fake_clock, 5.0)
    tm.record_durations((0.1, 1.0))
    tm.call(fake_clock.advance, 0.5)
    snap = tm.snapshot()
    assert (snap.durations.bounds, snap.durations.counts) == ((0.1, 1.0), (0, 1, 0))
    tm.record_durations((0.1, 1.0))  # the same again is fine
    with pytest.raises(ValueError, match="already counts durations"):
        tm.record_durations((0.5,))
