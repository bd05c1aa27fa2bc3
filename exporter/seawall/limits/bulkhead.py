"""`Bulkhead`: at most `max_concurrent` calls inside at once; others wait up to `max_wait`, then
fail fast with `BulkheadFullError`.

One `threading.Lock` guards the count and the queue of waiters, for threads and asyncio tasks
alike (it is held for a few operations, never across a call or an await), so one bulkhead bounds
a dependency however the service calls it. A freed slot is handed to the first waiter still in
time, never released to whoever grabs it first: a waiter is admitted in arrival order and the
count cannot pass `max_concurrent` in between. A waiter whose time ran out is skipped and woken
to fail. Sync waiters block on a lock of their own with a timeout; async waiters await a future
with a timer on their loop. Waits are also cut short by a deadline in scope (`seawall.remaining()`).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import suppress
from threading import Lock
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from seawall.core.factory import obtain
from seawall.core.kinds import Kind, KindSpec, register_kind
from seawall.core.latency import DEFAULT_DURATION_BUCKETS, DurationHistogram
from seawall.core.primitive import Primitive, given
from seawall.core.registry import Registry
from seawall.core.snapshots import BulkheadSnapshot, HistogramSnapshot
from seawall.events import BulkheadRejected
from seawall.limits.settings import BulkheadSettings
from seawall.limits.timeout import remaining
from seawall.limits.wrap import decorate_gated

__all__ = ["Bulkhead", "BulkheadFullError", "bulkhead"]

P = ParamSpec("P")
R = TypeVar("R")


class BulkheadFullError(Exception):
    """Every slot was taken and none came free within `max_wait`.

    `status_code` 503 makes `classify` call it transient (a retry may find a slot) and tells a web
    layer what to answer. `retry_after` is None: when a slot frees up depends on calls in flight,
    which the bulkhead cannot know, so a retry uses its own backoff.
    """

    status_code = 503
    retry_after: float | None = None

    def __init__(self, name: str, max_concurrent: int, waited: float) -> None:
        super().__init__(name, max_concurrent, waited)
        self.name = name
        self.max_concurrent = max_concurrent
        self.waited = waited

    def __str__(self) -> str:
        return f"bulkhead {self.name!r} is full ({self.max_concurrent} in flight); waited {self.waited:.3f}s"


class _Waiter:
    """One queued call: `granted` is set (under the bulkhead's lock) when a slot is handed to it."""

    __slots__ = ("deadline", "future", "granted", "lock", "loop", "start")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.start = 0.0
        self.granted = False
        self.lock: Lock | None = None
        self.future: asyncio.Future[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def wake(self) -> bool:
        """Tell the waiter; False when it cannot hear it any more (its event loop is closed)."""
        if self.lock is not None:
            self.lock.release()
        elif self.loop is not None and self.future is not None:
            try:
                self.loop.call_soon_threadsafe(_resolve, self.future)
            except RuntimeError:  # the loop was closed with the waiter still queued
                return False
        return True


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Bulkhead(Primitive[BulkheadSettings]):
    """A named concurrency limit: decorator, `call` / `call_async`, `with` / `async with`."""

    __slots__ = (
        "_admitted",
        "_cancelled",
        "_immediate",
        "_in_flight",
        "_lock",
        "_on_rejected",
        "_rejected",
        "_wait",
        "_waiters",
        "max_concurrent",
        "max_wait",
    )

    kind = Kind.BULKHEAD

    def __init__(
        self,
        name: str,
        max_concurrent: int | None = None,
        max_wait: float | None = None,
        *,
        settings: BulkheadSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
        registry: Registry | None = None,
        **overrides: Any,
    ) -> None:
        positional = given(max_concurrent=max_concurrent, max_wait=max_wait)
        super().__init__(name, settings=settings, clock=clock, registry=registry, **positional, **overrides)
        self.max_concurrent: int = self.settings.max_concurrent
        self.max_wait: float = self.settings.max_wait
        self._lock = Lock()
        self._in_flight = 0
        self._waiters: deque[_Waiter] = deque()
        self._immediate = 0  # admitted without waiting (zero waits, added to the histogram when read)
        self._admitted = 0  # admitted after waiting
        self._rejected = 0
        self._cancelled = 0  # calls cancelled while queued for a slot
        self._wait = DurationHistogram(self.registry.duration_buckets or DEFAULT_DURATION_BUCKETS)
        self._on_rejected = self.registry.bus.channel(BulkheadRejected)
        self.registry.add(self)

    def __repr__(self) -> str:
        return f"Bulkhead({self.name!r}, max_concurrent={self.max_concurrent}, in_flight={self._in_flight})"

    def snapshot(self) -> BulkheadSnapshot:
        with self._lock:
            wait = self._wait.snapshot()
            immediate = self._immediate
            counts = (wait.counts[0] + immediate, *wait.counts[1:])
            return BulkheadSnapshot(
                name=self.name,
                max_concurrent=self.max_concurrent,
                max_wait=self.max_wait,
                in_flight=self._in_flight,
                waiting=len(self._waiters),
                calls={
                    "admitted": immediate + self._admitted,
                    "rejected": self._rejected,
                    "cancelled": self._cancelled,
                },
                wait=HistogramSnapshot(
                    wait.bounds,
                    counts,
                    wait.sum,
                    wait.count + immediate,
                    wait.max if wait.max is not None or not immediate else 0.0,  # immediate: waited 0
                ),
            )

    def record_durations(self, bounds: tuple[float, ...]) -> None:
        """Count waits in these buckets instead (an exporter asks before any call is counted)."""
        with self._lock:
            if bounds == self._wait.bounds:
                return
            if self._wait.snapshot().count or self._immediate:
                raise ValueError(
                    f"bulkhead {self.name!r} already counts waits in buckets {self._wait.bounds!r}"
                )
            self._wait = DurationHistogram(bounds)

    # -- admission (lock held only for bookkeeping) ----------------------------------------------

    def _enter_now(self) -> bool:
        """Take a free slot when nobody queues before us (lock held); a zero wait."""
        if self._in_flight < self.max_concurrent and not self._waiters:
            self._in_flight += 1
            self._immediate += 1
            return True
        return False

    def _queue(self, now: float) -> _Waiter | None:
        """A waiter in the queue, or None when this call may not wait (lock held)."""
        budget = self.max_wait
        if budget > 0.0:
            left = remaining()
            if left is not None and left < budget:
                budget = left
        if budget <= 0.0:
            return None
        waiter = _Waiter(now + budget)
        self._waiters.append(waiter)
        return waiter

    def _settle(self, waiter: _Waiter | None, start: float) -> float | None:
        """Count a waiter's end (lock held): None when it was granted a slot, else the seconds it
        waited before being rejected (the caller raises, outside the lock)."""
        waited = 0.0 if waiter is None else self._clock() - start
        self._wait.observe(waited)
        if waiter is not None and waiter.granted:
            self._admitted += 1
            return None
        if waiter is not None:
            with suppress(ValueError):  # unless a release already skipped it
                self._waiters.remove(waiter)
        self._rejected += 1
        return waited

    def _full(self, waited: float) -> BulkheadFullError:
        if self._on_rejected.listeners:
            self._on_rejected.publish(BulkheadRejected(self.name, self.max_concurrent, waited))
        return BulkheadFullError(self.name, self.max_concurrent, waited)

    def _release(self) -> None:
        """Hand the slot to the first waiter still in time, or free it; wake the late ones to fail."""
        late: list[_Waiter] = []
        heir: _Waiter | None = None
        with self._lock:
            if self._in_flight <= 0:
                # as threading.BoundedSemaphore: an unmatched release would be a slot too many for good
                raise ValueError(f"bulkhead {self.name!r}: release() without a matching acquire")
            waiters = self._waiters
            if not waiters:
                self._in_flight -= 1
                return
            now = self._clock()
            while waiters:
                waiter = waiters.popleft()
                if waiter.deadline > now:
                    waiter.granted = True
                    heir = waiter
                    break
                late.append(waiter)
            if heir is None:
                self._in_flight -= 1
        if heir is not None and not heir.wake():
            with self._lock:
                heir.granted = False  # nobody will use the slot it was handed: take it back
            self._release()  # and pass it on
        for waiter in late:
            waiter.wake()

    def _arrive(self, asynchronous: bool) -> _Waiter | float | None:
        """Admit at once (None), queue (the waiter, ready for a thread or for this loop) or reject
        (the seconds waited, 0.0)."""
        with self._lock:
            if self._enter_now():
                return None
            start = self._clock()
            waiter = self._queue(start)
            if waiter is None:
                return self._settle(None, start)
            waiter.start = start
            if asynchronous:
                waiter.loop = loop = asyncio.get_running_loop()
                waiter.future = loop.create_future()
            else:
                waiter.lock = Lock()
                waiter.lock.acquire()
            return waiter

    def acquire(self) -> None:
        """Take a slot (waiting up to `max_wait`) or raise BulkheadFullError; pair with `release()`."""
        arrival = self._arrive(False)
        if arrival is None:
            return
        if isinstance(arrival, _Waiter):
            assert arrival.lock is not None
            arrival.lock.acquire(timeout=arrival.deadline - arrival.start)
            with self._lock:
                arrival = self._settle(arrival, arrival.start)
            if arrival is None:
                return
        raise self._full(arrival)

    async def acquire_async(self) -> None:
        """Take a slot, awaiting one up to `max_wait`, or raise BulkheadFullError."""
        arrival = self._arrive(True)
        if arrival is None:
            return
        if isinstance(arrival, _Waiter):
            waiter, future = arrival, arrival.future
            assert future is not None
            assert waiter.loop is not None
            timer = waiter.loop.call_later(waiter.deadline - waiter.start, _resolve, future)
            try:
                await future
            except BaseException:  # cancelled while queued: leave the queue, or pass on a granted slot
                with self._lock:
                    self._cancelled += 1  # counted once, with the time it waited
                    self._wait.observe(self._clock() - waiter.start)
                    granted = waiter.granted
                    if not granted:
                        with suppress(ValueError):  # unless a release already took it out
                            self._waiters.remove(waiter)
                if granted:
                    self._release()
                raise
            finally:
                timer.cancel()
            with self._lock:
                arrival = self._settle(waiter, waiter.start)
            if arrival is None:
                return
        raise self._full(arrival)

    def release(self) -> None:
        """Give back a slot taken with `acquire()` / `acquire_async()`; one more release than
        acquires is a ValueError (it would add capacity), as `threading.BoundedSemaphore`'s."""
        self._release()

    # -- ways to call ----------------------------------------------------------------------------

    def _try_enter(self) -> bool:
        with self._lock:
            return self._enter_now()

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        if not self._try_enter():
            self.acquire()
        try:
            return fn(*args, **kwargs)
        finally:
            self._release()

    async def call_async(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        if not self._try_enter():
            await self.acquire_async()
        try:
            return await fn(*args, **kwargs)
        finally:
            self._release()

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Decorate a function or `async def` function; the wrapper keeps its name and signature."""
        return decorate_gated(fn, self._try_enter, self.acquire, self.acquire_async, self._release)

    def __enter__(self) -> Bulkhead:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._release()

    async def __aenter__(self) -> Bulkhead:
        await self.acquire_async()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._release()


def bulkhead(
    name: str,
    max_concurrent: int | None = None,
    max_wait: float | None = None,
    *,
    registry: Registry | None = None,
    **options: Any,
) -> Bulkhead:
    """The bulkhead named `name` in the default registry (or `registry`), created on first use;
    asking again with other settings is a ValueError naming them."""
    positional = {"max_concurrent": max_concurrent, "max_wait": max_wait}
    found: Bulkhead = obtain(Kind.BULKHEAD, name, registry, options, positional)
    return found


register_kind(KindSpec.of(Bulkhead, BulkheadSnapshot, bulkhead, timed=True))
