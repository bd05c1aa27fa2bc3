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
from dataclasses import dataclass, fields
from typing import Protocol, TypeAlias, TypeVar

from ._enums import BreakerState, CallOutcome, ErrorCategory, FallbackReason, RetryOutcome

log = logging.getLogger("seawall")

_E = TypeVar("_E")


def _fills_slots_directly(cls: type[_E]) -> type[_E]:
    """Give a frozen, slotted dataclass an `__init__` that writes its slots through their descriptors.

    Why: a frozen dataclass's generated `__init__` goes through `object.__setattr__` once per field,
    which makes an event about three times as dear to build as a plain one, and events are built
    on every instrumented call. The instances stay frozen: assignment still raises
    `dataclasses.FrozenInstanceError`; equality, hashing, repr and `fields()` are unchanged.
    """
    names = [field.name for field in fields(cls)]  # type: ignore[arg-type]
    namespace: dict[str, object] = {f"_set_{name}": getattr(cls, name).__set__ for name in names}
    body = "".join(f"    _set_{name}(self, {name})\n" for name in names)
    exec(f"def __init__(self, {', '.join(names)}):\n{body}", namespace)
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"  # type: ignore[attr-defined]
    cls.__init__ = init  # type: ignore[assignment]
    return cls


@_fills_slots_directly
@dataclass(frozen=True, slots=True)
class PrimitiveRegistered:
    """A breaker, retry or feature joined a registry (so exporters can create its series at once)."""

    kind: str  # "breaker", "retry" or "feature"
    name: str


@_fills_slots_directly
@dataclass(frozen=True, slots=True)
class BreakerStateChanged:
    breaker: str
    from_state: BreakerState
    to_state: BreakerState
    # bounded: "failures", "failure_rate", "slow_calls", "timeout", "probe_success", "probe_failure", "manual"
    reason: str


@_fills_slots_directly
@dataclass(frozen=True, slots=True)
class BreakerCallCompleted:
    """A call the breaker let through has finished (success, failure or ignored)."""

    breaker: str
    outcome: CallOutcome
    duration: float  # seconds, measured with the breaker's clock
    error_type: str | None  # exception class name on failure/ignored


@_fills_slots_directly
@dataclass(frozen=True, slots=True)
class BreakerCallRejected:
    breaker: str
    state: BreakerState
    retry_after: float  # seconds until a probe will be let through (0 when unknown or forced)


@_fills_slots_directly
@dataclass(frozen=True, slots=True)
class RetryAttemptStarted:
    retry: str
    attempt: int  # 1-based


@_fills_slots_directly
@dataclass(frozen=True, slots=True)
class RetryAttemptFinished:
    retry: str
    attempt: int
    duration: float
    error_type: str | None  # None when the attempt succeeded
    category: ErrorCategory | None
    will_retry: bool
    delay: float  # seconds slept before the next attempt (0 when none)


@_fills_slots_directly
@dataclass(frozen=True, slots=True)
class RetryCompleted:
    retry: str
    outcome: RetryOutcome
    attempts: int
    duration: float
    error_type: str | None  # the final error, when it failed


@_fills_slots_directly
@dataclass(frozen=True, slots=True)
class ErrorRecorded:
    source: str
    error_type: str
    category: ErrorCategory


@_fills_slots_directly
@dataclass(frozen=True, slots=True)
class FeatureToggled:
    feature: str
    enabled: bool
    reason: str  # bounded: "manual", "failures", "recovered"


@_fills_slots_directly
@dataclass(frozen=True, slots=True)
class FallbackUsed:
    feature: str
    reason: FallbackReason
    error_type: str | None


@_fills_slots_directly
@dataclass(frozen=True, slots=True)
class InstrumentationFailed:
    """A listener or exporter failed; published so metrics can count it."""

    component: str
    error_type: str


Event: TypeAlias = (
    PrimitiveRegistered
    | BreakerStateChanged
    | BreakerCallCompleted
    | BreakerCallRejected
    | RetryAttemptStarted
    | RetryAttemptFinished
    | RetryCompleted
    | ErrorRecorded
    | FeatureToggled
    | FallbackUsed
    | InstrumentationFailed
)


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
            except Exception as exc:
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
            except Exception as nested:
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
