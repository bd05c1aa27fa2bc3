"""pybreaker's behaviour with and without seawall's adapter attached, scenario by scenario.

pybreaker's sdist ships no tests (see test_peer_suites.py), so its documented behaviours are
written here afresh: each scenario runs on a bare breaker and on an instrumented one, and what
callers see (results, exception types, state and failure counter after each step, what a user's
own listener is told) must be the same. The instrumented run must also count what happened.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pybreaker
import pytest

import seawall
from seawall.adapters.pybreaker import instrument_breaker

S = seawall.BreakerState
Step = Callable[[str, Callable[[], object]], None]


class Down(ConnectionError):
    pass


def ok() -> str:
    return "ok"


def down() -> None:
    raise Down("down")


async def ok_async() -> str:
    await asyncio.sleep(0)
    return "ok"


async def down_async() -> None:
    await asyncio.sleep(0)
    raise Down("down")


def later(cb: pybreaker.CircuitBreaker) -> None:
    """As if the reset timeout had passed (pybreaker reads the wall clock: no real sleep)."""
    cb._state_storage.opened_at = datetime.now(timezone.utc) - timedelta(seconds=cb.reset_timeout + 1)


class UserListener(pybreaker.CircuitBreakerListener):
    """The service's own listener: it must be told the same with seawall's beside it."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def before_call(self, cb: Any, func: Any, *args: Any, **kwargs: Any) -> None:
        self.log.append("before")

    def success(self, cb: Any) -> None:
        self.log.append("success")

    def failure(self, cb: Any, exc: BaseException) -> None:
        self.log.append(f"failure {type(exc).__name__}")

    def state_change(self, cb: Any, old_state: Any, new_state: Any) -> None:
        self.log.append(f"{getattr(old_state, 'name', old_state)} -> {new_state.name}")


@dataclass
class Scenario:
    name: str
    settings: dict[str, Any]
    body: Callable[[pybreaker.CircuitBreaker, Step], None]
    calls: dict[str, int]
    transitions: dict[tuple[S, S], int] = field(default_factory=dict)


LATER = ("the reset timeout passes", None)


def calls(
    *items: tuple[str, Callable[[], object] | None],
) -> Callable[[pybreaker.CircuitBreaker, Step], None]:
    """A scenario body: `cb.call(fn)` for each (label, fn); LATER moves past the reset timeout."""

    def body(cb: pybreaker.CircuitBreaker, step: Step) -> None:
        for label, fn in items:
            if fn is None:
                later(cb)
            else:
                step(label, functools.partial(cb.call, fn))

    return body


closed_counts = calls(("fail", down), ("fail", down), ("success resets the counter", ok), ("fail", down))
trips = calls(("fail", down), ("trip", down), ("rejected", ok), ("rejected", down))
probe_succeeds = calls(("trip", down), LATER, ("probe", ok), ("closed again", ok))
probe_fails = calls(("trip", down), LATER, ("probe fails", down), ("rejected", ok))
two_probes = calls(("trip", down), LATER, ("first probe", ok), ("second probe closes", ok))


def excluded(cb: pybreaker.CircuitBreaker, step: Step) -> None:
    def value_error() -> None:
        raise ValueError("bad input")

    def key_error() -> None:
        raise KeyError("missing")

    step("excluded type", lambda: cb.call(value_error))
    step("excluded type", lambda: cb.call(value_error))
    step("excluded by predicate", lambda: cb.call(key_error))
    step("counted", lambda: cb.call(down))


def generators_and_blocks(cb: pybreaker.CircuitBreaker, step: Step) -> None:
    def numbers() -> Generator[int, None, None]:
        yield 1
        yield 2

    def broken() -> Generator[int, None, None]:
        yield 1
        raise Down("mid-stream")

    def block(fail: bool) -> str:
        with cb.calling():
            if fail:
                raise Down("in block")
        return "done"

    step("generator", lambda: list(cb.call(numbers)))
    step("block", lambda: block(False))
    step("failing generator", lambda: list(cb.call(broken)))
    step("failing block trips", lambda: block(True))
    step("rejected block", lambda: block(False))


def decorated(cb: pybreaker.CircuitBreaker, step: Step) -> None:
    @cb
    def fetch(fail: bool) -> str:
        if fail:
            raise Down("down")
        return "fetched"

    step("decorated", lambda: fetch(False))
    step("decorated trip", lambda: fetch(True))
    step("decorated rejected", lambda: fetch(False))


def shared_storage(cb: pybreaker.CircuitBreaker, step: Step) -> None:
    other = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=60, state_storage=cb._state_storage)
    step("another worker trips the shared state", lambda: other.call(down))
    step("this one rejects", lambda: cb.call(ok))


def by_hand(cb: pybreaker.CircuitBreaker, step: Step) -> None:
    step("close a closed breaker", cb.close)
    step("open", cb.open)
    step("open again", cb.open)
    step("half open", cb.half_open)
    step("close", cb.close)
    step("call", lambda: cb.call(ok))


def tornado_calls(cb: pybreaker.CircuitBreaker, step: Step) -> None:
    def run(fn: Callable[[], Any]) -> object:
        async def main() -> object:
            return await cb.call_async(fn)

        return asyncio.run(asyncio.wait_for(main(), timeout=10))

    step("async success", lambda: run(ok_async))
    step("async failure", lambda: run(down_async))
    step("async trip", lambda: run(down_async))
    step("async rejected", lambda: run(ok_async))


CLOSED_OPEN = (S.CLOSED, S.OPEN)
OPEN_HALF = (S.OPEN, S.HALF_OPEN)
TRIPPED = {CLOSED_OPEN: 1}
RECOVERED = {CLOSED_OPEN: 1, OPEN_HALF: 1, (S.HALF_OPEN, S.CLOSED): 1}
REOPENED = {CLOSED_OPEN: 1, OPEN_HALF: 1, (S.HALF_OPEN, S.OPEN): 1}
NO_NEW_ERROR = {"fail_max": 2, "throw_new_error_on_trip": False}
TWO_PROBES = {"fail_max": 1, "success_threshold": 2}
MIXED = {"success": 2, "failure": 2, "rejected": 1}
TWO_FAILED = {"failure": 2, "rejected": 1}
EXCLUDING = {"fail_max": 2, "exclude": [ValueError, lambda e: isinstance(e, KeyError)]}
SCENARIOS = [
    Scenario("closed_counts", {"fail_max": 3}, closed_counts, {"success": 1, "failure": 3}),
    Scenario("trips", {"fail_max": 2}, trips, {"failure": 2, "rejected": 2}, TRIPPED),
    Scenario("trip_keeps_original_error", NO_NEW_ERROR, trips, {"failure": 2, "rejected": 2}, TRIPPED),
    Scenario("probe_succeeds", {"fail_max": 1}, probe_succeeds, {"success": 2, "failure": 1}, RECOVERED),
    Scenario("probe_fails", {"fail_max": 1}, probe_fails, {"failure": 2, "rejected": 1}, REOPENED),
    Scenario("two_probes", TWO_PROBES, two_probes, {"success": 2, "failure": 1}, RECOVERED),
    # pybreaker treats excluded errors as successes (they reset its counter); so does the count.
    Scenario("excluded", EXCLUDING, excluded, {"success": 3, "failure": 1}),
    Scenario("generators_and_blocks", {"fail_max": 2}, generators_and_blocks, MIXED, TRIPPED),
    Scenario("decorated", {"fail_max": 1}, decorated, {"success": 1, "failure": 1, "rejected": 1}, TRIPPED),
    Scenario("shared_storage", {"fail_max": 1}, shared_storage, {"rejected": 1}, TRIPPED),
    Scenario("by_hand", {}, by_hand, {"success": 1}, RECOVERED),
    Scenario("tornado_calls", {"fail_max": 2}, tornado_calls, {"success": 1, **TWO_FAILED}, TRIPPED),
]


@dataclass
class Run:
    steps: list[tuple[str, object, str, int]]
    told: list[str]
    registry: seawall.Registry


def run(scenario: Scenario, instrumented: bool) -> Run:
    registry = seawall.Registry()
    user = UserListener()
    cb = pybreaker.CircuitBreaker(reset_timeout=60, listeners=[user], name="cb", **scenario.settings)
    if instrumented:
        instrument_breaker(cb, registry=registry)
    steps: list[tuple[str, object, str, int]] = []

    def step(label: str, action: Callable[[], object]) -> None:
        try:
            outcome: object = action()
        except Exception as exc:
            outcome = type(exc).__name__
        steps.append((label, outcome, cb.current_state, cb.fail_counter))

    scenario.body(cb, step)
    return Run(steps, user.log, registry)


@pytest.fixture(params=SCENARIOS, ids=[s.name for s in SCENARIOS])
def scenario(request: pytest.FixtureRequest) -> Scenario:
    return request.param  # type: ignore[no-any-return]


def test_callers_see_the_same_with_the_adapter(scenario: Scenario) -> None:
    bare, instrumented = run(scenario, False), run(scenario, True)
    assert len(bare.steps) >= 2
    assert instrumented.steps == bare.steps
    assert instrumented.told == bare.told


def test_the_adapter_counts_what_happened(scenario: Scenario) -> None:
    result = run(scenario, True)
    snapshot = result.registry.get("breaker", "cb").snapshot()
    assert {outcome: n for outcome, n in snapshot.calls.items() if n} == scenario.calls
    assert snapshot.transitions == scenario.transitions
    assert snapshot.state.value == result.steps[-1][2].replace("-", "_")
    assert result.registry.bus.instrumentation_errors() == {}
