"""`Timeout`: bound how long a call may take, and tell the call how long it has left.

Async calls are cancelled at the deadline with asyncio's own cancellation (a timer on the running
loop cancels the task; the `CancelledError` is turned into `CallTimeoutError` only when this
timeout caused it, so a caller's own cancellation goes on as cancellation).

Sync calls cannot be interrupted safely in Python: a thread cannot be stopped from outside, and
walking away from it (running it in a worker and returning early) leaves it running, holding its
connection, its locks and a bulkhead slot, while the caller believes it is over. So a sync timeout
is a deadline the call runs under: `seawall.remaining()` tells it the seconds left so it can size
its own I/O timeouts (`requests.get(url, timeout=seawall.remaining())`), a call that starts with
no time left is refused at once, and a call that ends after its deadline raises `CallTimeoutError`
(its result is dropped, as an async call's would be) and is counted as timed out. Nothing here
pretends a running thread was stopped.

Deadlines nest through a context variable: an inner timeout gets `min(its seconds, what the
outer deadline leaves)`, so the inner one never outlives the outer (`seawall.policy` puts a
retry's `deadline` in scope the same way).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from threading import Lock
from typing import Any, ParamSpec, TypeAlias, TypeVar, cast

from seawall.core.factory import obtain
from seawall.core.kinds import Kind, KindSpec, register_kind
from seawall.core.latency import DEFAULT_DURATION_BUCKETS, DurationHistogram
from seawall.core.primitive import Primitive, given
from seawall.core.registry import Registry, default_registry
from seawall.core.settings import check_duration
from seawall.core.snapshots import TimeoutSnapshot
from seawall.events import CallTimedOut
from seawall.limits.expiry import Expiry, ExpiryWheel, uncancel
from seawall.limits.settings import TimeoutSettings

__all__ = ["CallTimeoutError", "Timeout", "remaining", "timeout", "within"]


P = ParamSpec("P")
R = TypeVar("R")


# The nearest deadline in scope: (instant, the clock it is on); nested timeouts may use other clocks.
_Deadline: TypeAlias = "tuple[float, Callable[[], float]]"
_scope: ContextVar[_Deadline | None] = ContextVar("seawall_deadline", default=None)
_current, _enter, _leave = _scope.get, _scope.set, _scope.reset  # bound once: the hot path's lookups


def remaining() -> float | None:
    """Seconds left before the nearest deadline in scope (0.0 once it has passed), or None when the
    current call runs under no timeout. Size your own I/O timeouts with it."""
    deadline = _scope.get()
    if deadline is None:
        return None
    left = deadline[0] - deadline[1]()
    return left if left > 0.0 else 0.0


@contextmanager
def within(seconds: float, clock: Callable[[], float] = time.monotonic) -> Iterator[None]:
    """Put a deadline `seconds` from now in scope (nearer outer deadlines still win), so timeouts
    and `remaining()` inside see it. It bounds nothing by itself."""
    seconds = check_duration("seconds", seconds)
    outer = _scope.get()
    keep = outer is not None and outer[0] - outer[1]() <= seconds
    token = _scope.set(outer if keep else (clock() + seconds, clock))
    try:
        yield
    finally:
        _scope.reset(token)


class CallTimeoutError(TimeoutError):
    """A call overran its timeout. A `TimeoutError`, so `classify` calls it transient and retries
    and breakers treat it as the dependency's failure.

    `name`, `seconds` (the budget it had: less than the timeout's own when an outer deadline was
    nearer), `elapsed`, and `cancelled` (True when the call was cancelled, False when a sync call
    ran to its end).
    """

    def __init__(self, name: str, seconds: float, elapsed: float, cancelled: bool) -> None:
        super().__init__(name)  # OSError keeps only two constructor arguments in args
        self.name = name
        self.seconds = seconds
        self.elapsed = elapsed
        self.cancelled = cancelled

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.name, self.seconds, self.elapsed, self.cancelled))

    def __str__(self) -> str:
        how = "cancelled" if self.cancelled else "a sync call runs to its end: it was not interrupted"
        return f"timeout {self.name!r}: {self.elapsed:.3f}s is over the {self.seconds:.3f}s budget ({how})"


class Timeout(Primitive[TimeoutSettings]):
    """A named time budget for calls: decorator (sync or async), `call` or `call_async`.

    Counts success, failure, timed_out and cancelled (the caller's cancellation, an outer
    deadline's, KeyboardInterrupt), and every call's duration, itself (`snapshot()`);
    publishes `CallTimedOut` as an overrun happens, when someone listens.
    """

    __slots__ = (
        "_cancelled",
        "_durations",
        "_failed",
        "_lock",
        "_on_timed_out",
        "_seconds",
        "_timed_out",
        "_wheel",
        "_wheels",
    )

    kind = Kind.TIMEOUT

    def __init__(
        self,
        name: str,
        seconds: float | None = None,
        *,
        settings: TimeoutSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
        registry: Registry | None = None,
        **overrides: Any,
    ) -> None:
        positional = given(seconds=seconds)
        super().__init__(name, settings=settings, clock=clock, registry=registry, **positional, **overrides)
        self._seconds = self.settings.seconds
        self._lock = Lock()
        # Every finished call is one observation; successes are the observations that are neither
        # failures nor timeouts, so the success path only records its duration (lock-free).
        self._durations = DurationHistogram(self.registry.duration_buckets or DEFAULT_DURATION_BUCKETS)
        self._failed = self._timed_out = self._cancelled = 0
        self._wheels: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ExpiryWheel] = (
            weakref.WeakKeyDictionary()
        )
        self._wheel: ExpiryWheel | None = None  # the last loop's, checked first
        self._on_timed_out = self.registry.bus.channel(CallTimedOut)
        self.registry.add(self)

    @property
    def seconds(self) -> float:
        return self._seconds

    def __repr__(self) -> str:
        return f"Timeout({self.name!r}, {self._seconds!r})"

    def snapshot(self) -> TimeoutSnapshot:
        with self._lock:
            durations = self._durations.snapshot()
            failed, timed_out, cancelled = self._failed, self._timed_out, self._cancelled
        calls = {
            "success": durations.count - failed - timed_out - cancelled,
            "failure": failed,
            "timed_out": timed_out,
            "cancelled": cancelled,
        }
        return TimeoutSnapshot(self.name, self._seconds, calls, durations)

    def record_durations(self, bounds: tuple[float, ...]) -> None:
        """Count durations in these buckets instead (an exporter asks before any call is counted)."""
        with self._lock:
            if bounds == self._durations.bounds:
                return
            if self._durations.snapshot().count:
                raise ValueError(
                    f"timeout {self.name!r} already counts durations in buckets {self._durations.bounds!r}"
                )
            self._durations = DurationHistogram(bounds)

    # -- bookkeeping -----------------------------------------------------------------------------

    def _budget(self) -> float:
        """This call's seconds: the timeout's own, or what an outer deadline leaves when that is less."""
        outer = _scope.get()
        if outer is None:
            return self._seconds
        left = outer[0] - outer[1]()
        return left if left < self._seconds else self._seconds

    def _succeeded(self, elapsed: float) -> None:
        """Count a success: its duration, without a lock (`DurationHistogram.observe`)."""
        self._durations.observe(elapsed)

    def _observe(self, elapsed: float, outcome: str) -> None:
        """Count a failed, timed-out or cancelled call (rare: its outcome under the lock)."""
        with self._lock:
            self._durations.observe(elapsed)
            if outcome == "failure":
                self._failed += 1
            elif outcome == "cancelled":
                self._cancelled += 1
            else:
                self._timed_out += 1

    def _overran(self, budget: float, elapsed: float, cancelled: bool) -> CallTimeoutError:
        self._observe(elapsed, "timed_out")
        if self._on_timed_out.listeners:
            self._on_timed_out.publish(CallTimedOut(self.name, budget, elapsed, cancelled))
        return CallTimeoutError(self.name, budget, elapsed, cancelled)

    # -- ways to call ----------------------------------------------------------------------------

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run `fn` under this deadline; raises CallTimeoutError when it ends after it (see module doc)."""
        return self._guard(fn)(*args, **kwargs)

    async def call_async(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Await `fn`; cancel it at the deadline and raise CallTimeoutError (a caller's own
        cancellation is re-raised as CancelledError)."""
        return await self._guard_async(fn)(*args, **kwargs)

    # The bodies are closures over `fn`, so the decorator's wrapper is the body itself (one frame,
    # or one coroutine, per call instead of two).

    def _guard(self, fn: Callable[P, R]) -> Callable[P, R]:
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            clock = self._clock
            start = clock()
            budget = self._seconds
            outer = _current()
            if outer is not None:  # `_budget()` inlined, reading the clock once when it is the same
                left = outer[0] - (start if outer[1] is clock else outer[1]())
                if left < budget:
                    budget = left
                    if budget <= 0.0:
                        raise self._overran(0.0, 0.0, False)
            token = _enter((start + budget, clock))
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                elapsed = clock() - start
                if elapsed >= budget:
                    raise self._overran(budget, elapsed, False) from exc
                self._observe(elapsed, "failure")
                raise
            except BaseException:
                self._observe(clock() - start, "cancelled")
                raise
            finally:
                _leave(token)
            elapsed = clock() - start
            if elapsed >= budget:
                raise self._overran(budget, elapsed, False)
            self._durations.observe(elapsed)
            return result

        return run

    def _guard_async(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        async def run(*args: P.args, **kwargs: P.kwargs) -> R:
            clock = self._clock
            budget = self._budget()
            if budget <= 0.0:
                raise self._overran(0.0, 0.0, False)
            task = asyncio.current_task()
            if task is None:
                raise RuntimeError(f"timeout {self.name!r}: call_async must run inside an asyncio task")
            cancelling = task.cancelling() if hasattr(task, "cancelling") else 0
            loop = task.get_loop()
            start = clock()
            expiry = Expiry(task, loop.time() + budget)
            handle: asyncio.TimerHandle | None = None
            if budget == self._seconds:  # in start order with this timeout's other calls on the loop
                wheel = self._wheel
                if wheel is None or wheel.loop is not loop:
                    wheel = self._wheel_of(loop)
                wheel.add(expiry)
            else:  # cut short by an outer deadline: out of order, so a timer of its own
                handle = loop.call_at(expiry.at, expiry)
            token = _scope.set((start + budget, clock))
            try:
                result = await fn(*args, **kwargs)
            except asyncio.CancelledError:
                if not expiry.fired or uncancel(task) > cancelling:
                    # the caller's cancellation (perhaps as well as ours), or an outer deadline's
                    self._observe(clock() - start, "cancelled")
                    raise
                raise self._overran(budget, clock() - start, True) from None
            except Exception as exc:
                if expiry.fired:  # fn turned our cancellation into another error
                    uncancel(task)
                    raise self._overran(budget, clock() - start, True) from exc
                self._observe(clock() - start, "failure")
                raise
            except BaseException:
                self._observe(clock() - start, "cancelled")
                raise
            finally:
                expiry.finish()
                if handle is not None:
                    handle.cancel()
                _scope.reset(token)
            if expiry.fired:  # fn swallowed our cancellation and returned: still over its deadline
                uncancel(task)
                raise self._overran(budget, clock() - start, True)
            self._succeeded(clock() - start)
            return result

        return run

    def _wheel_of(self, loop: asyncio.AbstractEventLoop) -> ExpiryWheel:
        """This timeout's wheel on `loop` (one per loop: each loop runs in its own thread)."""
        with self._lock:
            wheel = self._wheels.get(loop)
            if wheel is None:
                wheel = self._wheels[loop] = ExpiryWheel(loop)
        self._wheel = wheel
        return wheel

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Decorate a function or `async def` function; the wrapper keeps its name and signature."""
        if inspect.iscoroutinefunction(fn):
            run_async = self._guard_async(cast(Callable[P, Awaitable[Any]], fn))
            return cast(Callable[P, R], functools.wraps(fn)(run_async))
        return functools.wraps(fn)(self._guard(fn))


def timeout(
    name: str, seconds: float | None = None, *, registry: Registry | None = None, **options: Any
) -> Timeout:
    """The timeout named `name` in the default registry (or `registry`), created on first use with
    `seconds`; without `seconds` it only looks the timeout up. Other settings: a ValueError."""
    reg = default_registry() if registry is None else registry
    if seconds is None and reg.get(Kind.TIMEOUT, name) is None:
        raise ValueError(f"timeout {name!r} does not exist yet: give seconds= to create it")
    found: Timeout = obtain(Kind.TIMEOUT, name, reg, options, {"seconds": seconds})
    return found


register_kind(KindSpec.of(Timeout, TimeoutSnapshot, timeout, timed=True))
