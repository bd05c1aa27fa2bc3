"""seawall.prometheus driven by real CircuitBreakers (fake clock, no sleeping), via parsed expositions."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

import seawall
from exposition import get, scrape, transitions
from seawall import prometheus as sp

S = seawall.BreakerState


def states(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], breaker: str) -> dict[str, float]:
    return {
        dict(labels)["state"]: value
        for (name, labels), value in found.items()
        if name == "seawall_circuit_breaker_state" and dict(labels)["breaker"] == breaker
    }


def fail() -> None:
    raise ConnectionError("down")


def ok() -> str:
    return "ok"


def test_breaker_lifecycle(
    inst: Any, prom: CollectorRegistry, registry: seawall.Registry, fake_clock: Any
) -> None:
    breaker = seawall.CircuitBreaker(
        "payments", failure_threshold=2, reset_timeout=30.0, clock=fake_clock, registry=registry
    )
    found = scrape(prom)
    assert states(found, "payments") == {
        "closed": 1,
        "open": 0,
        "half_open": 0,
        "forced_open": 0,
        "disabled": 0,
    }
    assert get(found, "seawall_circuit_breaker_calls_total", breaker="payments", outcome="rejected") == 0
    assert breaker.call(ok) == "ok"
    for _ in range(2):
        with pytest.raises(ConnectionError):
            breaker.call(fail)
    with pytest.raises(seawall.CircuitOpenError):
        breaker.call(ok)
    found = scrape(prom)
    assert states(found, "payments")["open"] == 1
    assert states(found, "payments")["closed"] == 0
    assert get(found, "seawall_circuit_breaker_calls_total", breaker="payments", outcome="success") == 1
    assert get(found, "seawall_circuit_breaker_calls_total", breaker="payments", outcome="failure") == 2
    assert get(found, "seawall_circuit_breaker_calls_total", breaker="payments", outcome="rejected") == 1
    assert (
        get(
            found,
            "seawall_circuit_breaker_call_duration_seconds_count",
            breaker="payments",
            outcome="failure",
        )
        == 2
    )
    assert transitions(found, "payments", "closed", "open") == 1
    # the reset timeout passes with no call: a scrape never moves the state, so it still reads open
    fake_clock.advance(31)
    found = scrape(prom)
    assert states(found, "payments")["open"] == 1
    assert transitions(found, "payments", "open", "half_open") is None
    assert breaker.call(ok) == "ok"  # the probe: open -> half_open -> closed
    found = scrape(prom)
    assert states(found, "payments")["closed"] == 1
    assert transitions(found, "payments", "open", "half_open") == 1
    breaker.force_open()
    assert states(scrape(prom), "payments")["forced_open"] == 1
    breaker.disable()
    assert states(scrape(prom), "payments") == {
        "closed": 0,
        "open": 0,
        "half_open": 0,
        "forced_open": 0,
        "disabled": 1,
    }


def test_breakers_made_before_instrument(
    prom: CollectorRegistry, registry: seawall.Registry, fake_clock: Any
) -> None:
    early = seawall.CircuitBreaker(
        "early", failure_threshold=1, reset_timeout=10.0, clock=fake_clock, registry=registry
    )
    with pytest.raises(ConnectionError):
        early.call(fail)
    fake_clock.advance(11)  # a probe is due, but only a call moves the state
    instrumentation = sp.instrument(prom, seawall_registry=registry)
    try:
        found = scrape(prom)
        assert states(found, "early")["open"] == 1
        assert get(found, "seawall_circuit_breaker_calls_total", breaker="early", outcome="success") == 0
    finally:
        instrumentation.close()


def test_failure_rate_gauge(
    inst: Any, prom: CollectorRegistry, registry: seawall.Registry, fake_clock: Any
) -> None:
    breaker = seawall.CircuitBreaker(
        "search",
        failure_threshold=100,
        failure_rate_threshold=0.9,
        window_size=10,
        minimum_calls=10,
        clock=fake_clock,
        registry=registry,
    )
    for fn in (ok, ok, ok, fail):
        with contextlib.suppress(ConnectionError):
            breaker.call(fn)
    assert get(scrape(prom), "seawall_circuit_breaker_failure_ratio", breaker="search") == 0.25
    assert breaker.state is S.CLOSED


def test_get_or_create_breaker_and_async(
    inst: Any, prom: CollectorRegistry, registry: seawall.Registry
) -> None:
    import asyncio

    breaker = seawall.breaker("inventory", registry=registry)

    async def fetch() -> int:
        return 1

    async def main() -> None:
        for _ in range(3):
            await breaker.call_async(fetch)

    asyncio.run(asyncio.wait_for(main(), timeout=10))
    found = scrape(prom)
    assert get(found, "seawall_circuit_breaker_calls_total", breaker="inventory", outcome="success") == 3


def test_features_and_fallbacks(
    inst: Any, prom: CollectorRegistry, registry: seawall.Registry, fake_clock: Any
) -> None:
    from seawall import Features

    features = Features(registry=registry)
    recs = features.register("recs", fallback=[], failure_threshold=2, reset_timeout=10.0, clock=fake_clock)
    found = scrape(prom)
    assert get(found, "seawall_feature_enabled", feature="recs") == 1
    assert get(found, "seawall_fallbacks_total", feature="recs", reason="error") == 0
    for _ in range(2):
        assert recs.call(fail) == []  # the primary fails: fallback
    assert recs.call(ok) == []  # switched off by its breaker: fallback without calling
    found = scrape(prom)
    assert get(found, "seawall_feature_enabled", feature="recs") == 0
    assert get(found, "seawall_fallbacks_total", feature="recs", reason="error") == 2
    assert get(found, "seawall_fallbacks_total", feature="recs", reason="circuit_open") == 1
    # the feature's private breaker stays out of the breaker metrics
    assert get(found, "seawall_circuit_breaker_calls_total", breaker="recs", outcome="failure") is None
    recs.disable()
    assert recs.call(ok) == []
    found = scrape(prom)
    assert get(found, "seawall_fallbacks_total", feature="recs", reason="disabled") == 1
    fake_clock.advance(11)
    recs.enable()
    assert recs.call(ok) == "ok"
    assert get(scrape(prom), "seawall_feature_enabled", feature="recs") == 1
