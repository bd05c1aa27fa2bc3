"""Rule-based properties of the breaker state machine, with many calls in flight at once.

Each in-flight call is a `with breaker:` block entered in its own `contextvars.Context` (as
separate tasks would be), so blocks can finish in any order.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from conftest import FakeClock
from seawall import BreakerState, CircuitBreaker, CircuitOpenError, Registry
from seawall.events import BreakerStateChanged, Event

TIMEOUT = 10.0


class Boom(Exception):
    pass


@dataclass
class InFlight:
    context: contextvars.Context
    period: int  # the transition count when admitted
    probe: bool


class BreakerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.in_flight: list[InFlight] = []
        self.transitions: list[tuple[BreakerState, float]] = []
        self.admitted = self.rejected = self.finished = self.cancelled = 0
        self.violations: list[str] = []

    @initialize(
        failure_threshold=st.integers(1, 4),
        half_open_max_calls=st.integers(1, 3),
        success_threshold=st.integers(1, 3),
        rate=st.none() | st.sampled_from([0.5, 1.0]),
    )
    def make(
        self, failure_threshold: int, half_open_max_calls: int, success_threshold: int, rate: float | None
    ) -> None:
        registry = Registry()
        registry.bus.subscribe(self.on_event)
        self.max_probes = half_open_max_calls
        self.cb = CircuitBreaker(
            "prop",
            failure_threshold=failure_threshold,
            half_open_max_calls=half_open_max_calls,
            success_threshold=success_threshold,
            failure_rate_threshold=rate,
            window_size=6,
            minimum_calls=3,
            reset_timeout=TIMEOUT,
            ignore_on=LookupError,
            clock=self.clock,
            registry=registry,
        )

    def on_event(self, event: Event) -> None:
        # The bus swallows listener errors, so violations are collected and asserted in an invariant.
        if isinstance(event, BreakerStateChanged):
            if event.reason == "timeout":
                opened_at = self.transitions[-1][1]
                if self.clock.now - opened_at < TIMEOUT:
                    self.violations.append(f"half-open {self.clock.now - opened_at}s after opening")
            self.transitions.append((event.to_state, self.clock.now))

    def last_state(self) -> tuple[BreakerState, float]:
        return self.transitions[-1] if self.transitions else (BreakerState.CLOSED, 0.0)

    @rule()
    def begin(self) -> None:
        state, since = self.last_state()
        must_reject = state is BreakerState.FORCED_OPEN or (
            state is BreakerState.OPEN and self.clock.now - since < TIMEOUT
        )
        context = contextvars.copy_context()
        try:
            context.run(self.cb.__enter__)
        except CircuitOpenError as err:
            self.rejected += 1
            error = err
        else:
            error = None
        if error is not None:
            assert error.state in (BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.FORCED_OPEN)
            assert error.retry_after >= 0.0
            return
        assert not must_reject, f"admitted while {state} since {since}, now {self.clock.now}"
        self.admitted += 1
        probe = self.last_state()[0] is BreakerState.HALF_OPEN
        self.in_flight.append(InFlight(context, len(self.transitions), probe))

    @precondition(lambda self: self.in_flight)
    @rule(index=st.integers(0, 50), outcome=st.sampled_from(["success", "failure", "ignored", "cancel"]))
    def finish(self, index: int, outcome: str) -> None:
        call = self.in_flight.pop(index % len(self.in_flight))
        error: BaseException | None = {
            "success": None,
            "failure": Boom("x"),
            "ignored": KeyError("k"),
            "cancel": KeyboardInterrupt(),
        }[outcome]
        call.context.run(self.cb.__exit__, None if error is None else type(error), error, None)
        if outcome == "cancel":
            self.cancelled += 1
        else:
            self.finished += 1

    @rule(seconds=st.sampled_from([0.5, TIMEOUT - 0.5, TIMEOUT, 25.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(action=st.sampled_from(["reset", "force_open", "disable"]))
    def manual(self, action: str) -> None:
        getattr(self.cb, action)()

    @rule()
    def read_state(self) -> None:
        state = self.cb.state
        assert state is self.last_state()[0]

    @invariant()
    def probes_within_limit(self) -> None:
        if not hasattr(self, "cb"):
            return
        snap = self.cb.snapshot()
        assert 0 <= snap.half_open_in_flight <= self.max_probes
        current = len(self.transitions)
        probes = sum(1 for call in self.in_flight if call.probe and call.period == current)
        assert probes <= self.max_probes
        if snap.state is BreakerState.HALF_OPEN:
            assert probes == snap.half_open_in_flight

    @invariant()
    def never_half_open_before_timeout(self) -> None:
        assert self.violations == []

    @invariant()
    def counts_add_up(self) -> None:
        if not hasattr(self, "cb"):
            return
        calls = self.cb.snapshot().calls
        assert calls["rejected"] == self.rejected
        assert calls["success"] + calls["failure"] + calls["ignored"] == self.finished
        assert self.admitted == self.finished + self.cancelled + len(self.in_flight)


BreakerMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=30, deadline=None)
TestBreakerMachine = BreakerMachine.TestCase
