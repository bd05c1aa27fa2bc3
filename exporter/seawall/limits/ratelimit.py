"""`RateLimiter`: at most `rate` calls per `per` seconds, `burst` at once, decided by GCRA.

GCRA (the generic cell rate algorithm) is a token bucket kept as one number: the theoretical
arrival time `tat` of the next call. A call at `now` is admitted when `tat - now` is within the
burst tolerance, and moves `tat` on by one interval (`per / rate`). One number instead of
(tokens, last refill) makes each decision a compare and an add, makes `retry_after` exact (the
instant the call would have been admitted), and fits one atomic Redis script with one key (see
`_redis_limiter`). Admission with `max_wait` reserves the slot at once and sleeps until its time,
so waiting callers keep their order and cannot over-admit.

The local backend keeps `tat` under a lock of its own; a `backend=` (e.g. `RedisBackend`) shares
the budget between processes and hosts, and the limiter applies its `failure_policy` when the
backend cannot decide ("open": admit, "closed": reject), counting and logging each such call.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import math
import time
from collections.abc import Awaitable, Callable
from threading import Lock
from typing import Any, ParamSpec, Protocol, TypeVar

from seawall.core.factory import obtain
from seawall.core.kinds import Kind, KindSpec, register_kind
from seawall.core.primitive import Primitive, given
from seawall.core.registry import Registry
from seawall.core.settings import check_callables
from seawall.core.snapshots import RateLimiterSnapshot
from seawall.events import RateLimited, RateLimiterBackendFailed
from seawall.limits.settings import RateLimiterSettings
from seawall.limits.timeout import remaining
from seawall.limits.wrap import decorate_gated

__all__ = ["Backend", "BackendUnavailable", "RateLimitedError", "RateLimiter", "rate_limiter"]

log = logging.getLogger("seawall")

P = ParamSpec("P")
R = TypeVar("R")

EPSILON = 1e-9  # seconds: float rounding in `tat` must not turn an exact retry_after into a rejection


class RateLimitedError(Exception):
    """The call would exceed the rate. `retry_after` is the exact wait until it would be admitted
    (None when the backend was down and the policy is closed with no known recovery time).

    `status_code` 429 makes `classify` call it rate_limit, so `Retry` retries it and waits
    `retry_after` when that fits its `max_delay` and deadline, as it does for `CircuitOpenError`.
    """

    status_code = 429

    def __init__(self, name: str, retry_after: float | None, backend: str = "local") -> None:
        super().__init__(name, retry_after, backend)
        self.name = name
        self.retry_after = retry_after
        self.backend = backend

    def __str__(self) -> str:
        after = "unknown" if self.retry_after is None else f"{self.retry_after:.3f}s"
        return f"rate limiter {self.name!r} ({self.backend}) refused the call; retry after {after}"


class BackendUnavailable(Exception):
    """A backend could not decide (unreachable, timed out, cooling off after a failure).
    `retry_after`: seconds until the backend is tried again, when known."""

    def __init__(self, error_type: str, retry_after: float | None = None) -> None:
        super().__init__(error_type, retry_after)
        self.error_type = error_type
        self.retry_after = retry_after


class Backend(Protocol):
    """Where a limiter's `tat` lives when it is shared. `take` returns (admitted, seconds):
    the wait before proceeding when admitted, else the exact retry_after. Raises
    BackendUnavailable when it cannot decide, never waiting past its own bounded timeout."""

    kind: str

    def take(self, key: str, interval: float, tolerance: float, max_wait: float) -> tuple[bool, float]: ...

    async def take_async(
        self, key: str, interval: float, tolerance: float, max_wait: float
    ) -> tuple[bool, float]: ...


class RateLimiter(Primitive[RateLimiterSettings]):
    """A named rate limit: decorator (sync or async), `call` / `call_async`, or `acquire()`."""

    __slots__ = (
        "_admitted",
        "_async_sleep",
        "_backend",
        "_backend_errors",
        "_backend_up",
        "_instant",
        "_interval",
        "_lock",
        "_on_backend_failed",
        "_on_limited",
        "_rejected",
        "_returned",
        "_sleep",
        "_tat",
        "_tolerance",
        "burst",
        "failure_policy",
        "max_wait",
        "per",
        "rate",
    )

    kind = Kind.RATE_LIMITER

    def __init__(
        self,
        name: str,
        rate: float | None = None,
        per: float | None = None,
        burst: int | None = None,
        *,
        settings: RateLimiterSettings | None = None,
        backend: Backend | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
        async_sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        registry: Registry | None = None,
        **overrides: Any,
    ) -> None:
        positional = given(rate=rate, per=per, burst=burst)
        super().__init__(name, settings=settings, clock=clock, registry=registry, **positional, **overrides)
        check_callables({"sleep": sleep, "async_sleep": async_sleep})
        if backend is not None and not callable(getattr(backend, "take", None)):
            raise TypeError(f"backend must have take() and take_async() (e.g. RedisBackend), got {backend!r}")
        self.rate: float = self.settings.rate
        self.per: float = self.settings.per
        self.burst: int = self.settings.burst or 1  # filled in by the settings
        self.max_wait: float = self.settings.max_wait
        self.failure_policy: str = self.settings.failure_policy
        self.injected.update(backend=backend, sleep=sleep, async_sleep=async_sleep)
        burst = self.burst
        self._interval = self.per / self.rate
        self._tolerance = self._interval * (burst - 1)  # a full bucket admits `burst` at once
        self._backend = backend
        self._instant = backend is None and self.max_wait == 0.0  # what `_admit_now` can decide
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._lock = Lock()
        self._tat = -math.inf
        self._returned: list[float] = []  # slot times given back by cancelled waiters, ascending
        self._admitted = self._rejected = self._backend_errors = 0
        self._backend_up = True
        self._on_limited = self.registry.bus.channel(RateLimited)
        self._on_backend_failed = self.registry.bus.channel(RateLimiterBackendFailed)
        self.registry.add(self)

    @property
    def backend(self) -> str:
        return "local" if self._backend is None else self._backend.kind

    @property
    def config(self) -> dict[str, Any]:
        return {**super().config, "backend": self.backend}

    def __repr__(self) -> str:
        return f"RateLimiter({self.name!r}, rate={self.rate!r}, per={self.per!r}, burst={self.burst})"

    def snapshot(self) -> RateLimiterSnapshot:
        with self._lock:
            tokens: float | None = None
            if self._backend is None:
                now = self._clock()
                ahead = self._tat - now if self._tat > now else 0.0
                tokens = min(float(self.burst), max(0.0, (self._tolerance - ahead) / self._interval + 1.0))
            return RateLimiterSnapshot(
                name=self.name,
                rate=self.rate,
                per=self.per,
                burst=self.burst,
                backend=self.backend,
                calls={"admitted": self._admitted, "rejected": self._rejected},
                available_tokens=tokens,
                backend_errors=self._backend_errors,
                backend_up=self._backend_up,
                failure_policy=self.failure_policy,
            )

    # -- decisions -------------------------------------------------------------------------------

    def _patience(self) -> float:
        """How long this call may wait for its slot: max_wait, cut by a deadline in scope."""
        patience = self.max_wait
        if patience > 0.0:
            left = remaining()
            if left is not None and left < patience:
                return left
        return patience

    def _take_local(self, patience: float) -> float:
        """Admit (returning the wait before proceeding) or raise RateLimitedError."""
        return self._reserve_local(patience)[0]

    def _reserve_local(self, patience: float) -> tuple[float, float]:
        """Admit: (the wait before proceeding, the slot's time), or raise RateLimitedError.
        A slot a cancelled waiter gave back is handed out first, when it is still ahead."""
        with self._lock:
            now = self._clock()
            returned = self._returned
            while returned and returned[0] <= now:
                returned.pop(0)  # its time passed with nobody waiting: the bucket refilled anyway
            if returned and returned[0] - now <= patience + EPSILON:
                slot = returned.pop(0)
                self._admitted += 1
                return slot - now, slot
            tat = self._tat if self._tat > now else now
            wait = tat - self._tolerance - now
            if wait <= patience + EPSILON:
                self._tat = tat + self._interval
                self._admitted += 1
                return (wait if wait > 0.0 else 0.0), now + wait
            self._rejected += 1
        raise self._limited(wait)

    def _give_back(self, slot: float) -> None:
        """A waiter was cancelled before its slot: the next waiter gets the slot instead. The
        newest reservation simply moves `tat` back; an earlier one is kept for the next caller."""
        with self._lock:
            if slot <= self._clock():
                return
            self._admitted -= 1
            if abs(self._tat - self._interval - self._tolerance - slot) <= EPSILON:
                self._tat -= self._interval
            else:
                bisect.insort(self._returned, slot)

    def _limited(self, retry_after: float | None) -> RateLimitedError:
        backend = self.backend
        if self._on_limited.listeners:
            self._on_limited.publish(RateLimited(self.name, backend, retry_after))
        return RateLimitedError(self.name, retry_after, backend)

    def _decided(self, admitted: bool, value: float) -> float:
        """Count a backend's decision; the wait when admitted, else raise RateLimitedError."""
        with self._lock:
            was_down, self._backend_up = not self._backend_up, True
            if admitted:
                self._admitted += 1
            else:
                self._rejected += 1
        if was_down:
            log.info("rate limiter %r: backend %s is deciding again", self.name, self.backend)
        if admitted:
            return value
        raise self._limited(value)

    def _undecided(self, failure: BackendUnavailable) -> float:
        """The backend could not decide: count it, log a change, apply the failure policy."""
        admit = self.failure_policy == "open"
        with self._lock:
            self._backend_errors += 1
            was_up, self._backend_up = self._backend_up, False
            if admit:
                self._admitted += 1
            else:
                self._rejected += 1
        if was_up:
            log.warning(
                "rate limiter %r: backend %s cannot decide (%s); failing %s (%s) until it can",
                self.name,
                self.backend,
                failure.error_type,
                self.failure_policy,
                "calls are admitted" if admit else "calls are refused",
            )
        if self._on_backend_failed.listeners:
            event = RateLimiterBackendFailed(self.name, self.backend, failure.error_type, self.failure_policy)
            self._on_backend_failed.publish(event)
        if admit:
            return 0.0
        raise self._limited(failure.retry_after)

    def acquire(self) -> None:
        """Take one call's share of the rate, sleeping up to `max_wait` for it, or raise
        RateLimitedError."""
        backend, patience = self._backend, self._patience()
        wait = self._take_local(patience) if backend is None else self._take_shared(backend, patience)
        if wait > 0.0:
            self._sleep(wait)

    def _take_shared(self, backend: Backend, patience: float) -> float:
        try:
            return self._decided(*backend.take(self.name, self._interval, self._tolerance, patience))
        except BackendUnavailable as failure:
            return self._undecided(failure)

    async def acquire_async(self) -> None:
        """`acquire` for async code: awaits its wait, and the shared backend without blocking.
        A local waiter cancelled before its slot gives the slot to the next waiter."""
        patience = self._patience()
        backend = self._backend
        if backend is None:
            wait, slot = self._reserve_local(patience)
            if wait > 0.0:
                try:
                    await self._async_sleep(wait)
                except asyncio.CancelledError:
                    self._give_back(slot)
                    raise
            return
        try:
            admitted, value = await backend.take_async(self.name, self._interval, self._tolerance, patience)
        except BackendUnavailable as failure:
            wait = self._undecided(failure)
        else:
            wait = self._decided(admitted, value)
        if wait > 0.0:
            await self._async_sleep(wait)

    # -- ways to call ----------------------------------------------------------------------------

    def _admit_now(self) -> bool:
        """The common case inlined: local, no waiting, a slot free now. False means "decide the
        long way" (which counts a rejection), never a rejection itself."""
        if not self._instant:
            return False
        with self._lock:
            now = self._clock()
            tat = self._tat if self._tat > now else now
            if tat - self._tolerance - now > EPSILON:
                return False
            self._tat = tat + self._interval
            self._admitted += 1
            return True

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        if not self._admit_now():
            self.acquire()
        return fn(*args, **kwargs)

    async def call_async(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        if not self._admit_now():
            await self.acquire_async()
        return await fn(*args, **kwargs)

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Decorate a function or `async def` function; the wrapper keeps its name and signature."""
        return decorate_gated(fn, self._admit_now, self.acquire, self.acquire_async)


def rate_limiter(
    name: str,
    rate: float | None = None,
    per: float | None = None,
    burst: int | None = None,
    *,
    registry: Registry | None = None,
    **options: Any,
) -> RateLimiter:
    """The rate limiter named `name` in the default registry (or `registry`), created on first
    use; asking again with other settings is a ValueError naming them."""
    positional = {"rate": rate, "per": per, "burst": burst}
    found: RateLimiter = obtain(Kind.RATE_LIMITER, name, registry, options, positional)
    return found


register_kind(KindSpec.of(RateLimiter, RateLimiterSnapshot, rate_limiter))
