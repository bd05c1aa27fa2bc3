"""The circuit breaker: stop calling a dependency that keeps failing, probe it again later.

`CircuitBreaker` is what users touch: the ways to call through it (decorator, `call`,
`call_async`, context managers), manual control and views. The state machine, its counts and its
lock live in `BreakerStateMachine` (`_breaker_state`); every way to call goes through the
machine's `enter` / `succeeded` / `failed` / `cancelled`, so there is one copy of the bookkeeping.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import replace
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeAlias, TypeVar, cast

from seawall.breakers.machine import BreakerStateMachine, CircuitOpenError, ErrorSink
from seawall.breakers.settings import BreakerSettings
from seawall.core.enums import BreakerState
from seawall.core.factory import obtain
from seawall.core.kinds import Kind, KindSpec, register_kind
from seawall.core.primitive import Primitive
from seawall.core.registry import Registry
from seawall.core.settings import check_errors
from seawall.core.snapshots import BreakerSnapshot

if TYPE_CHECKING:
    from seawall.breakers.shared import FleetLink

__all__ = ["BreakerSettings", "CircuitBreaker", "CircuitOpenError", "ErrorSink", "breaker"]

P = ParamSpec("P")
R = TypeVar("R")

# Open `with breaker:` blocks of the current thread/task: (breaker, token, start) entries.
_Block: TypeAlias = "tuple[CircuitBreaker, int, float | None]"
_active: ContextVar[tuple[_Block, ...]] = ContextVar("seawall_breaker_blocks", default=())


class CircuitBreaker(Primitive[BreakerSettings]):
    """Counts failures of the calls it guards and refuses calls while the dependency looks down.

    Settings are `BreakerSettings` fields, given as keywords (`failure_threshold=5`, ...) or as
    `settings=BreakerSettings(...)`. Use it as a decorator (sync or `async def`), through `call` /
    `call_async`, or as a (async) context manager. See docs/architecture.md for the state machine.
    """

    __slots__ = ("_fleet", "_machine")

    kind = Kind.BREAKER

    def __init__(
        self,
        name: str,
        *,
        settings: BreakerSettings | None = None,
        errors: ErrorSink | None = None,
        clock: Callable[[], float] = time.monotonic,
        registry: Registry | None = None,
        shared: Any = None,
        **overrides: Any,
    ) -> None:
        super().__init__(name, settings=settings, clock=clock, registry=registry, **overrides)
        check_errors(errors)
        self.injected.update(errors=errors, shared=shared)
        self._machine = BreakerStateMachine(name, self.settings, self.registry.bus, errors, clock)
        buckets = self.registry.duration_buckets
        if buckets is not None:
            self._machine.record_durations(buckets)
        self._fleet: FleetLink | None = None
        if shared is not None:
            from seawall.breakers.shared import fleet_of

            fleet = fleet_of(shared)  # a TypeError naming `shared` before the breaker joins anything
        self.registry.add(self)
        if shared is not None:
            self._fleet = fleet.attach(self._machine)

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, state={self._machine.state.value!r})"

    # -- state --------------------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """The state as the last call left it. An open breaker whose reset timeout has passed
        still reads `open` (with `retry_after` 0) until a call arrives and is admitted as a probe."""
        return self._machine.state

    @property
    def retry_after(self) -> float | None:
        """Seconds until a probe will be let through; None while calls are let through now."""
        return self._machine.retry_after()

    def record_durations(self, buckets: tuple[float, ...]) -> None:
        """Count call durations into these buckets (exporters ask for it through the registry)."""
        self._machine.record_durations(buckets)

    def reset(self) -> None:
        """Close by hand, clearing failure counts and the window (totals since creation stay)."""
        self._machine.move_by_hand(BreakerState.CLOSED)

    def force_open(self) -> None:
        """Refuse every call until `reset()` (maintenance, or a dependency known to be down)."""
        self._machine.move_by_hand(BreakerState.FORCED_OPEN)

    def disable(self) -> None:
        """Let every call through and never trip (outcomes still count in totals and events)."""
        self._machine.move_by_hand(BreakerState.DISABLED)

    # -- ways to call ----------------------------------------------------------------------------

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call `fn(*args, **kwargs)` through the breaker."""
        return self._guard(fn)(*args, **kwargs)

    async def call_async(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Await `fn(*args, **kwargs)` through the breaker."""
        return await self._guard_async(fn)(*args, **kwargs)

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Decorate a function or `async def` function; the wrapper keeps its name and signature."""
        if inspect.iscoroutinefunction(fn):
            async_fn = cast(Callable[P, Awaitable[Any]], fn)
            return cast(Callable[P, R], functools.wraps(fn)(self._guard_async(async_fn)))
        return functools.wraps(fn)(self._guard(fn))

    # The one body of a guarded call, as a closure over `fn`: the decorator's wrapper is this body
    # itself (one frame per call), and `call` / `call_async` run it too.

    def _guard(self, fn: Callable[P, R]) -> Callable[P, R]:
        machine = self._machine

        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            token, start = machine.enter()
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                machine.raised(token, start, exc)
                raise
            machine.succeeded(token, start)
            return result

        return guarded

    def _guard_async(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        machine = self._machine

        async def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            token, start = machine.enter()
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                machine.raised(token, start, exc)
                raise
            machine.succeeded(token, start)
            return result

        return guarded

    def __enter__(self) -> CircuitBreaker:
        token, start = self._machine.enter()
        _active.set((*_active.get(), (self, token, start)))
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        blocks = _active.get()
        for index in range(len(blocks) - 1, -1, -1):
            if blocks[index][0] is self:
                _, token, start = blocks[index]
                _active.set(blocks[:index] + blocks[index + 1 :])
                break
        else:  # pragma: no cover - __exit__ without __enter__ in this context
            return None
        if exc is None:
            self._machine.succeeded(token, start)
        else:
            self._machine.raised(token, start, exc)
        return None

    async def __aenter__(self) -> CircuitBreaker:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    # -- views ----------------------------------------------------------------------------------

    def snapshot(self) -> BreakerSnapshot:
        """A consistent copy of the state and counters; reading never changes state."""
        snap = self._machine.snapshot()
        fleet = self._fleet
        if fleet is None:
            return snap
        return replace(snap, shared="redis", shared_up=fleet.up, shared_errors=fleet.errors)

    def unshare(self) -> None:
        """Stop syncing with the fleet (the breaker decides alone from now on)."""
        fleet, self._fleet = self._fleet, None
        if fleet is not None:
            fleet.detach()


def breaker(name: str, *, registry: Registry | None = None, **options: Any) -> CircuitBreaker:
    """The breaker named `name` in the default registry (or `registry`), created on first use.

    Asking again with different settings is a ValueError, so two call sites cannot silently
    disagree about one dependency's breaker.
    """
    found: CircuitBreaker = obtain(Kind.BREAKER, name, registry, options)
    return found


register_kind(KindSpec.of(CircuitBreaker, BreakerSnapshot, breaker, timed=True))
