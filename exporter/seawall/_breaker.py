"""The circuit breaker: stop calling a dependency that keeps failing, probe it again later.

`CircuitBreaker` is the state machine of `_breaker_state` plus what users touch: the ways to call
through it (decorator, `call`, `call_async`, context managers), manual control and views. The
decorator body and `call()` are deliberately inlined (no helper frame on the success path).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from types import TracebackType
from typing import Any, ParamSpec, TypeAlias, TypeVar, cast

from ._breaker_config import breaker_config
from ._breaker_state import (
    _CLOSED,
    _DISABLED,
    _FORCED_OPEN,
    _HALF_OPEN,
    _OPEN,
    _SUCCESS,
    BreakerStateMachine,
    CircuitOpenError,
    ErrorSink,
)
from ._enums import BreakerState
from ._events import BreakerCallCompleted, Event, _component_of
from ._registry import Registry, default_registry
from ._snapshots import BreakerSnapshot

__all__ = ["CircuitBreaker", "CircuitOpenError", "ErrorSink", "breaker"]

P = ParamSpec("P")
R = TypeVar("R")

# Open `with breaker:` blocks of the current thread/task: (breaker, token, start) entries.
_Block: TypeAlias = "tuple[CircuitBreaker, int, float | None]"
_active: ContextVar[tuple[_Block, ...]] = ContextVar("seawall_breaker_blocks", default=())


class CircuitBreaker(BreakerStateMachine):
    """Counts failures of the calls it guards and refuses calls while the dependency looks down.

    Use it as a decorator (sync or `async def`), through `call` / `call_async`, or as a (async)
    context manager. See docs/architecture.md for the state machine.
    """

    __slots__ = ()  # every slot is the state machine's

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, state={self._state.value!r})"

    # -- state --------------------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """The current state (an open breaker whose timeout passed reads as half_open)."""
        if self._state is not _OPEN:
            return self._state
        events: list[Event] = []
        with self._lock:
            self._check_timeout(self._clock(), events)
            state = self._state
        self._publish(events)
        return state

    @property
    def retry_after(self) -> float | None:
        """Seconds until a probe will be let through; None while calls are let through now."""
        events: list[Event] = []
        with self._lock:
            now = self._clock()
            self._check_timeout(now, events)
            retry_after = self._retry_after(now)
        self._publish(events)
        return retry_after

    def _set(self, to: BreakerState) -> None:
        events: list[Event] = []
        with self._lock:
            self._move(to, "manual", self._clock(), events)
        self._publish(events)

    def reset(self) -> None:
        """Close by hand, clearing failure counts and the window (totals since creation stay)."""
        self._set(_CLOSED)

    def force_open(self) -> None:
        """Refuse every call until `reset()` (maintenance, or a dependency known to be down)."""
        self._set(_FORCED_OPEN)

    def disable(self) -> None:
        """Let every call through and never trip (outcomes still count in totals and events)."""
        self._set(_DISABLED)

    # -- ways to call ----------------------------------------------------------------------------

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call `fn(*args, **kwargs)` through the breaker."""
        token = self._enter()
        start = self._start()
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            self._failure(token, start, exc)
            raise
        except BaseException:
            self._cancelled(token)
            raise
        self._success(token, start)
        return result

    async def call_async(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Await `fn(*args, **kwargs)` through the breaker."""
        token = self._enter()
        start = self._start()
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            self._failure(token, start, exc)
            raise
        except BaseException:
            self._cancelled(token)
            raise
        self._success(token, start)
        return result

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Decorate a function or `async def` function; the wrapper keeps its name and signature."""
        if inspect.iscoroutinefunction(fn):
            call_async = self.call_async
            async_fn = cast(Callable[P, Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                return await call_async(async_fn, *args, **kwargs)

            return cast(Callable[P, R], async_wrapper)

        return self._wrap_sync(fn)

    def _wrap_sync(self, fn: Callable[P, R]) -> Callable[P, R]:
        """`call` unrolled into the wrapper, with per-breaker constants in closure cells and the
        plain success (closed, no window) done inline: the decorator is the hot path, and each
        Python frame saved (`_enter`, `_success`, `bus.publish`) is a tenth of the breaker's cost."""
        breaker, lock, clock, bus = self, self._lock, self._clock, self._bus
        successes, rejections = self._successes, self._rejections
        timed, name, windowless = self._timed, self.name, self._window is None
        completed, report = BreakerCallCompleted, bus.report_error

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            state = breaker._state
            if state is _CLOSED or state is _DISABLED:
                token = breaker._gen
            else:
                if state is _OPEN and not bus.listeners:
                    waited = clock() - breaker._opened_at
                    if waited < breaker._reset_timeout:
                        next(rejections)
                        raise CircuitOpenError(name, _OPEN, breaker._reset_timeout - waited)
                admitted = breaker._admit()
                if isinstance(admitted, CircuitOpenError):
                    raise admitted
                token = admitted
            start = clock() if timed or bus.listeners else None
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                breaker._failure(token, start, exc)
                raise
            except BaseException:
                breaker._cancelled(token)
                raise
            if not (windowless and token >= 0):
                breaker._success(token, start)
                return result
            # Closed or disabled, no window to feed: nothing can trip. See `_success`.
            duration = 0.0 if start is None else clock() - start
            next(successes)
            if breaker._consecutive:
                with lock:
                    if token == breaker._gen:
                        breaker._consecutive = 0
            listeners = bus.listeners
            if listeners:
                event = completed(name, _SUCCESS, duration, None)
                for listener in listeners:  # EventBus.publish, inline
                    try:
                        listener(event)
                    except Exception as broken:
                        report(_component_of(listener), broken)
            return result

        return wrapper

    def __enter__(self) -> CircuitBreaker:
        token = self._enter()
        _active.set((*_active.get(), (self, token, self._start())))
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
            self._success(token, start)
        elif isinstance(exc, Exception):
            self._failure(token, start, exc)
        else:
            self._cancelled(token)
        return None

    async def __aenter__(self) -> CircuitBreaker:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    # -- views ----------------------------------------------------------------------------------

    def snapshot(self) -> BreakerSnapshot:
        """A consistent copy of the state and counters (the lock is held only while copying)."""
        events: list[Event] = []
        with self._lock:
            now = self._clock()
            self._check_timeout(now, events)
            window = self._window
            calls, failures, _ = window.totals(now) if window is not None else (0, 0, 0)
            reads = self._reads
            self._reads = reads + 1
            snap = BreakerSnapshot(
                name=self.name,
                state=self._state,
                failure_threshold=self._failure_threshold,
                reset_timeout=self._reset_timeout,
                consecutive_failures=self._consecutive,
                failure_rate=None if window is None else (failures / calls if calls else 0.0),
                failure_rate_threshold=self._rate_threshold,
                window_calls=calls,
                retry_after=self._retry_after(now),
                seconds_in_state=max(0.0, now - self._state_since),
                half_open_in_flight=self._probes if self._state is _HALF_OPEN else 0,
                calls={
                    "success": next(self._successes) - reads,
                    "failure": self._failed,
                    "rejected": next(self._rejections) - reads,
                    "ignored": self._ignored,
                },
            )
        self._publish(events)
        return snap


def breaker(name: str, *, registry: Registry | None = None, **settings: Any) -> CircuitBreaker:
    """The breaker named `name` in the default registry (or `registry`), created on first use.

    Asking again with different settings is a ValueError, so two call sites cannot silently
    disagree about one dependency's breaker.
    """
    reg = default_registry() if registry is None else registry
    extras = {key: settings.pop(key) for key in ("errors", "clock") if key in settings}
    asked = breaker_config(**settings)
    config = {key: asked[key] for key in settings}
    return reg.get_or_create(
        "breaker", name, config, lambda: CircuitBreaker(name, registry=reg, **settings, **extras)
    )
