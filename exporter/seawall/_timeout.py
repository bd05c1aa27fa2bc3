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
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from threading import Lock
from typing import Any, ParamSpec, TypeVar, cast

from ._latency import DEFAULT_DURATION_BUCKETS, DurationHistogram
from ._registry import Registry, default_registry
from ._snapshots import TimeoutSnapshot
from ._wrap import check_identity, decorate
from ._wrap import seconds as seconds_of
from .events import CallTimedOut

__all__ = ["CallTimeoutError", "Timeout", "remaining", "timeout", "within"]

P = ParamSpec("P")
R = TypeVar("R")


class _Deadline:
    """An absolute deadline on the clock that set it (nested timeouts may use different clocks)."""

    __slots__ = ("at", "clock")

    def __init__(self, at: float, clock: Callable[[], float]) -> None:
        self.at = at
        self.clock = clock

    def left(self) -> float:
        return self.at - self.clock()


_scope: ContextVar[_Deadline | None] = ContextVar("seawall_deadline", default=None)


def remaining() -> float | None:
    """Seconds left before the nearest deadline in scope (0.0 once it has passed), or None when the
    current call runs under no timeout. Size your own I/O timeouts with it."""
    deadline = _scope.get()
    if deadline is None:
        return None
    left = deadline.left()
    return left if left > 0.0 else 0.0


@contextmanager
def within(seconds: float, clock: Callable[[], float] = time.monotonic) -> Iterator[None]:
    """Put a deadline `seconds` from now in scope (nearer outer deadlines still win), so timeouts
    and `remaining()` inside see it. It bounds nothing by itself."""
    seconds = seconds_of("seconds", seconds)
    outer = _scope.get()
    keep = outer is not None and outer.left() <= seconds
    token = _scope.set(outer if keep else _Deadline(clock() + seconds, clock))
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


class _Expiry:
    """The timer callback of one async call: cancels the task and remembers that it did."""

    __slots__ = ("fired", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.fired = False

    def __call__(self) -> None:
        self.fired = True
        self.task.cancel()


def _uncancel(task: asyncio.Task[Any]) -> int:
    """Withdraw our cancellation request (Python 3.11+); the count of requests left."""
    uncancel = getattr(task, "uncancel", None)
    return 0 if uncancel is None else cast(int, uncancel())


class Timeout:
    """A named time budget for calls: decorator (sync or async), `call` or `call_async`.

    Counts success, failure and timed_out, and every call's duration, itself (`snapshot()`);
    publishes `CallTimedOut` as an overrun happens, when someone listens.
    """

    __slots__ = (
        "__weakref__",
        "_calls",
        "_clock",
        "_durations",
        "_lock",
        "_on_timed_out",
        "_seconds",
        "name",
        "registry",
    )

    kind = "timeout"

    def __init__(
        self,
        name: str,
        seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        registry: Registry | None = None,
    ) -> None:
        check_identity(name, clock)
        self.name = name
        self._seconds = seconds_of("seconds", seconds)
        self._clock = clock
        self.registry = default_registry() if registry is None else registry
        self._lock = Lock()
        self._calls = {"success": 0, "failure": 0, "timed_out": 0}
        self._durations = DurationHistogram(self.registry.duration_buckets or DEFAULT_DURATION_BUCKETS)
        self._on_timed_out = self.registry.bus.channel(CallTimedOut)
        self.registry.add(self)

    @property
    def seconds(self) -> float:
        return self._seconds

    @property
    def config(self) -> dict[str, Any]:
        return {"seconds": self._seconds}

    def __repr__(self) -> str:
        return f"Timeout({self.name!r}, {self._seconds!r})"

    def snapshot(self) -> TimeoutSnapshot:
        with self._lock:
            return TimeoutSnapshot(self.name, self._seconds, dict(self._calls), self._durations.snapshot())

    # -- bookkeeping -----------------------------------------------------------------------------

    def _budget(self) -> float:
        """This call's seconds: the timeout's own, or what an outer deadline leaves when that is less."""
        outer = _scope.get()
        if outer is None:
            return self._seconds
        left = outer.left()
        return left if left < self._seconds else self._seconds

    def _record(self, outcome: str, elapsed: float) -> None:
        with self._lock:
            self._calls[outcome] += 1
            self._durations.observe(elapsed)

    def _overran(self, budget: float, elapsed: float, cancelled: bool) -> CallTimeoutError:
        self._record("timed_out", elapsed)
        if self._on_timed_out.listeners:
            self._on_timed_out.publish(CallTimedOut(self.name, budget, elapsed, cancelled))
        return CallTimeoutError(self.name, budget, elapsed, cancelled)

    # -- ways to call ----------------------------------------------------------------------------

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run `fn` under this deadline; raises CallTimeoutError when it ends after it (see module doc)."""
        clock = self._clock
        budget = self._budget()
        if budget <= 0.0:
            raise self._overran(0.0, 0.0, False)
        start = clock()
        token = _scope.set(_Deadline(start + budget, clock))
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            elapsed = clock() - start
            if elapsed >= budget:
                raise self._overran(budget, elapsed, False) from exc
            self._record("failure", elapsed)
            raise
        finally:
            _scope.reset(token)
        elapsed = clock() - start
        if elapsed >= budget:
            raise self._overran(budget, elapsed, False)
        self._record("success", elapsed)
        return result

    async def call_async(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Await `fn`; cancel it at the deadline and raise CallTimeoutError (a caller's own
        cancellation is re-raised as CancelledError)."""
        clock = self._clock
        budget = self._budget()
        if budget <= 0.0:
            raise self._overran(0.0, 0.0, False)
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError(f"timeout {self.name!r}: call_async must run inside an asyncio task")
        cancelling = task.cancelling() if hasattr(task, "cancelling") else 0
        expiry = _Expiry(task)
        start = clock()
        handle = asyncio.get_running_loop().call_later(budget, expiry)
        token = _scope.set(_Deadline(start + budget, clock))
        try:
            result = await fn(*args, **kwargs)
        except asyncio.CancelledError:
            if not expiry.fired or _uncancel(task) > cancelling:
                raise  # the caller's cancellation (perhaps as well as ours): it goes on
            raise self._overran(budget, clock() - start, True) from None
        except Exception as exc:
            if expiry.fired:  # fn turned our cancellation into another error
                _uncancel(task)
                raise self._overran(budget, clock() - start, True) from exc
            self._record("failure", clock() - start)
            raise
        finally:
            handle.cancel()
            _scope.reset(token)
        if expiry.fired:  # fn swallowed our cancellation and returned: still over its deadline
            _uncancel(task)
            raise self._overran(budget, clock() - start, True)
        self._record("success", clock() - start)
        return result

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Decorate a function or `async def` function; the wrapper keeps its name and signature."""
        return decorate(self, fn)


def timeout(
    name: str, seconds: float | None = None, *, registry: Registry | None = None, **extras: Any
) -> Timeout:
    """The timeout named `name` in the default registry (or `registry`), created on first use with
    `seconds`; asking again with other seconds is a ValueError."""
    reg = default_registry() if registry is None else registry
    config = {} if seconds is None else {"seconds": seconds_of("seconds", seconds)}
    if seconds is None and reg.get("timeout", name) is None:
        raise ValueError(f"timeout {name!r} does not exist yet: give seconds= to create it")
    return reg.get_or_create(
        "timeout", name, config, lambda: Timeout(name, cast(float, seconds), registry=reg, **extras)
    )
