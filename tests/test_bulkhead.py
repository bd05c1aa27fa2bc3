"""Bulkhead: never more than max_concurrent inside (16 threads, 1,000 tasks), waiting in arrival
order up to max_wait (fake time), rejections, cancellation while queued, counts and bad input."""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
from collections.abc import Iterator

import pytest

import seawall
from conftest import FakeClock, run_threads
from fake_loop import run
from seawall import Bulkhead, BulkheadFullError, ErrorCategory, Registry, classify
from seawall.events import BulkheadRejected


class Occupancy:
    """How many calls are inside right now, and the most ever seen (its own lock)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.inside = 0
        self.most = 0

    def enter(self) -> int:
        with self.lock:
            self.inside += 1
            self.most = max(self.most, self.inside)
            return self.inside

    def leave(self) -> None:
        with self.lock:
            self.inside -= 1


@pytest.fixture
def fast_switching() -> Iterator[None]:
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads interleave inside the bulkhead as much as they can
    yield
    sys.setswitchinterval(before)


@pytest.mark.usefixtures("fast_switching")
def test_two_slots_never_hold_a_third_call_under_16_threads() -> None:
    bh = Bulkhead("db", 2, max_wait=30.0, registry=Registry())
    seen = Occupancy()
    both = threading.Event()  # the first call waits inside until a second one is in: both slots used

    def work() -> None:
        if seen.enter() == 2:
            both.set()
        both.wait(timeout=10)
        sum(range(200))  # long enough for other threads to try to get in
        seen.leave()

    def worker() -> None:
        for _ in range(200):
            bh.call(work)

    run_threads(16, worker)
    assert seen.most == 2
    snap = bh.snapshot()
    assert snap.calls == {"admitted": 3200, "rejected": 0, "cancelled": 0}
    assert (snap.in_flight, snap.waiting) == (0, 0)
    assert snap.wait.count == 3200


@pytest.mark.usefixtures("fast_switching")
def test_without_waiting_the_rest_are_rejected_and_counted() -> None:
    bh = Bulkhead("db", 2, registry=Registry())
    seen = Occupancy()
    rejected = []

    def work() -> None:
        seen.enter()
        sum(range(200))
        seen.leave()

    def worker() -> None:
        for _ in range(100):
            try:
                bh.call(work)
            except BulkheadFullError as exc:
                rejected.append(exc)

    run_threads(16, worker)
    assert seen.most <= 2
    snap = bh.snapshot()
    assert snap.calls["admitted"] + snap.calls["rejected"] == 1600
    assert snap.calls["rejected"] == len(rejected)
    assert all(exc.waited == 0.0 and exc.retry_after is None for exc in rejected)


def test_two_slots_never_hold_a_third_of_1000_tasks(fake_clock: FakeClock) -> None:
    bh = Bulkhead("db", 2, max_wait=600.0, clock=fake_clock, registry=Registry())
    seen = Occupancy()
    waiting_peak = []

    async def work() -> None:
        seen.enter()
        waiting_peak.append(bh.snapshot().waiting)
        await asyncio.sleep(0.1)
        seen.leave()

    async def main() -> None:
        await asyncio.gather(*(bh.call_async(work) for _ in range(1000)))

    run(main(), fake_clock)
    assert seen.most == 2
    assert max(waiting_peak) == 996  # the 3rd and 4th got in with 996 still queued
    snap = bh.snapshot()
    assert snap.calls == {"admitted": 1000, "rejected": 0, "cancelled": 0}
    assert (snap.in_flight, snap.waiting) == (0, 0)
    assert snap.wait.quantile(1.0) == pytest.approx(50.0, rel=0.5)  # the last waited ~49.9 s


def test_async_waiter_gives_up_at_max_wait(fake_clock: FakeClock) -> None:
    registry = Registry()
    seen: list[object] = []
    registry.bus.subscribe(seen.append, events=[BulkheadRejected])
    bh = Bulkhead("db", 1, max_wait=2.0, clock=fake_clock, registry=registry)
    start = fake_clock.now

    async def main() -> None:
        holder = asyncio.ensure_future(bh.call_async(asyncio.sleep, 10.0))
        await asyncio.sleep(0)
        with pytest.raises(BulkheadFullError) as caught:
            await bh.call_async(asyncio.sleep, 0.0)
        assert fake_clock.now == start + 2.0
        assert caught.value.waited == 2.0
        await holder

    run(main(), fake_clock)
    assert seen == [BulkheadRejected("db", 1, 2.0)]
    snap = bh.snapshot()
    assert snap.calls == {"admitted": 1, "rejected": 1, "cancelled": 0}
    assert snap.wait.sum == 2.0


def test_slots_go_to_waiters_in_arrival_order(fake_clock: FakeClock) -> None:
    bh = Bulkhead("db", 1, max_wait=60.0, clock=fake_clock, registry=Registry())
    order: list[int] = []

    async def work(number: int) -> None:
        order.append(number)
        await asyncio.sleep(1.0)

    async def main() -> None:
        await asyncio.gather(*(bh.call_async(work, n) for n in range(5)))

    run(main(), fake_clock)
    assert order == [0, 1, 2, 3, 4]


def test_cancelled_waiter_leaves_the_queue_and_the_slot_goes_on(fake_clock: FakeClock) -> None:
    bh = Bulkhead("db", 1, max_wait=60.0, clock=fake_clock, registry=Registry())

    async def main() -> None:
        holder = asyncio.ensure_future(bh.call_async(asyncio.sleep, 5.0))
        await asyncio.sleep(0)
        queued = asyncio.ensure_future(bh.call_async(asyncio.sleep, 0.0))
        await asyncio.sleep(1.0)
        assert bh.snapshot().waiting == 1
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
        assert bh.snapshot().waiting == 0
        await holder
        await bh.call_async(asyncio.sleep, 0.0)  # the slot came back

    run(main(), fake_clock)
    snap = bh.snapshot()
    assert snap.in_flight == 0
    # the cancelled waiter is counted once, as cancelled, with the second it waited
    assert snap.calls == {"admitted": 2, "rejected": 0, "cancelled": 1}
    assert snap.wait.count == 3
    assert snap.wait.sum == pytest.approx(1.0)


def test_sync_waiter_past_its_time_is_skipped_and_woken_to_fail(fake_clock: FakeClock) -> None:
    bh = Bulkhead("db", 1, max_wait=5.0, clock=fake_clock, registry=Registry())
    results: list[object] = []
    bh.acquire()  # the slot is taken

    def waiter() -> None:
        try:
            bh.call(results.append, "ran")
        except BulkheadFullError as exc:
            results.append(exc.waited)

    thread = threading.Thread(target=waiter)
    thread.start()
    for _ in range(1000):  # bounded: wait until it is queued
        if bh.snapshot().waiting:
            break
        threading.Event().wait(0.001)
    assert bh.snapshot().waiting == 1
    fake_clock.advance(6.0)  # its max_wait is over in fake time; the release must not hand it the slot
    bh.release()
    thread.join(timeout=10)
    assert results == [6.0]
    assert bh.snapshot().in_flight == 0


def test_sync_waiter_gets_the_freed_slot() -> None:
    bh = Bulkhead("db", 1, max_wait=30.0, registry=Registry())
    results: list[str] = []
    with bh:
        thread = threading.Thread(target=lambda: bh.call(results.append, "ran"))
        thread.start()
        for _ in range(1000):
            if bh.snapshot().waiting:
                break
            threading.Event().wait(0.001)
        assert results == []
    thread.join(timeout=10)
    assert results == ["ran"]
    assert bh.snapshot().calls == {"admitted": 2, "rejected": 0, "cancelled": 0}


def test_waiting_is_cut_short_by_a_deadline_in_scope(fake_clock: FakeClock) -> None:
    bh = Bulkhead("db", 1, max_wait=30.0, clock=fake_clock, registry=Registry())
    start = fake_clock.now

    async def main() -> None:
        holder = asyncio.ensure_future(bh.call_async(asyncio.sleep, 100.0))
        await asyncio.sleep(0)
        with seawall.within(3.0, clock=fake_clock), pytest.raises(BulkheadFullError):
            await bh.call_async(asyncio.sleep, 0.0)
        assert fake_clock.now == start + 3.0
        holder.cancel()

    run(main(), fake_clock)


def test_decorator_context_managers_and_classification() -> None:
    bh = Bulkhead("db", 1, registry=Registry())

    @bh
    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    assert add(1, 2) == 3
    assert add.__name__ == "add"
    with bh:
        with pytest.raises(BulkheadFullError, match="bulkhead 'db' is full"):
            add(1, 2)
        assert bh.snapshot().in_flight == 1

    async def main() -> None:
        async with bh:
            assert bh.snapshot().in_flight == 1

    asyncio.run(main())
    assert classify(BulkheadFullError("db", 1, 0.0)) is ErrorCategory.TRANSIENT
    assert bh.snapshot().in_flight == 0
    assert bh.snapshot().calls == {"admitted": 3, "rejected": 1, "cancelled": 0}


def test_get_or_create_and_registry() -> None:
    registry = Registry()
    bh = seawall.bulkhead("db", 4, 0.5, registry=registry)
    assert seawall.bulkhead("db", 4, 0.5, registry=registry) is bh
    assert registry.items("bulkhead") == [bh]
    assert bh.config == {"max_concurrent": 4, "max_wait": 0.5}
    with pytest.raises(ValueError, match="max_concurrent"):
        seawall.bulkhead("db", 5, registry=registry)


@pytest.mark.parametrize(
    ("args", "error", "text"),
    [
        (("", 1), ValueError, "name must be a non-empty str"),
    ],
)
def test_bad_settings_name_the_field(args: tuple[object, ...], error: type[Exception], text: str) -> None:
    with pytest.raises(error, match=text):
        Bulkhead(*args, registry=Registry())  # type: ignore[arg-type]


def test_a_slot_handed_to_a_waiter_whose_loop_closed_goes_on(fake_clock: FakeClock) -> None:
    bh = Bulkhead("db", 1, max_wait=60.0, clock=fake_clock, registry=Registry())
    bh.acquire()
    loop = asyncio.new_event_loop()
    queued = loop.create_task(bh.acquire_async())
    loop.run_until_complete(asyncio.sleep(0))  # the task is queued for a slot
    assert bh.snapshot().waiting == 1
    loop.close()  # abandoned with the task still waiting (its coroutine never resumes)
    bh.release()  # the slot cannot reach it: it must come free instead of leaking
    snap = bh.snapshot()
    assert (snap.in_flight, snap.waiting) == (0, 0)
    del queued  # its coroutine is closed when collected: that must not give back a slot twice
    gc.collect()
    assert bh.snapshot().in_flight == 0
    bh.acquire()
    assert bh.snapshot().in_flight == 1


def test_an_exporter_can_choose_the_wait_buckets_before_calls_are_counted() -> None:
    bh = Bulkhead("db", 1, registry=Registry())
    bh.record_durations((0.1, 1.0))
    bh.call(lambda: None)
    assert bh.snapshot().wait.bounds == (0.1, 1.0)
    with pytest.raises(ValueError, match="already counts waits"):
        bh.record_durations((0.5,))


def test_a_release_without_a_matching_acquire_is_an_error_not_a_slot_more() -> None:
    pool = Bulkhead("unmatched", 1, registry=Registry())
    with pytest.raises(ValueError, match="'unmatched': release\\(\\) without a matching acquire"):
        pool.release()
    pool.acquire()
    pool.release()
    with pytest.raises(ValueError, match="without a matching acquire"):
        pool.release()
    pool.acquire()  # still exactly one slot: the refused releases added none
    with pytest.raises(BulkheadFullError):
        pool.acquire()
    assert pool.snapshot().in_flight == 1
    pool.release()
    assert pool.snapshot().in_flight == 0
