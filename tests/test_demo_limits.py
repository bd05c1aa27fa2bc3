"""The demo's timeouts, bulkheads, payments rate limiter and upstream faults, driven by the chaos
settings on a fake-time loop (the upstream is real HTTP on loopback, served in the same loop): a
slowed dependency times out at 1 s and fills its bulkhead, a hung one times out, a reset is a
transient failure, a 429's Retry-After paces the retry and never trips the breaker."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from conftest import FakeClock
from fake_loop import run
from seawall import Registry
from seawall.demo import BREAKERS
from seawall.demo.app import BULKHEAD_SLOTS, TIMEOUT_SECONDS, Demo

T = TypeVar("T")


def make(clock: FakeClock) -> Demo:
    return Demo(registry=Registry(), clock=clock, sleep=asyncio.sleep, seed=7, traffic_rate=0)


def running(demo: Demo, clock: FakeClock, body: Callable[[], Awaitable[T]]) -> T:
    """Run `body` on a fake-time loop with the demo's upstream server up, and stop it after."""

    async def main() -> T:
        await demo.start()
        try:
            return await body()
        finally:
            await demo.stop()

    return run(asyncio.wait_for(main(), timeout=600), clock)  # fake seconds: bounded, never waited


def test_a_slowed_dependency_times_out_and_answers_from_the_fallback(fake_clock: FakeClock) -> None:
    demo = make(fake_clock)
    demo.guarded["inventory"].dependency.update({"latency_ms": 1500})
    start = fake_clock.now
    answer = running(demo, fake_clock, lambda: demo.call("inventory"))
    assert answer["source"] == "fallback"
    timeout = demo.registry.get("timeout", "inventory.attempt")
    assert timeout.snapshot().calls["timed_out"] == 2  # both attempts of the retry
    # cancelled at the deadline, not at 1.5 s (the stop of the upstream takes no fake time)
    assert fake_clock.now - start < 2 * TIMEOUT_SECONDS + 0.3


def test_a_hung_upstream_is_cut_by_the_attempt_timeout(fake_clock: FakeClock) -> None:
    demo = make(fake_clock)
    demo.guarded["recommendations"].dependency.update({"outage": True, "fault": "hang"})
    answer = running(demo, fake_clock, lambda: demo.call("recommendations"))
    assert answer["source"] == "fallback"
    assert demo.registry.get("timeout", "recommendations.attempt").snapshot().calls["timed_out"] == 2


def test_a_hung_request_ends_when_its_caller_gives_up(fake_clock: FakeClock) -> None:
    demo = make(fake_clock)
    demo.guarded["recommendations"].dependency.update({"outage": True, "fault": "hang"})
    app = demo.upstream.app

    async def body() -> tuple[int, int]:
        await demo.call("recommendations")
        during = app.active
        for _ in range(100):  # the server notices the closed connections (fake time: 1 s at most)
            if not app.active:
                break
            await asyncio.sleep(0.01)
        return during, app.active

    start = fake_clock.now
    during, after = running(demo, fake_clock, body)
    assert after == 0, during  # not held for the 30 s hang
    assert fake_clock.now - start < 5


def test_a_reset_connection_is_a_transient_failure(fake_clock: FakeClock) -> None:
    demo = make(fake_clock)
    demo.guarded["inventory"].dependency.update({"outage": True, "fault": "reset"})
    answer = running(demo, fake_clock, lambda: demo.call("inventory"))
    assert answer["source"] == "fallback"
    retry = demo.registry.get("retry", "inventory").snapshot()
    assert retry.retries == 1  # retried once: a reset is worth another attempt
    errors = demo.registry.errors.stats()
    assert errors["errors_by_source"][BREAKERS["inventory"]] == 2
    # what httpx raises for a connection the server reset before answering
    assert set(errors["errors_by_type"]) <= {"RemoteProtocolError", "ReadError", "ConnectError"}, errors


def test_a_429_with_retry_after_paces_the_retry_and_spares_the_breaker(fake_clock: FakeClock) -> None:
    demo = make(fake_clock)
    demo.guarded["inventory"].dependency.update({"outage": True, "status": 429, "retry_after": 1})
    start = fake_clock.now
    answers = running(demo, fake_clock, lambda: asyncio.gather(*(demo.call("inventory") for _ in range(3))))
    assert [a["source"] for a in answers] == ["fallback"] * 3
    assert fake_clock.now - start >= 1.0  # the second attempt waited for Retry-After, not 50 ms
    breaker = demo.guarded["inventory"].breaker.snapshot()
    assert breaker.state == "closed"
    calls: dict[str, Any] = breaker.calls
    assert calls.get("failure", 0) == 0  # a 429 is the upstream pacing us, not failing
    assert calls.get("ignored", 0) == 6


def test_a_retry_after_past_the_longest_wait_gives_up_at_once(fake_clock: FakeClock) -> None:
    demo = make(fake_clock)
    demo.guarded["inventory"].dependency.update({"outage": True, "status": 503, "retry_after": 30})
    answer = running(demo, fake_clock, lambda: demo.call("inventory"))
    assert answer["source"] == "fallback"
    assert demo.guarded["inventory"].dependency.calls == 1  # no second attempt 30 s later


def test_an_error_status_is_retried_and_recorded(fake_clock: FakeClock) -> None:
    demo = make(fake_clock)
    demo.guarded["payments"].dependency.update({"outage": True, "status": 500})
    answer = running(demo, fake_clock, lambda: demo.call("payments"))
    assert answer["source"] == "fallback"  # a POST, retried because it carries an Idempotency-Key
    assert demo.guarded["payments"].dependency.calls == 2
    assert demo.guarded["payments"].breaker.snapshot().calls["failure"] == 2


def test_a_slowed_dependency_fills_its_bulkhead(fake_clock: FakeClock) -> None:
    demo = make(fake_clock)
    demo.guarded["recommendations"].dependency.update({"latency_ms": 800})

    async def main() -> list[dict[str, object]]:
        calls = [asyncio.ensure_future(demo.call("recommendations")) for _ in range(BULKHEAD_SLOTS + 3)]
        await asyncio.sleep(0.1)
        assert demo.registry.get("bulkhead", "recommendations").snapshot().in_flight == BULKHEAD_SLOTS
        return list(await asyncio.gather(*calls))

    answers = running(demo, fake_clock, main)
    snap = demo.registry.get("bulkhead", "recommendations").snapshot()
    assert snap.calls == {"admitted": BULKHEAD_SLOTS, "rejected": 3, "cancelled": 0}
    assert [a["source"] for a in answers].count("fallback") == 3


def test_payments_has_a_rate_limit_and_the_others_do_not(fake_clock: FakeClock) -> None:
    demo = make(fake_clock)
    limiters = demo.registry.items("rate_limiter")
    assert [limiter.name for limiter in limiters] == ["payments"]
    stages = {f"{name}.{stage}" for name in BREAKERS for stage in ("total", "attempt")}
    assert {t.name for t in demo.registry.items("timeout")} == stages


def test_a_permanent_status_is_not_retried_and_spares_the_breaker(fake_clock: FakeClock) -> None:
    demo = make(fake_clock)
    demo.guarded["inventory"].dependency.update({"outage": True, "status": 404})
    answer = running(demo, fake_clock, lambda: demo.call("inventory"))
    assert answer["source"] == "fallback"  # the feature falls back on the error answer
    assert demo.guarded["inventory"].dependency.calls == 1  # another attempt would get the same 404
    calls = demo.guarded["inventory"].breaker.snapshot().calls
    assert calls.get("failure", 0) == 0  # a healthy upstream's answer
    assert calls["success"] == 1
