"""seawall.policy: the documented order, what each layer sees, and a retry deadline in scope."""

from __future__ import annotations

import asyncio

import pytest

import seawall
from conftest import FakeClock
from fake_loop import run
from seawall import BreakerState, BulkheadFullError, CallTimeoutError, RateLimitedError, Registry


def stack(clock: FakeClock, slept: list[float], **retry_settings: object) -> dict[str, object]:
    registry = Registry()

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(seconds)

    settings = {
        "attempts": 3,
        "initial": 0.0,
        "jitter": 0.0,
        "sleep": sleep,
        "clock": clock,
        **retry_settings,
    }
    return {
        "retry": seawall.Retry("dep", registry=registry, **settings),  # type: ignore[arg-type]
        "rate_limiter": seawall.RateLimiter("dep", 1.0, burst=2, clock=clock, registry=registry),
        "bulkhead": seawall.Bulkhead("dep", 1, clock=clock, registry=registry),
        "breaker": seawall.CircuitBreaker("dep", failure_threshold=2, clock=clock, registry=registry),
        "timeout": seawall.Timeout("dep", 1.0, clock=clock, registry=registry),
    }


def test_order_is_retry_limiter_bulkhead_breaker_timeout(fake_clock: FakeClock) -> None:
    parts = stack(fake_clock, [])
    pol = seawall.policy(**parts)  # type: ignore[arg-type]
    assert [layer.kind for layer in pol.layers] == ["retry", "rate_limiter", "bulkhead", "breaker", "timeout"]
    assert repr(pol).startswith("Policy(retry 'dep' > rate_limiter 'dep'")


def test_timeouts_reach_the_breaker_and_the_retry(fake_clock: FakeClock) -> None:
    slept: list[float] = []
    parts = stack(fake_clock, slept, attempts=2)
    pol = seawall.policy(**parts)  # type: ignore[arg-type]

    @pol
    def slow() -> str:
        fake_clock.advance(2.0)
        return "late"

    with pytest.raises(CallTimeoutError):
        slow()
    breaker = parts["breaker"]
    assert breaker.state is BreakerState.OPEN  # type: ignore[attr-defined]  # both attempts timed out: a slow dependency trips it
    assert parts["timeout"].snapshot().calls["timed_out"] == 2  # type: ignore[attr-defined]


def test_local_rejections_never_count_against_the_dependency(fake_clock: FakeClock) -> None:
    parts = stack(fake_clock, [], attempts=1)
    pol = seawall.policy(**parts)  # type: ignore[arg-type]
    bulkhead = parts["bulkhead"]
    with bulkhead:  # type: ignore[attr-defined]
        for _ in range(2):
            with pytest.raises(BulkheadFullError):
                pol.call(lambda: "ok")
    with pytest.raises(RateLimitedError):
        pol.call(lambda: "ok")  # the limiter's burst of 2 went to the two refused calls
    snap = parts["breaker"].snapshot()  # type: ignore[attr-defined]
    assert snap.calls["failure"] == 0
    assert snap.state is BreakerState.CLOSED


def test_retry_honours_the_limiters_retry_after(fake_clock: FakeClock) -> None:
    slept: list[float] = []
    parts = stack(fake_clock, slept)
    pol = seawall.policy(retry=parts["retry"], rate_limiter=parts["rate_limiter"])
    for _ in range(3):
        assert pol.call(lambda: "ok") == "ok"
    assert slept == [1.0]  # the third waited exactly the limiter's retry_after


def test_a_retry_deadline_bounds_each_attempts_timeout(fake_clock: FakeClock) -> None:
    parts = stack(fake_clock, [], deadline=1.5)
    seen: list[float | None] = []
    pol = seawall.policy(retry=parts["retry"], timeout=parts["timeout"])

    def attempt() -> str:
        seen.append(seawall.remaining())
        fake_clock.advance(1.2)
        return "slow"

    with pytest.raises(CallTimeoutError):
        pol.call(attempt)
    assert seen == [1.0, pytest.approx(0.3)]  # the second attempt only had what the deadline left


def test_async_stack(fake_clock: FakeClock) -> None:
    parts = stack(fake_clock, [])
    pol = seawall.policy(**parts)  # type: ignore[arg-type]

    @pol
    async def fetch(key: str) -> str:
        await asyncio.sleep(0.5)
        return key.upper()

    async def main() -> list[str]:
        return [await fetch("a"), await fetch("b")]

    assert run(main(), fake_clock) == ["A", "B"]


def test_bad_layers_are_named() -> None:
    registry = Registry()
    timeout = seawall.Timeout("dep", 1.0, registry=registry)
    with pytest.raises(TypeError, match="bulkhead must be a seawall bulkhead primitive"):
        seawall.policy(bulkhead=timeout)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one"):
        seawall.policy()
