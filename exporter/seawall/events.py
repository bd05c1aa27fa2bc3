"""Events the primitives publish, and the bus that delivers them to listeners.

Primitives know nothing of Prometheus or OpenTelemetry: they publish small frozen events and
instrumentation subscribes. Delivery is synchronous, in the caller's thread (and task), so a
listener may use context (the current span) of the call it observes. A listener subscribes to the
event types it wants, and an event is built only when its type has a listener. A listener that
raises is counted and logged (rate-limited); the exception never reaches the caller.

The event classes are public API: users and the adapters subscribe to them. Every event about a
primitive says which under the same two fields: `kind` (a `Kind`, fixed per event type) and `name`;
the older per-kind field names (`event.breaker`, `event.limiter`, ...) still read, as aliases.
`ErrorRecorded` (its `source` is free-form), `InstrumentationFailed` and the HTTP client's attempts
(`HttpAttemptStarted`, `HttpAttemptFinished`: a client is several primitives) are about no one primitive.
The event types are listed once, in the `Event` union; `EVENT_TYPES` and every dispatch table
(`handlers`) are derived from it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeAlias, get_args

from seawall.core.enums import BreakerState, CallOutcome, ErrorCategory, FallbackReason, RetryOutcome
from seawall.core.kinds import Kind
from seawall.core.logsafe import exception_text, log_value
from seawall.core.throttle import FailureLog

log = logging.getLogger("seawall")


class NameAlias:
    """The primitive's name under the field an event used before every event said `name`
    (`event.breaker`, `event.retry`, ...): read-only, so listeners written for it keep working."""

    __slots__ = ()

    def __get__(self, event: object, owner: type | None = None) -> str:
        name: str = getattr(event, "name")  # noqa: B009 - a descriptor on the class, not the instance
        return name


@dataclass(frozen=True, slots=True)
class PrimitiveRegistered:
    """A primitive of any kind joined a registry (so exporters can create its series at once)."""

    kind: Kind
    name: str


@dataclass(frozen=True, slots=True)
class _PrimitiveEvent:
    """What every event about one primitive carries: its kind (fixed per event type) and its name."""

    kind: ClassVar[Kind]
    name: str


@dataclass(frozen=True, slots=True)
class _BreakerEvent(_PrimitiveEvent):
    kind: ClassVar[Kind] = Kind.BREAKER
    breaker = NameAlias()


@dataclass(frozen=True, slots=True)
class _RetryEvent(_PrimitiveEvent):
    kind: ClassVar[Kind] = Kind.RETRY
    retry = NameAlias()


@dataclass(frozen=True, slots=True)
class _FeatureEvent(_PrimitiveEvent):
    kind: ClassVar[Kind] = Kind.FEATURE
    feature = NameAlias()


@dataclass(frozen=True, slots=True)
class _TimeoutEvent(_PrimitiveEvent):
    kind: ClassVar[Kind] = Kind.TIMEOUT
    timeout = NameAlias()


@dataclass(frozen=True, slots=True)
class _BulkheadEvent(_PrimitiveEvent):
    kind: ClassVar[Kind] = Kind.BULKHEAD
    bulkhead = NameAlias()


@dataclass(frozen=True, slots=True)
class _RateLimiterEvent(_PrimitiveEvent):
    kind: ClassVar[Kind] = Kind.RATE_LIMITER
    limiter = NameAlias()


@dataclass(frozen=True, slots=True)
class _TaskEvent(_PrimitiveEvent):
    kind: ClassVar[Kind] = Kind.TASK
    task = NameAlias()


@dataclass(frozen=True, slots=True)
class _HedgeEvent(_PrimitiveEvent):
    kind: ClassVar[Kind] = Kind.HEDGE
    hedge = NameAlias()


@dataclass(frozen=True, slots=True)
class BreakerStateChanged(_BreakerEvent):
    from_state: BreakerState
    to_state: BreakerState
    # bounded: "failures", "failure_rate", "slow_calls", "timeout", "probe_success", "probe_failure", "manual"
    reason: str


@dataclass(frozen=True, slots=True)
class BreakerCallCompleted(_BreakerEvent):
    """A call the breaker let through has finished (success, failure or ignored)."""

    outcome: CallOutcome
    duration: float  # seconds, measured with the breaker's clock
    error_type: str | None  # exception class name on failure/ignored


@dataclass(frozen=True, slots=True)
class BreakerCallRejected(_BreakerEvent):
    state: BreakerState
    retry_after: float  # seconds until a probe will be let through (0 when unknown or forced)


@dataclass(frozen=True, slots=True)
class RetryAttemptStarted(_RetryEvent):
    attempt: int  # 1-based


@dataclass(frozen=True, slots=True)
class RetryAttemptFinished(_RetryEvent):
    attempt: int
    duration: float
    error_type: str | None  # None when the attempt succeeded
    category: ErrorCategory | None
    will_retry: bool
    delay: float  # seconds slept before the next attempt (0 when none)


@dataclass(frozen=True, slots=True)
class RetryCompleted(_RetryEvent):
    outcome: RetryOutcome
    attempts: int
    duration: float
    error_type: str | None  # the final error, when it failed


@dataclass(frozen=True, slots=True)
class RetryGaveUp(_RetryEvent):
    """A retried operation failed for good (published besides `RetryCompleted`, for listeners that
    care only about failures, such as the tracer's `seawall.retry.gave_up` span event)."""

    outcome: RetryOutcome  # failed_without_retry or failed_with_retry
    attempts: int
    error_type: str


@dataclass(frozen=True, slots=True)
class ErrorRecorded:
    source: str
    error_type: str
    category: ErrorCategory


@dataclass(frozen=True, slots=True)
class FeatureToggled(_FeatureEvent):
    enabled: bool
    reason: str  # bounded: "manual", "failures", "recovered"


@dataclass(frozen=True, slots=True)
class FallbackUsed(_FeatureEvent):
    reason: FallbackReason
    error_type: str | None


@dataclass(frozen=True, slots=True)
class InstrumentationFailed:
    """A listener or exporter failed; published so metrics can count it."""

    component: str
    error_type: str


@dataclass(frozen=True, slots=True)
class CallTimedOut(_TimeoutEvent):
    """A call overran its timeout (async: cancelled at the deadline; sync: found late, see Timeout)."""

    seconds: float  # the budget it had: the timeout's, or less when an outer deadline was nearer
    elapsed: float  # seconds from the start to when the overrun was acted on
    cancelled: bool  # True when the call was cancelled (async); False when it ran on past the deadline (sync)


@dataclass(frozen=True, slots=True)
class BulkheadRejected(_BulkheadEvent):
    max_concurrent: int
    waited: float  # seconds spent waiting for a slot before giving up (0 when max_wait is 0)


@dataclass(frozen=True, slots=True)
class RateLimited(_RateLimiterEvent):
    backend: str  # "local" or "redis"
    retry_after: float | None  # seconds until a call would be admitted (None when unknown)


@dataclass(frozen=True, slots=True)
class RateLimiterBackendFailed(_RateLimiterEvent):
    """The shared backend (Redis) could not decide; the limiter applied its failure policy."""

    backend: str
    error_type: str
    failure_policy: str  # "open" (admitted) or "closed" (rejected)


@dataclass(frozen=True, slots=True)
class TaskStateChanged(_TaskEvent):
    """A supervised task moved between states (`seawall.TaskState` values: starting, running,
    backing_off, failed, finished, stopped)."""

    from_state: str
    to_state: str


@dataclass(frozen=True, slots=True)
class TaskFailed(_TaskEvent):
    """A supervised task raised; `will_restart` is False when it is now permanently failed."""

    error_type: str
    category: ErrorCategory
    will_restart: bool
    delay: float  # seconds until the restart (0 when none)


@dataclass(frozen=True, slots=True)
class HedgeSent(_HedgeEvent):
    """A hedge started another attempt (`attempt` 2 is the first hedge) `after` seconds into the call."""

    attempt: int
    after: float


@dataclass(frozen=True, slots=True)
class HedgeWon(_HedgeEvent):
    """A hedged attempt, not the first, answered first; the others were cancelled."""

    attempt: int


@dataclass(frozen=True, slots=True)
class HttpAttemptStarted:
    """A resilient HTTP client (`seawall.httpx`, `seawall.requests`) sends one attempt of a request
    (`attempt` 1 is the first; retries and hedges count on). About a client, a pipeline of several
    primitives, not one: it names the client (`client`) and has no `kind`."""

    client: str
    method: str
    scheme: str
    host: str
    port: int
    attempt: int


@dataclass(frozen=True, slots=True)
class HttpAttemptFinished:
    """That attempt ended with a response (`status_code`) or an exception (`error_type`)."""

    client: str
    attempt: int
    status_code: int | None
    error_type: str | None


Event: TypeAlias = (
    PrimitiveRegistered
    | BreakerStateChanged
    | BreakerCallCompleted
    | BreakerCallRejected
    | RetryAttemptStarted
    | RetryAttemptFinished
    | RetryCompleted
    | RetryGaveUp
    | ErrorRecorded
    | FeatureToggled
    | FallbackUsed
    | InstrumentationFailed
    | CallTimedOut
    | BulkheadRejected
    | RateLimited
    | RateLimiterBackendFailed
    | TaskStateChanged
    | TaskFailed
    | HedgeSent
    | HedgeWon
    | HttpAttemptStarted
    | HttpAttemptFinished
)


class Listener(Protocol):
    """Anything callable with an event. An optional `component` attribute names it in error counts."""

    def __call__(self, event: Event, /) -> None: ...


EVENT_TYPES: tuple[type, ...] = get_args(Event)


def handler_name(event_type: type) -> str:
    """The method handling `event_type` in a listener (`BreakerCallRejected`: `_on_breaker_call_rejected`)."""
    name = event_type.__name__
    return "_on" + "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def handlers(listener: object) -> dict[type, Callable[[Any], None]]:
    """The dispatch table of a listener: each event type it has an `_on_...` method for, mapped to the
    method. Its keys are what the listener subscribes to, so no second list can drift from it."""
    found = {kind: getattr(listener, handler_name(kind), None) for kind in EVENT_TYPES}
    return {kind: method for kind, method in found.items() if callable(method)}


# Exceptions a listener may raise that must reach the caller: stopping the program or the task.
_PASS_THROUGH = (KeyboardInterrupt, SystemExit, GeneratorExit, asyncio.CancelledError)

LOGGED_FAILURES_PER_COMPONENT = 5  # logged in full (with traceback); later ones are summarized
SUMMARY_INTERVAL = 60.0  # seconds between two summary lines of one component


class Channel:
    """The listeners of one event type. Primitives hold their channels and check `listeners`
    before building an event, so an event nobody subscribed to is never constructed."""

    __slots__ = ("_bus", "event_type", "listeners")

    def __init__(self, bus: EventBus, event_type: type) -> None:
        self._bus = bus
        self.event_type = event_type
        self.listeners: tuple[Listener, ...] = ()

    def publish(self, event: Event) -> None:
        for listener in self.listeners:
            try:
                listener(event)
            except _PASS_THROUGH:
                raise
            except BaseException as exc:
                self._bus.report_error(_component_of(listener), exc)


class EventBus:
    """Delivers events to listeners by event type; isolates, counts and logs listener failures.

    `subscribe(listener, events=...)` names the event types a listener wants (all by default).
    Each type has a `Channel` whose `listeners` tuple is replaced on (un)subscribe, so the hot path
    reads it without a lock: `if channel.listeners: channel.publish(Event(...))`.

    A listener that raises (anything but KeyboardInterrupt, SystemExit, GeneratorExit and
    cancellation) never reaches the caller: the failure is counted once in
    `instrumentation_errors()`, the first few per component are logged with their traceback, later
    ones as one summary line per `SUMMARY_INTERVAL`, and `InstrumentationFailed` goes to the
    listeners of that type (a failure there is counted, never reported again).
    """

    __slots__ = ("_channels", "_errors", "_failure_log", "_lock", "_subscriptions")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._channels: dict[type, Channel] = {kind: Channel(self, kind) for kind in EVENT_TYPES}
        self._subscriptions: list[tuple[Listener, frozenset[type]]] = []
        self._errors: dict[str, int] = {}
        self._failure_log = FailureLog(log, LOGGED_FAILURES_PER_COMPONENT, SUMMARY_INTERVAL, clock)

    def channel(self, event_type: type) -> Channel:
        """The channel of `event_type` (made on first use for event types of other packages)."""
        channel = self._channels.get(event_type)
        if channel is None:
            with self._lock:
                channel = self._channels.setdefault(event_type, Channel(self, event_type))
                channel.listeners = self._listeners_of(event_type)
        return channel

    @property
    def listeners(self) -> tuple[Listener, ...]:
        """Every subscribed listener, whatever it listens to."""
        return tuple(listener for listener, _ in self._subscriptions)

    def subscribe(self, listener: Listener, events: Iterable[type] | None = None) -> Callable[[], None]:
        """Deliver the events of the given types (every type when None) to `listener`; returns a
        function that removes it again."""
        if not callable(listener):
            raise TypeError(f"listener must be callable, got {listener!r}")
        if events is None:
            wanted = frozenset(EVENT_TYPES)
        else:
            wanted = frozenset(events)
            odd = [kind for kind in wanted if not isinstance(kind, type)]
            if odd:
                raise TypeError(f"events must be event classes, got {odd[0]!r}")
        entry = (listener, wanted)
        with self._lock:
            self._subscriptions.append(entry)
            for kind in wanted:
                self._channels.setdefault(kind, Channel(self, kind))
            self._rebuild()

        def unsubscribe() -> None:
            with self._lock:
                self._subscriptions = [item for item in self._subscriptions if item is not entry]
                self._rebuild()

        return unsubscribe

    def _listeners_of(self, event_type: type) -> tuple[Listener, ...]:
        return tuple(listener for listener, wanted in self._subscriptions if event_type in wanted)

    def _rebuild(self) -> None:
        for kind, channel in self._channels.items():
            channel.listeners = self._listeners_of(kind)

    def publish(self, event: Event) -> None:
        """Deliver `event` to the listeners of its type (primitives use their channel directly)."""
        self.channel(type(event)).publish(event)

    def report_error(self, component: str, exc: BaseException) -> None:
        """Count and log a failure of instrumentation (once), and tell the listeners that asked."""
        self._count(component, exc)
        failed = self._channels[InstrumentationFailed]
        if not failed.listeners:
            return
        report = InstrumentationFailed(component=component, error_type=type(exc).__name__)
        for listener in failed.listeners:
            if _component_of(listener) == component:
                continue  # a listener is not told of its own failure: it would fail again, counted twice
            try:
                listener(report)
            except _PASS_THROUGH:
                raise
            except BaseException as nested:
                self._count(_component_of(listener), nested)

    def _count(self, component: str, exc: BaseException) -> None:
        with self._lock:
            self._errors[component] = self._errors.get(component, 0) + 1
        full, summary = self._failure_log.decide(component)
        if full:
            log.error(
                "seawall instrumentation %s failed (%s); the call it observed went on:\n%s",
                log_value(component),
                type(exc).__name__,
                exception_text(exc),
            )
            if self._failure_log.is_last_full(component):
                log.error(
                    "seawall instrumentation %r: further failures are logged once per %.0fs "
                    "(all are counted in seawall_instrumentation_errors_total)",
                    component,
                    SUMMARY_INTERVAL,
                )
        elif summary:
            log.error(
                "seawall instrumentation %s failed %d more times (latest: %s)",
                log_value(component),
                summary,
                type(exc).__name__,
            )

    @property
    def clock(self) -> Callable[[], float]:
        return self._failure_log.clock

    def instrumentation_errors(self) -> dict[str, int]:
        """Failures counted so far, by component (what seawall_instrumentation_errors_total shows)."""
        with self._lock:
            return dict(self._errors)


def _component_of(listener: object) -> str:
    component = getattr(listener, "component", None)
    if isinstance(component, str) and component:
        return component
    return type(listener).__name__
