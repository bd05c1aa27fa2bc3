"""Events the primitives publish, and the bus that delivers them to listeners.

Primitives know nothing of Prometheus or OpenTelemetry: they publish small frozen events and
instrumentation subscribes. Delivery is synchronous, in the caller's thread (and task), so a
listener may use context (the current span) of the call it observes. A listener that raises is
logged at ERROR and counted; the exception never reaches the caller.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, Union

from ._enums import BreakerState, CallOutcome, ErrorCategory, FallbackReason, RetryOutcome

log = logging.getLogger("seawall")


@dataclass(frozen=True, slots=True)
class PrimitiveRegistered:
    """A breaker, retry or feature joined a registry (so exporters can create its series at once)."""

    kind: str  # "breaker", "retry" or "feature"
    name: str


@dataclass(frozen=True, slots=True)
class BreakerStateChanged:
    breaker: str
    from_state: BreakerState
    to_state: BreakerState
    reason: str  # bounded: "failures", "failure_rate", "slow_calls", "timeout", "probe_success", "probe_failure", "manual"


@dataclass(frozen=True, slots=True)
class BreakerCallCompleted:
    """A call the breaker let through has finished (success, failure or ignored)."""

    breaker: str
    outcome: CallOutcome
    duration: float  # seconds, measured with the breaker's clock
    error_type: str | None  # exception class name on failure/ignored


@dataclass(frozen=True, slots=True)
class BreakerCallRejected:
    breaker: str
    state: BreakerState
    retry_after: float  # seconds until a probe will be let through (0 when unknown or forced)


@dataclass(frozen=True, slots=True)
class RetryAttemptStarted:
    retry: str
    attempt: int  # 1-based


@dataclass(frozen=True, slots=True)
class RetryAttemptFinished:
    retry: str
    attempt: int
    duration: float
    error_type: str | None  # None when the attempt succeeded
    category: ErrorCategory | None
    will_retry: bool
    delay: float  # seconds slept before the next attempt (0 when none)


@dataclass(frozen=True, slots=True)
class RetryCompleted:
    retry: str
    outcome: RetryOutcome
    attempts: int
    duration: float
    error_type: str | None  # the final error, when it failed


@dataclass(frozen=True, slots=True)
class ErrorRecorded:
    source: str
    error_type: str
    category: ErrorCategory


@dataclass(frozen=True, slots=True)
class FeatureToggled:
    feature: str
    enabled: bool
    reason: str  # bounded: "manual", "failures", "recovered"


@dataclass(frozen=True, slots=True)
class FallbackUsed:
    feature: str
    reason: FallbackReason
    error_type: str | None


@dataclass(frozen=True, slots=True)
class InstrumentationFailed:
    """A listener or exporter failed; published so metrics can count it."""

    component: str
    error_type: str


Event = Union[
    PrimitiveRegistered,
    BreakerStateChanged,
    BreakerCallCompleted,
    BreakerCallRejected,
    RetryAttemptStarted,
    RetryAttemptFinished,
    RetryCompleted,
    ErrorRecorded,
    FeatureToggled,
    FallbackUsed,
    InstrumentationFailed,
]


class Listener(Protocol):
    """Anything callable with an event. An optional `component` attribute names it in error counts."""

    def __call__(self, event: Event, /) -> None: ...


class EventBus:
    """Delivers events to listeners; isolates and counts listener failures.

    `listeners` is an immutable tuple replaced on (un)subscribe, so the hot path reads it without a
    lock: primitives do `if bus.listeners: bus.publish(...)` and pay nothing when nobody listens.
    """

    __slots__ = ("_errors", "_lock", "listeners")

    def __init__(self) -> None:
        self.listeners: tuple[Listener, ...] = ()
        self._lock = threading.Lock()
        self._errors: dict[str, int] = {}

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Add a listener; returns a function that removes it again."""
        if not callable(listener):
            raise TypeError(f"listener must be callable, got {listener!r}")
        with self._lock:
            self.listeners = (*self.listeners, listener)

        def unsubscribe() -> None:
            with self._lock:
                self.listeners = tuple(item for item in self.listeners if item is not listener)

        return unsubscribe

    def publish(self, event: Event) -> None:
        for listener in self.listeners:
            try:
                listener(event)
            except Exception as exc:  # noqa: BLE001 - instrumentation must never break the call
                self.report_error(_component_of(listener), exc)

    def report_error(self, component: str, exc: BaseException) -> None:
        """Count and log a failure of instrumentation; tell the other listeners (never recursively)."""
        with self._lock:
            self._errors[component] = self._errors.get(component, 0) + 1
        log.error("seawall instrumentation %s failed", component, exc_info=exc)
        failure = InstrumentationFailed(component=component, error_type=type(exc).__name__)
        for listener in self.listeners:
            try:
                listener(failure)
            except Exception as nested:  # noqa: BLE001
                with self._lock:
                    name = _component_of(listener)
                    self._errors[name] = self._errors.get(name, 0) + 1
                log.error("seawall instrumentation %s failed on a failure report", name, exc_info=nested)

    def instrumentation_errors(self) -> dict[str, int]:
        """Failures counted so far, by component."""
        with self._lock:
            return dict(self._errors)


def _component_of(listener: object) -> str:
    component = getattr(listener, "component", None)
    if isinstance(component, str) and component:
        return component
    return type(listener).__name__
