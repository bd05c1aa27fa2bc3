"""pybreaker -> seawall: a count-keeping breaker shadow in the registry, fed by a listener.

Exporters read every count from the registry's breakers at scrape time, so `instrument_breaker`
registers a `PybreakerBreaker` (kind "breaker") that keeps the counts itself and reads pybreaker's
state from its storage when asked: a breaker whose shared storage (Redis, another worker) is
already open shows open from the moment it is instrumented, without waiting for a transition.

pybreaker tells listeners about calls and state changes but not about the calls it rejects (it
raises CircuitBreakerError before any listener runs), so `call` and `call_async` are wrapped too.
A trip (the failure that opens the breaker also raises CircuitBreakerError) is told apart from a
rejection by whether the listener saw a call start in between.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pybreaker

from seawall.core.enums import BreakerState, CallOutcome
from seawall.core.kinds import Kind
from seawall.core.latency import DurationHistogram, outcome_snapshots
from seawall.core.registry import Registry, default_registry
from seawall.core.snapshots import BreakerSnapshot

from ..events import BreakerCallCompleted, BreakerCallRejected, BreakerStateChanged

__all__ = ["PybreakerBreaker", "SeawallListener", "instrument_breaker"]

COMPONENT = "pybreaker-adapter"
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
_TIMED = (CallOutcome.SUCCESS, CallOutcome.FAILURE, CallOutcome.IGNORED)


def _state(value: Any) -> BreakerState:
    name = getattr(value, "name", value)
    return _STATES.get(name, BreakerState.CLOSED)


class PybreakerBreaker:
    """One pybreaker breaker as the registry sees it: counts kept here (under a lock), the state
    read from pybreaker's storage. `snapshot()` changes nothing and publishes nothing."""

    kind = Kind.BREAKER

    def __init__(self, cb: pybreaker.CircuitBreaker, name: str, registry: Registry) -> None:
        self.cb = cb
        self.name = name
        self.registry = registry
        self._lock = threading.Lock()
        self._calls = dict.fromkeys((outcome.value for outcome in CallOutcome), 0)
        self._transitions: dict[tuple[BreakerState, BreakerState], int] = {}
        self._durations: dict[CallOutcome, DurationHistogram] | None = None
        self._last_state = self._read_state(BreakerState.CLOSED)
        self._since = time.monotonic()
        bus = registry.bus
        self._completed = bus.channel(BreakerCallCompleted)
        self._rejected = bus.channel(BreakerCallRejected)
        self._changed = bus.channel(BreakerStateChanged)
        if registry.duration_buckets is not None:
            self.record_durations(registry.duration_buckets)

    @property
    def config(self) -> dict[str, Any]:
        return {
            "adapter": "pybreaker",
            "failure_threshold": self.cb.fail_max,
            "reset_timeout": float(self.cb.reset_timeout),
            "success_threshold": getattr(self.cb, "success_threshold", 1),  # pybreaker >= 1.4
            "failure_rate_threshold": None,
            "slow_call_rate_threshold": None,
        }

    def record_durations(self, bounds: tuple[float, ...]) -> None:
        """Count call durations in these buckets from now on (the registry asks every breaker)."""
        with self._lock:
            if self._durations is not None:
                have = self._durations[CallOutcome.SUCCESS].bounds
                if have != bounds:
                    raise ValueError(f"breaker {self.name!r} already records durations in buckets {have!r}")
                return
            self._durations = {outcome: DurationHistogram(bounds) for outcome in _TIMED}

    # -- what the listener and the call wrappers report -------------------------------------------

    def completed(self, outcome: CallOutcome, duration: float | None, error_type: str | None) -> None:
        with self._lock:
            self._calls[outcome.value] += 1
            if self._durations is not None and duration is not None:
                self._durations[outcome].observe(duration)
        if self._completed.listeners:
            self._completed.publish(BreakerCallCompleted(self.name, outcome, duration or 0.0, error_type))

    def rejected(self) -> None:
        with self._lock:
            self._calls[CallOutcome.REJECTED.value] += 1
        if self._rejected.listeners:
            self._rejected.publish(BreakerCallRejected(self.name, self.state, self.retry_after or 0.0))

    def changed(self, old: BreakerState, new: BreakerState) -> None:
        if old is new:  # pybreaker notifies close() on a closed breaker, open() on an open one
            return
        with self._lock:
            self._transitions[(old, new)] = self._transitions.get((old, new), 0) + 1
            self._last_state = new
            self._since = time.monotonic()
        if self._changed.listeners:
            self._changed.publish(
                BreakerStateChanged(self.name, old, new, _REASONS.get((old, new), "manual"))
            )

    # -- reads ------------------------------------------------------------------------------------

    def _read_state(self, fallback: BreakerState) -> BreakerState:
        """pybreaker's state as its storage holds it now (`cb.state` would also move it)."""
        try:
            return _state(self.cb.current_state)
        except Exception as exc:  # a storage backend that fails: the last state seen
            self.registry.bus.report_error(COMPONENT, exc)
            return fallback

    @property
    def state(self) -> BreakerState:
        return self._read_state(self._last_state)

    @property
    def retry_after(self) -> float | None:
        """Seconds until pybreaker lets a probe through; None unless open."""
        if self.state is not BreakerState.OPEN:
            return None
        return _retry_after(self.cb)

    def reset(self) -> None:
        """Close by hand (pybreaker's `close()`)."""
        self.cb.close()

    def force_open(self) -> None:
        """Open by hand (pybreaker's `open()`: it probes again after its reset timeout)."""
        self.cb.open()

    def snapshot(self) -> BreakerSnapshot:
        state = self.state
        retry_after = _retry_after(self.cb) if state is BreakerState.OPEN else None
        try:
            consecutive = int(self.cb.fail_counter)
        except Exception as exc:
            self.registry.bus.report_error(COMPONENT, exc)
            consecutive = 0
        with self._lock:
            durations = self._durations
            return BreakerSnapshot(
                name=self.name,
                state=state,
                failure_threshold=self.cb.fail_max,
                reset_timeout=float(self.cb.reset_timeout),
                consecutive_failures=consecutive,
                failure_rate=None,
                failure_rate_threshold=None,
                window_calls=0,
                retry_after=retry_after,
                seconds_in_state=max(0.0, time.monotonic() - self._since),
                half_open_in_flight=0,
                calls=dict(self._calls),
                transitions=dict(self._transitions),
                durations={} if durations is None else outcome_snapshots(durations),
            )

    def __repr__(self) -> str:
        return f"PybreakerBreaker({self.name!r})"


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


class SeawallListener(pybreaker.CircuitBreakerListener):
    """The pybreaker listener that feeds a breaker's `PybreakerBreaker` (made on first use).

    Successes and failures are counted with their duration from `before_call` (perf_counter),
    state changes as transitions. Alone (`CircuitBreaker(listeners=[...])`) it cannot see
    rejections: use `instrument_breaker`.
    """

    component = COMPONENT

    def __init__(self, registry: Registry | None = None, *, name: str | None = None) -> None:
        if registry is not None and not isinstance(registry, Registry):
            raise TypeError(f"registry must be a seawall.Registry, got {registry!r}")
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        self.registry = default_registry() if registry is None else registry
        self.name = name
        self._local = threading.local()
        self._lock = threading.Lock()
        self._breakers: dict[int, PybreakerBreaker] = {}

    def name_of(self, cb: Any) -> str:
        return self.name or getattr(cb, "name", None) or "pybreaker"

    def breaker_for(self, cb: pybreaker.CircuitBreaker) -> PybreakerBreaker:
        """The registry's view of `cb`, registered on first use (a name taken by another
        breaker is a ValueError)."""
        shadow = self._breakers.get(id(cb))
        if shadow is not None and shadow.cb is cb:
            return shadow
        with self._lock:
            shadow = self._breakers.get(id(cb))
            if shadow is None or shadow.cb is not cb:
                name = self.name_of(cb)
                existing = self.registry.get(Kind.BREAKER, name)
                if isinstance(existing, PybreakerBreaker) and existing.cb is cb:
                    shadow = existing
                else:
                    shadow = PybreakerBreaker(cb, name, self.registry)
                    self.registry.add(shadow)
                self._breakers[id(cb)] = shadow
            return shadow

    def _guard(self, cb: Any, action: Callable[[PybreakerBreaker], None]) -> None:
        """Bookkeeping never raises into pybreaker (it would turn into the call's error)."""
        try:
            action(self.breaker_for(cb))
        except Exception as exc:
            self.registry.bus.report_error(COMPONENT, exc)

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

    def _duration(self, cb: Any) -> float | None:
        stack = self._starts().get(id(cb))
        if not stack:
            return None
        return max(0.0, time.perf_counter() - stack.pop())

    def success(self, cb: Any) -> None:
        duration = self._duration(cb)
        self._guard(cb, lambda shadow: shadow.completed(CallOutcome.SUCCESS, duration, None))

    def failure(self, cb: Any, exc: BaseException) -> None:
        duration, error_type = self._duration(cb), type(exc).__name__
        self._guard(cb, lambda shadow: shadow.completed(CallOutcome.FAILURE, duration, error_type))

    def state_change(self, cb: Any, old_state: Any, new_state: Any) -> None:
        old = BreakerState.CLOSED if old_state is None else _state(old_state)
        new = _state(new_state)
        self._guard(cb, lambda shadow: shadow.changed(old, new))

    def rejected(self, cb: Any) -> None:
        self._guard(cb, PybreakerBreaker.rejected)


class _CallWrapper:
    """Replaces `cb.call`: a CircuitBreakerError raised with no call started is a rejection."""

    def __init__(self, cb: pybreaker.CircuitBreaker, listener: SeawallListener, original: Any) -> None:
        self._cb = cb
        self._listener = listener
        self._original: Callable[..., Any] = original

    def __call__(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        started = self._listener.started_calls()
        try:
            return self._original(func, *args, **kwargs)
        except pybreaker.CircuitBreakerError:
            if self._listener.started_calls() == started:
                self._listener.rejected(self._cb)
            raise


class _AsyncCallWrapper(_CallWrapper):
    """Replaces `cb.call_async` (tornado): the rejection is in the returned future, and no call
    started while pybreaker built it (its listeners run before the first yield)."""

    def __call__(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        started = self._listener.started_calls()
        future = self._original(func, *args, **kwargs)
        if self._listener.started_calls() == started:
            if future.done():  # the usual case: counted (and its span event added) in the caller
                self._resolved(future)
            else:
                future.add_done_callback(self._resolved)
        return future

    def _resolved(self, future: Any) -> None:
        if not future.cancelled() and isinstance(future.exception(), pybreaker.CircuitBreakerError):
            self._listener.rejected(self._cb)


def instrument_breaker(
    cb: pybreaker.CircuitBreaker, name: str | None = None, *, registry: Registry | None = None
) -> SeawallListener:
    """Register `cb` in the seawall registry (as `name`, else its own name, else "pybreaker"),
    add the listener that counts its calls and hook `call`/`call_async` to count rejections.

    Idempotent per breaker: a second call returns the first listener. The state shown is read
    from pybreaker's storage, so an already open breaker shows open at once.
    """
    if not isinstance(cb, pybreaker.CircuitBreaker):
        raise TypeError(f"cb must be a pybreaker.CircuitBreaker, got {cb!r}")
    existing = getattr(cb, "_seawall_listener", None)
    if isinstance(existing, SeawallListener):
        return existing
    listener = SeawallListener(registry, name=name)
    listener.breaker_for(cb)  # registers now: series exist and the state shows before any call
    cb.add_listener(listener)
    cb.call = _CallWrapper(cb, listener, cb.call)  # type: ignore[method-assign]
    cb.call_async = _AsyncCallWrapper(cb, listener, cb.call_async)  # type: ignore[method-assign]
    cb._seawall_listener = listener  # type: ignore[attr-defined]
    return listener
