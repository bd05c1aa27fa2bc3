"""The breaker's state machine: state, transitions, admission and outcome bookkeeping, counts.

One `threading.Lock` guards state only: it is never held while the user's function runs (pybreaker
holds it, which serializes every call through a breaker), and async code takes it for
microseconds, never across an await. Each call carries a token (the state generation it was
admitted in), so an outcome that arrives after the state moved on is counted in the totals but
cannot move the new state.

The machine is the single source of truth for every number about the breaker: outcome totals,
transitions, durations by bucket (while recorded). Exporters read them through `snapshot()`, which
never changes state or publishes anything. Events are built only for channels with listeners.
`CircuitBreaker` (in `_breaker`) wraps a machine with the ways to call it.
"""

from __future__ import annotations

from collections.abc import Callable
from threading import Lock
from typing import TYPE_CHECKING, Protocol, cast

from seawall.breakers.settings import BreakerSettings, compile_filter
from seawall.breakers.window import CountWindow, TimeWindow, make_window
from seawall.core.counter import Counter
from seawall.core.enums import BreakerState, CallOutcome
from seawall.core.latency import DurationHistogram, outcome_snapshots
from seawall.core.snapshots import BreakerSnapshot
from seawall.events import BreakerCallCompleted, BreakerCallRejected, BreakerStateChanged, EventBus

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
    """The state, transitions and counts of one circuit breaker (see docs/architecture.md)."""

    __slots__ = (
        "_cancelled",
        "_changed",
        "_classify",
        "_clock",
        "_completed",
        "_consecutive",
        "_durations",
        "_errors",
        "_failed",
        "_gen",
        "_ignored",
        "_last_reason",
        "_lock",
        "_opened_at",
        "_probe_successes",
        "_probes",
        "_rejected",
        "_rejection_ticks",
        "_rejections",
        "_report",
        "_state",
        "_state_since",
        "_success_durations",
        "_success_ticks",
        "_successes",
        "_transitions",
        "_window",
        "name",
        "notify",
        "permits",
        "settings",
        "timed",
        "wants_probe",
    )

    def __init__(
        self,
        name: str,
        settings: BreakerSettings,
        bus: EventBus,
        errors: ErrorSink | None,
        clock: Callable[[], float],
    ) -> None:
        self.name = name
        self.settings = settings
        self._errors = errors
        self._clock = clock
        self._report = bus.report_error
        self._completed = bus.channel(BreakerCallCompleted)
        self._rejected = bus.channel(BreakerCallRejected)
        self._changed = bus.channel(BreakerStateChanged)
        self._lock = Lock()
        needs_window = (
            settings.failure_rate_threshold is not None or settings.slow_call_rate_threshold is not None
        )
        self._window: CountWindow | TimeWindow | None = (
            make_window(settings.window_type, settings.window_size) if needs_window else None
        )
        self._durations: dict[CallOutcome, DurationHistogram] | None = None
        self._success_durations: DurationHistogram | None = None  # the hot path's, one lookup less
        self.timed = False
        self._update_timed()
        self._classify = compile_filter(settings.record_on, settings.ignore_on)  # type: ignore[arg-type]
        self._state = _CLOSED
        self._gen = 0  # bumped on every transition; a call's token is the generation it entered in
        self._state_since = clock()
        self._opened_at = self._state_since
        self._consecutive = 0
        self._cancelled = 0
        self._probes = 0  # half-open probes in flight
        self._probe_successes = 0
        self._failed = self._ignored = 0  # totals since creation (changed under the lock)
        self._transitions: dict[tuple[BreakerState, BreakerState], int] = {}
        # Successes and rejections are counted without the lock where nothing else needs it
        # (`core/counter.py`).
        self._successes, self._rejections = Counter(), Counter()
        self._success_ticks, self._rejection_ticks = self._successes.ticks, self._rejections.ticks
        # Fleet hooks (breakers/shared.py): `permits` is None for a local breaker, else the fleet
        # probe slots this worker holds; `notify` is called (lock held, must not block) on every
        # transition and when a call wants a probe slot it does not have.
        self.permits: int | None = None
        self.notify: Callable[[], None] | None = None
        self.wants_probe = False
        self._last_reason = "manual"

    def _update_timed(self) -> None:
        """Read the clock around calls only when an outcome, a count or a listener needs the time."""
        settings = self.settings
        self.timed = (
            settings.slow_call_duration is not None
            or isinstance(self._window, TimeWindow)
            or self._durations is not None
        )

    def record_durations(self, bounds: tuple[float, ...]) -> None:
        """Keep duration counts in these buckets from now on (an exporter asks for this)."""
        with self._lock:
            if self._success_durations is not None:
                have = self._success_durations.bounds
                if have != bounds:
                    raise ValueError(f"breaker {self.name!r} already records durations in buckets {have!r}")
                return
            self._durations = {
                outcome: DurationHistogram(bounds) for outcome in (_SUCCESS, _FAILURE, _IGNORED)
            }
            self._success_durations = self._durations[_SUCCESS]
            self._update_timed()

    # -- transitions (lock held) ------------------------------------------------------------------

    def _retry_after(self, now: float) -> float | None:
        state = self._state
        if state is _OPEN:
            return max(0.0, self.settings.reset_timeout - (now - self._opened_at))
        if state is _FORCED_OPEN:
            return self.settings.reset_timeout
        if state is _HALF_OPEN and self._probes >= self.settings.half_open_max_calls:
            return 0.0
        return None

    def _move(self, to: BreakerState, reason: str, now: float) -> BreakerStateChanged | None:
        """Change state (lock held); a fresh generation makes in-flight calls' outcomes stale.
        Returns the event to publish once the lock is released, when someone listens."""
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
        self._last_reason = reason
        if self.notify is not None:
            self.notify()
        if frm is to:
            return None
        key = (frm, to)
        self._transitions[key] = self._transitions.get(key, 0) + 1
        return BreakerStateChanged(self.name, frm, to, reason) if self._changed.listeners else None

    # -- admission and outcomes ------------------------------------------------------------------

    def enter(self) -> tuple[int, float | None]:
        """Admit a call: its token (gen, or ~gen for a half-open probe) and its start time (None
        when nothing needs the duration), or raise CircuitOpenError. Closed and disabled breakers
        admit without the lock."""
        state = self._state
        if state is _CLOSED or state is _DISABLED:
            return self._gen, (self._clock() if self.timed or self._completed.listeners else None)
        if state is _OPEN and not self._rejected.listeners:  # a plain rejection needs no lock
            waited = self._clock() - self._opened_at
            if waited < self.settings.reset_timeout:
                next(self._rejection_ticks)
                raise CircuitOpenError(self.name, _OPEN, self.settings.reset_timeout - waited)
        changed: BreakerStateChanged | None = None
        rejected: CircuitOpenError | None = None
        with self._lock:
            now = self._clock()
            state = self._state
            reset_timeout = self.settings.reset_timeout
            permits = self.permits
            if state is _OPEN and now - self._opened_at >= reset_timeout:
                if permits is None or permits > 0:
                    changed = self._move(_HALF_OPEN, "timeout", now)
                    state = _HALF_OPEN
                elif not self.wants_probe and self.notify is not None:
                    self.wants_probe = True  # no fleet probe slot yet: ask for one, refuse meanwhile
                    self.notify()
            limit = self.settings.half_open_max_calls
            if permits is not None and permits < limit:
                limit = permits
            if state is _CLOSED or state is _DISABLED:
                token = self._gen
            elif state is _HALF_OPEN and self._probes < limit:
                self._probes += 1
                token = ~self._gen
            else:
                next(self._rejection_ticks)
                if state is _OPEN:
                    retry_after = max(0.0, reset_timeout - (now - self._opened_at))
                else:  # forced_open waits for a person: report the configured timeout
                    retry_after = reset_timeout if state is _FORCED_OPEN else 0.0
                rejected = CircuitOpenError(self.name, state, retry_after)
        if changed is not None:
            self._changed.publish(changed)
        if rejected is not None:
            if self._rejected.listeners:
                self._rejected.publish(BreakerCallRejected(self.name, rejected.state, rejected.retry_after))
            raise rejected
        return token, (self._clock() if self.timed or self._completed.listeners else None)

    def succeeded(self, token: int, start: float | None) -> None:
        now = duration = 0.0
        if start is not None:
            now = self._clock()
            duration = now - start
        changed: BreakerStateChanged | None = None
        durations = self._success_durations
        if durations is not None and start is not None:
            durations.observe(duration)
        if token >= 0 and self._window is None:
            # closed or disabled, nothing to feed: no lock
            next(self._success_ticks)
            if self._consecutive:  # already 0 (the usual case): nothing to clear
                with self._lock:
                    if token == self._gen:
                        self._consecutive = 0
        else:
            with self._lock:
                next(self._success_ticks)
                if token == self._gen:
                    if self._state is _CLOSED:
                        self._consecutive = 0
                        if self._window is not None:
                            slow = self._is_slow(duration)
                            self._window.record(False, slow, now)
                            if slow:
                                changed = self._check_rates(now)
                elif token < 0 and ~token == self._gen:  # a probe of the current half-open period
                    self._probes -= 1
                    self._probe_successes += 1
                    if self._probe_successes >= self.settings.success_threshold:
                        changed = self._move(
                            _CLOSED, "probe_success", now if start is not None else self._clock()
                        )
        if self._completed.listeners:  # (duration 0.0 for a listener that arrived during an untimed call)
            self._completed.publish(BreakerCallCompleted(self.name, _SUCCESS, duration, None))
        if changed is not None:
            self._changed.publish(changed)

    def failed(self, token: int, start: float | None, exc: Exception) -> None:
        now = duration = 0.0
        if start is not None:
            now = self._clock()
            duration = now - start
        try:
            counted = self._classify(exc)
        except Exception as broken:  # a broken predicate must not hide the user's error
            self._report(f"breaker:{self.name}:filter", broken)
            counted = True
        outcome = _FAILURE if counted else _IGNORED
        changed: BreakerStateChanged | None = None
        with self._lock:
            if self._durations is not None and start is not None:
                self._durations[outcome].observe(duration)
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
                        self._window.record(True, self._is_slow(duration), now)
                    if self._consecutive >= self.settings.failure_threshold:
                        changed = self._move(_OPEN, "failures", now)
                    elif self._window is not None:
                        changed = self._check_rates(now)
                elif token < 0 and ~token == self._gen:
                    changed = self._move(_OPEN, "probe_failure", now)
        if counted and self._errors is not None:
            try:
                self._errors.record(exc, source=self.name)
            except Exception as broken:  # bookkeeping must not hide the user's error
                self._report("errors", broken)
        if self._completed.listeners:
            self._completed.publish(BreakerCallCompleted(self.name, outcome, duration, type(exc).__name__))
        if changed is not None:
            self._changed.publish(changed)

    def raised(self, token: int, start: float | None, exc: BaseException) -> None:
        """A call ended by raising `exc`: an Exception is a failure, anything else cancels the call
        (the one rule for the decorator, `call`, and the context manager)."""
        if isinstance(exc, Exception):
            self.failed(token, start, exc)
        else:
            self.cancelled(token)

    def cancelled(self, token: int) -> None:
        """A BaseException (cancellation, KeyboardInterrupt): counted as `cancelled`, neither a
        success nor a failure for the state machine; it frees a probe slot."""
        with self._lock:
            self._cancelled += 1
            if token < 0 and ~token == self._gen:
                self._probes -= 1

    def _is_slow(self, duration: float) -> bool:
        limit = self.settings.slow_call_duration
        return limit is not None and duration >= limit

    def _check_rates(self, now: float) -> BreakerStateChanged | None:
        window = self._window
        assert window is not None
        settings = self.settings
        calls, failures, slow = window.totals(now)
        if calls < settings.minimum_calls:
            return None
        if (
            settings.failure_rate_threshold is not None
            and failures >= settings.failure_rate_threshold * calls
        ):
            return self._move(_OPEN, "failure_rate", now)
        if (
            settings.slow_call_rate_threshold is not None
            and slow >= settings.slow_call_rate_threshold * calls
        ):
            return self._move(_OPEN, "slow_calls", now)
        return None

    # -- manual control and reads ------------------------------------------------------------------

    def move_by_hand(self, to: BreakerState) -> None:
        with self._lock:
            changed = self._move(to, "manual", self._clock())
        if changed is not None:
            self._changed.publish(changed)

    def adopt(self, to: BreakerState, elapsed: float, permits: int | None) -> None:
        """Take the fleet's state (breakers/shared.py): `elapsed` seconds since the fleet opened,
        `permits` the fleet probe slots this worker holds. Not a local decision, so not published
        back: the reason is "fleet"."""
        changed: BreakerStateChanged | None = None
        with self._lock:
            self.permits = permits
            self.wants_probe = False
            now = self._clock()
            if to is not self._state:
                changed = self._move(to, "fleet", now)
            if to is _OPEN:  # the fleet's reset timer, also when it re-opened while we were open
                self._opened_at = now - max(0.0, elapsed)
        if changed is not None:
            self._changed.publish(changed)

    def grant(self, permits: int | None, clear_want: bool = True) -> None:
        """Set the fleet probe slots this worker holds (None: decide locally); `clear_want`:
        the wish for a slot was answered, so the next call that needs one asks again."""
        with self._lock:
            self.permits = permits
            if clear_want:
                self.wants_probe = False

    def fleet_view(self) -> tuple[int, BreakerState, str, int, bool]:
        """(generation, state, last reason, failure streak, wants a probe slot), consistent."""
        with self._lock:
            return self._gen, self._state, self._last_reason, self._consecutive, self.wants_probe

    @property
    def generation(self) -> int:
        return self._gen

    @property
    def state(self) -> BreakerState:
        return self._state

    def retry_after(self) -> float | None:
        with self._lock:
            return self._retry_after(self._clock())

    def snapshot(self) -> BreakerSnapshot:
        """A consistent copy of the state and counters; never changes state, never publishes.

        An open breaker whose reset timeout has passed still reads `open` (with `retry_after` 0):
        it moves to half_open when the next call arrives, as a call's admission is what moves it.
        """
        settings = self.settings
        with self._lock:
            now = self._clock()
            window = self._window
            calls, failures, _ = window.totals(now) if window is not None else (0, 0, 0)
            durations = self._durations
            return BreakerSnapshot(
                name=self.name,
                state=self._state,
                failure_threshold=settings.failure_threshold,
                reset_timeout=settings.reset_timeout,
                consecutive_failures=self._consecutive,
                failure_rate=None if window is None else (failures / calls if calls else 0.0),
                failure_rate_threshold=settings.failure_rate_threshold,
                window_calls=calls,
                retry_after=self._retry_after(now),
                seconds_in_state=max(0.0, now - self._state_since),
                half_open_in_flight=self._probes if self._state is _HALF_OPEN else 0,
                calls={
                    "success": self._successes.value(),
                    "failure": self._failed,
                    "rejected": self._rejections.value(),
                    "ignored": self._ignored,
                    "cancelled": self._cancelled,
                },
                transitions=dict(self._transitions),
                durations={}
                if durations is None
                else outcome_snapshots(durations, skip_empty=(self._failed == 0, self._ignored == 0)),
            )
