"""The breaker's state machine: settings, state, admission and outcome bookkeeping.

A state machine behind one `threading.Lock` that guards state only: the lock is never held while
the user's function runs (pybreaker holds it, which serializes every call through a breaker), and
async code takes the same lock for microseconds, never across an await. Each call carries a token
(the state generation it was admitted in), so an outcome that arrives after the state moved on is
counted in the totals but cannot move the new state.

`CircuitBreaker` (in `_breaker`) is this machine plus the ways to call it, manual control and
views; the split keeps each module to one job. The decorator's wrapper there reads this class's
slots directly and repeats its plain-success bookkeeping inline, so the hot path stays one frame.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from threading import Lock
from typing import TYPE_CHECKING, Protocol, cast

from ._breaker_config import ExceptionFilter, breaker_config, compile_filter
from ._enums import BreakerState, CallOutcome
from ._events import (
    BreakerCallCompleted,
    BreakerCallRejected,
    BreakerStateChanged,
    Event,
    EventBus,
)
from ._registry import Registry, default_registry
from ._window import CountWindow, TimeWindow, make_window

__all__ = ["BreakerStateMachine", "CircuitOpenError", "ErrorSink"]

_CLOSED = BreakerState.CLOSED
_OPEN = BreakerState.OPEN
_HALF_OPEN = BreakerState.HALF_OPEN
_FORCED_OPEN = BreakerState.FORCED_OPEN
_DISABLED = BreakerState.DISABLED
_SUCCESS = CallOutcome.SUCCESS
_FAILURE = CallOutcome.FAILURE
_IGNORED = CallOutcome.IGNORED


class ErrorSink(Protocol):
    """Where counted failures go (seawall's ErrorAggregator fits); kept structural to avoid a dependency."""

    def record(self, exc: Exception, *, source: str) -> object: ...


class CircuitOpenError(Exception):
    """A call was refused because the breaker is open (or half-open with every probe slot taken).

    Built by BaseException's C constructor (fields live in `args`, the message is formatted only
    when read): rejections are a hot path.
    """

    if TYPE_CHECKING:

        def __init__(self, name: str, state: BreakerState, retry_after: float) -> None: ...

    @property
    def name(self) -> str:
        return cast(str, self.args[0])

    @property
    def state(self) -> BreakerState:
        return cast(BreakerState, self.args[1])

    @property
    def retry_after(self) -> float:
        """Seconds until a probe will be let through (0.0 when half-open is busy)."""
        return cast(float, self.args[2])

    def __str__(self) -> str:
        return f"circuit breaker {self.name!r} is {self.state.value}; retry after {self.retry_after:.1f}s"


class BreakerStateMachine:
    """The state and transitions of a circuit breaker (see docs/architecture.md); the base of
    `CircuitBreaker`, which adds the ways to call it. Not meant to be used on its own."""

    __slots__ = (
        "__weakref__",
        "_bus",
        "_classify",
        "_clock",
        "_consecutive",
        "_errors",
        "_failed",
        "_failure_threshold",
        "_gen",
        "_half_open_max",
        "_ignored",
        "_lock",
        "_minimum_calls",
        "_opened_at",
        "_probe_successes",
        "_probes",
        "_rate_threshold",
        "_reads",
        "_rejections",
        "_reset_timeout",
        "_slow_duration",
        "_slow_rate_threshold",
        "_state",
        "_state_since",
        "_success_threshold",
        "_successes",
        "_timed",
        "_window",
        "config",
        "name",
        "registry",
    )

    kind = "breaker"

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        reset_timeout: float = 60.0,
        half_open_max_calls: int = 1,
        success_threshold: int = 1,
        failure_rate_threshold: float | None = None,
        window_type: str = "count",
        window_size: int = 100,
        minimum_calls: int = 10,
        slow_call_duration: float | None = None,
        slow_call_rate_threshold: float | None = None,
        record_on: ExceptionFilter = (Exception,),
        ignore_on: ExceptionFilter = (),
        errors: ErrorSink | None = None,
        clock: Callable[[], float] = time.monotonic,
        registry: Registry | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty str, got {name!r}")
        if not callable(clock):
            raise TypeError(f"clock must be callable, got {clock!r}")
        if errors is not None and not callable(getattr(errors, "record", None)):
            raise TypeError(f"errors must have a record(exc, source=...) method, got {errors!r}")
        config = breaker_config(
            failure_threshold=failure_threshold,
            reset_timeout=reset_timeout,
            half_open_max_calls=half_open_max_calls,
            success_threshold=success_threshold,
            failure_rate_threshold=failure_rate_threshold,
            window_type=window_type,
            window_size=window_size,
            minimum_calls=minimum_calls,
            slow_call_duration=slow_call_duration,
            slow_call_rate_threshold=slow_call_rate_threshold,
            record_on=record_on,
            ignore_on=ignore_on,
        )
        self.name = name
        self.config = config
        self.registry = default_registry() if registry is None else registry
        self._bus: EventBus = self.registry.bus
        self._errors = errors
        self._clock = clock
        self._lock = Lock()
        self._failure_threshold: int = config["failure_threshold"]
        self._reset_timeout: float = config["reset_timeout"]
        self._half_open_max: int = config["half_open_max_calls"]
        self._success_threshold: int = config["success_threshold"]
        self._rate_threshold: float | None = config["failure_rate_threshold"]
        self._slow_duration: float | None = config["slow_call_duration"]
        self._slow_rate_threshold: float | None = config["slow_call_rate_threshold"]
        self._minimum_calls: int = config["minimum_calls"]
        needs_window = self._rate_threshold is not None or self._slow_rate_threshold is not None
        self._window: CountWindow | TimeWindow | None = (
            make_window(window_type, config["window_size"]) if needs_window else None
        )
        # Read the clock around calls only when an outcome depends on time.
        self._timed = self._slow_duration is not None or isinstance(self._window, TimeWindow)
        self._classify = compile_filter(config["record_on"], config["ignore_on"])
        self._state = _CLOSED
        self._gen = 0  # bumped on every transition; a call's token is the generation it entered in
        self._state_since = clock()
        self._opened_at = self._state_since
        self._consecutive = 0
        self._probes = 0  # half-open probes in flight
        self._probe_successes = 0
        self._failed = self._ignored = 0  # totals since creation (changed under the lock)
        # Successes and rejections are counted without the lock: next() on an itertools.count is
        # one C call, atomic under the GIL. Reading one takes its next value as well, so a reader
        # (always under the lock) subtracts the reads before it: `_reads`.
        self._successes = itertools.count()
        self._rejections = itertools.count()
        self._reads = 0
        self.registry.add(self)

    # -- transitions (lock held) ------------------------------------------------------------------

    def _retry_after(self, now: float) -> float | None:
        state = self._state
        if state is _OPEN:
            return max(0.0, self._reset_timeout - (now - self._opened_at))
        if state is _FORCED_OPEN:
            return self._reset_timeout
        if state is _HALF_OPEN and self._probes >= self._half_open_max:
            return 0.0
        return None

    def _check_timeout(self, now: float, events: list[Event]) -> None:
        if self._state is _OPEN and now - self._opened_at >= self._reset_timeout:
            self._move(_HALF_OPEN, "timeout", now, events)

    def _move(self, to: BreakerState, reason: str, now: float, events: list[Event]) -> None:
        """Change state (lock held); a fresh generation makes in-flight calls' outcomes stale."""
        frm = self._state
        self._state = to
        self._gen += 1
        self._state_since = now
        self._consecutive = 0
        self._probes = 0
        self._probe_successes = 0
        if to is _OPEN:
            self._opened_at = now
        if self._window is not None and (to is _CLOSED or frm is _CLOSED):
            self._window.reset()
        if frm is not to:
            events.append(BreakerStateChanged(self.name, frm, to, reason))

    # -- admission and outcomes ------------------------------------------------------------------

    def _admit(self) -> int | CircuitOpenError:
        """Admission off the fast path (lock held briefly): a token, or the error to raise."""
        events: list[Event] = []
        result: int | CircuitOpenError
        with self._lock:
            now = self._clock()
            state = self._state
            if state is _OPEN and now - self._opened_at >= self._reset_timeout:
                self._move(_HALF_OPEN, "timeout", now, events)
                state = _HALF_OPEN
            if state is _CLOSED or state is _DISABLED:
                result = self._gen
            elif state is _HALF_OPEN and self._probes < self._half_open_max:
                self._probes += 1
                result = ~self._gen
            else:
                next(self._rejections)
                if state is _OPEN:
                    retry_after = self._reset_timeout - (now - self._opened_at)
                else:  # forced_open waits for a person: report the configured timeout
                    retry_after = self._reset_timeout if state is _FORCED_OPEN else 0.0
                result = CircuitOpenError(self.name, state, retry_after)
                if self._bus.listeners:
                    events.append(BreakerCallRejected(self.name, state, retry_after))
        if events:
            self._publish(events)
        return result

    def _enter(self) -> int:
        """Admit a call and return its token (gen, or ~gen for a half-open probe) or raise."""
        state = self._state
        if state is _CLOSED or state is _DISABLED:
            return self._gen
        if state is _OPEN and not self._bus.listeners:  # plain rejection: no lock
            waited = self._clock() - self._opened_at
            if waited < self._reset_timeout:
                next(self._rejections)
                raise CircuitOpenError(self.name, _OPEN, self._reset_timeout - waited)
        token = self._admit()
        if isinstance(token, CircuitOpenError):
            raise token
        return token

    def _start(self) -> float | None:
        return self._clock() if self._timed or self._bus.listeners else None

    def _success(self, token: int, start: float | None) -> None:
        now = duration = 0.0
        if start is not None:
            now = self._clock()
            duration = now - start
        next(self._successes)
        events: list[Event] = []
        if token >= 0 and self._window is None:  # closed or disabled, nothing to feed: no lock
            if self._consecutive:  # already 0 (the usual case): nothing to clear
                with self._lock:
                    if token == self._gen:
                        self._consecutive = 0
        else:
            with self._lock:
                if token == self._gen:
                    if self._state is _CLOSED:
                        self._consecutive = 0
                        if self._window is not None:
                            slow = self._slow_duration is not None and duration >= self._slow_duration
                            self._window.record(False, slow, now)
                            if slow:
                                self._check_rates(now, events)
                elif token < 0 and ~token == self._gen:  # a probe of the current half-open period
                    self._probes -= 1
                    self._probe_successes += 1
                    if self._probe_successes >= self._success_threshold:
                        now = now if start is not None else self._clock()
                        self._move(_CLOSED, "probe_success", now, events)
        if self._bus.listeners:  # (duration 0.0 for a listener that arrived during an untimed call)
            events.insert(0, BreakerCallCompleted(self.name, _SUCCESS, duration, None))
        if events:
            self._publish(events)

    def _failure(self, token: int, start: float | None, exc: Exception) -> None:
        now = duration = 0.0
        if start is not None:
            now = self._clock()
            duration = now - start
        try:
            counted = self._classify(exc)
        except Exception as broken:  # a broken predicate must not hide the user's error
            self._bus.report_error(f"breaker:{self.name}:filter", broken)
            counted = True
        events: list[Event] = []
        with self._lock:
            if not counted:
                self._ignored += 1
                if token < 0 and ~token == self._gen:
                    self._probes -= 1  # an ignored probe proves nothing: free its slot
            else:
                self._failed += 1
                if start is None:
                    now = self._clock()
                if token == self._gen and self._state is _CLOSED:
                    self._consecutive += 1
                    if self._window is not None:
                        slow = self._slow_duration is not None and duration >= self._slow_duration
                        self._window.record(True, slow, now)
                    if self._consecutive >= self._failure_threshold:
                        self._move(_OPEN, "failures", now, events)
                    elif self._window is not None:
                        self._check_rates(now, events)
                elif token < 0 and ~token == self._gen:
                    self._move(_OPEN, "probe_failure", now, events)
        if counted and self._errors is not None:
            try:
                self._errors.record(exc, source=self.name)
            except Exception as broken:  # bookkeeping must not hide the user's error
                self._bus.report_error("errors", broken)
        if self._bus.listeners:
            outcome = _FAILURE if counted else _IGNORED
            events.insert(0, BreakerCallCompleted(self.name, outcome, duration, type(exc).__name__))
        if events:
            self._publish(events)

    def _cancelled(self, token: int) -> None:
        """A BaseException (cancellation, KeyboardInterrupt) is no outcome; it frees a probe slot."""
        if token < 0:
            with self._lock:
                if ~token == self._gen:
                    self._probes -= 1

    def _check_rates(self, now: float, events: list[Event]) -> None:
        window = self._window
        assert window is not None
        calls, failures, slow = window.totals(now)
        if calls < self._minimum_calls:
            return
        if self._rate_threshold is not None and failures >= self._rate_threshold * calls:
            self._move(_OPEN, "failure_rate", now, events)
        elif self._slow_rate_threshold is not None and slow >= self._slow_rate_threshold * calls:
            self._move(_OPEN, "slow_calls", now, events)

    def _publish(self, events: list[Event]) -> None:
        bus = self._bus
        if bus.listeners:
            for event in events:
                bus.publish(event)
