"""pybreaker -> seawall events: a CircuitBreakerListener plus a rejection hook.

pybreaker tells listeners about calls and state changes but not about calls it rejects (it raises
CircuitBreakerError before any listener runs), so `instrument_breaker` also wraps the breaker's
`call` to publish `BreakerCallRejected`. A trip (the failure that opens the breaker also raises
CircuitBreakerError) is told apart from a rejection by whether the listener saw the call start.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pybreaker

from .._enums import BreakerState, CallOutcome
from .._registry import Registry, default_registry
from ..events import (
    BreakerCallCompleted,
    BreakerCallRejected,
    BreakerStateChanged,
    Event,
    PrimitiveRegistered,
)

__all__ = ["SeawallListener", "instrument_breaker"]

_STATES = {
    pybreaker.STATE_CLOSED: BreakerState.CLOSED,
    pybreaker.STATE_OPEN: BreakerState.OPEN,
    pybreaker.STATE_HALF_OPEN: BreakerState.HALF_OPEN,
}
# pybreaker does not say why it changed state; the pair of states does.
_REASONS = {
    (BreakerState.CLOSED, BreakerState.OPEN): "failures",
    (BreakerState.OPEN, BreakerState.HALF_OPEN): "timeout",
    (BreakerState.HALF_OPEN, BreakerState.CLOSED): "probe_success",
    (BreakerState.HALF_OPEN, BreakerState.OPEN): "probe_failure",
}


def _state(value: Any) -> BreakerState:
    name = getattr(value, "name", value)
    return _STATES.get(name, BreakerState.CLOSED)


class SeawallListener(pybreaker.CircuitBreakerListener):
    """Publishes BreakerCallCompleted / BreakerStateChanged for the pybreaker breakers it is added to.

    The breaker's `name` is the label (pass `name=` when the breaker has none). Durations are
    measured from `before_call` to `success`/`failure` with `time.perf_counter`.
    """

    component = "pybreaker-adapter"

    def __init__(self, registry: Registry | None = None, *, name: str | None = None) -> None:
        if registry is not None and not isinstance(registry, Registry):
            raise TypeError(f"registry must be a seawall.Registry, got {registry!r}")
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        self.registry = default_registry() if registry is None else registry
        self.name = name
        self._local = threading.local()
        self._announced: set[str] = set()

    def name_of(self, cb: Any) -> str:
        return self.name or getattr(cb, "name", None) or "pybreaker"

    def _publish(self, event: Event) -> None:
        bus = self.registry.bus
        if bus.listeners:
            bus.publish(event)

    def announce(self, cb: Any) -> None:
        """Publish PrimitiveRegistered once, so exporters pre-create the breaker's series."""
        name = self.name_of(cb)
        if name not in self._announced:
            self._announced.add(name)
            self._publish(PrimitiveRegistered(kind="breaker", name=name))

    def _starts(self) -> dict[int, list[float]]:
        starts: dict[int, list[float]] | None = getattr(self._local, "starts", None)
        if starts is None:
            starts = self._local.starts = {}
        return starts

    def started_calls(self) -> int:
        """How many calls this thread has started through any breaker (to tell trips from rejections)."""
        return int(getattr(self._local, "count", 0))

    def before_call(self, cb: Any, func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self._local.count = self.started_calls() + 1
        self._starts().setdefault(id(cb), []).append(time.perf_counter())

    def _duration(self, cb: Any) -> float:
        stack = self._starts().get(id(cb))
        if not stack:
            return 0.0
        return max(0.0, time.perf_counter() - stack.pop())

    def success(self, cb: Any) -> None:
        self._publish(BreakerCallCompleted(self.name_of(cb), CallOutcome.SUCCESS, self._duration(cb), None))

    def failure(self, cb: Any, exc: BaseException) -> None:
        event = BreakerCallCompleted(
            self.name_of(cb), CallOutcome.FAILURE, self._duration(cb), type(exc).__name__
        )
        self._publish(event)

    def state_change(self, cb: Any, old_state: Any, new_state: Any) -> None:
        old = BreakerState.CLOSED if old_state is None else _state(old_state)
        new = _state(new_state)
        self._publish(BreakerStateChanged(self.name_of(cb), old, new, _REASONS.get((old, new), "manual")))

    def rejected(self, cb: Any) -> None:
        self._publish(BreakerCallRejected(self.name_of(cb), _state(cb.current_state), _retry_after(cb)))


def _retry_after(cb: Any) -> float:
    try:
        opened_at: datetime | None = cb._state_storage.opened_at
        if opened_at is None:
            return 0.0
        if opened_at.tzinfo is None:
            opened_at = opened_at.replace(tzinfo=timezone.utc)
        remaining = opened_at + timedelta(seconds=cb.reset_timeout) - datetime.now(timezone.utc)
        return max(0.0, remaining.total_seconds())
    except Exception:  # a storage backend without opened_at: unknown
        return 0.0


def instrument_breaker(
    cb: pybreaker.CircuitBreaker, name: str | None = None, *, registry: Registry | None = None
) -> SeawallListener:
    """Add a SeawallListener to `cb` and hook its `call` so rejections are published too.

    Idempotent per breaker: a second call returns the first listener.
    """
    if not isinstance(cb, pybreaker.CircuitBreaker):
        raise TypeError(f"cb must be a pybreaker.CircuitBreaker, got {cb!r}")
    existing = getattr(cb, "_seawall_listener", None)
    if isinstance(existing, SeawallListener):
        return existing
    listener = SeawallListener(registry, name=name)
    cb.add_listener(listener)
    original = cb.call

    def call(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        started = listener.started_calls()
        try:
            return original(func, *args, **kwargs)
        except pybreaker.CircuitBreakerError:
            if listener.started_calls() == started:  # no call started: rejected, not a trip
                listener.rejected(cb)
            raise

    cb.call = call  # type: ignore[method-assign]
    cb._seawall_listener = listener  # type: ignore[attr-defined]
    listener.announce(cb)
    return listener
