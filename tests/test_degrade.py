"""Graceful degradation: Features, Feature and safe_call."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

import seawall
from conftest import FakeClock
from seawall import FallbackReason, Features, FeatureUnavailableError, Registry
from seawall.events import Event, FallbackUsed, FeatureToggled


class Boom(Exception):
    pass


def fail() -> str:
    raise Boom("downstream said no")


def ok(value: str = "fresh") -> str:
    return value


@pytest.fixture
def registry() -> Registry:
    return Registry()


@pytest.fixture
def events(registry: Registry) -> list[Event]:
    seen: list[Event] = []
    registry.bus.subscribe(seen.append)
    return seen


def test_primary_answers_when_healthy(registry: Registry) -> None:
    features = Features(registry=registry)
    features.register("recs", fallback=[])
    assert features.call("recs", ok, "x") == "x"
    result = features["recs"].call_result(ok)
    assert (result.value, result.source, result.reason) == ("fresh", "primary", None)


def test_error_answers_fallback_and_counts(registry: Registry, events: list[Event]) -> None:
    features = Features(registry=registry)
    feature = features.register("recs", fallback="cached")
    result = feature.call_result(fail)
    assert (result.value, result.source, result.reason) == ("cached", "fallback", FallbackReason.ERROR)
    assert FallbackUsed("recs", FallbackReason.ERROR, "Boom") in events
    assert feature.snapshot().fallbacks["error"] == 1


def test_switches_off_after_failures_and_back_on_through_probe(
    registry: Registry, events: list[Event]
) -> None:
    clock = FakeClock(1000.0)
    features = Features(registry=registry)
    feature = features.register(
        "recs", fallback="cached", failure_threshold=3, reset_timeout=10.0, clock=clock
    )
    calls = 0

    def counted_fail() -> str:
        nonlocal calls
        calls += 1
        raise Boom

    for _ in range(3):
        assert feature.call(counted_fail) == "cached"
    assert not feature.enabled
    assert FeatureToggled("recs", enabled=False, reason="failures") in events
    # Off: the primary is not called at all.
    result = feature.call_result(counted_fail)
    assert (result.source, result.reason, calls) == ("fallback", FallbackReason.CIRCUIT_OPEN, 3)
    clock.now += 10.0
    assert feature.call(ok) == "fresh"
    assert feature.enabled
    assert FeatureToggled("recs", enabled=True, reason="recovered") in events
    assert feature.snapshot().fallbacks == {"disabled": 0, "circuit_open": 1, "error": 3, "stale": 0}


def test_manual_disable_and_enable(registry: Registry, events: list[Event]) -> None:
    features = Features(registry=registry)
    features.register("recs", fallback_fn=lambda value="fresh": f"fallback for {value}")
    features.disable("recs")
    assert not features.is_enabled("recs")
    assert features.call("recs", ok, "a") == "fallback for a"
    assert FeatureToggled("recs", enabled=False, reason="manual") in events
    features.enable("recs")
    assert features.is_enabled("recs")
    assert features.call("recs", ok, "a") == "a"
    assert FeatureToggled("recs", enabled=True, reason="manual") in events
    assert features["recs"].snapshot().fallbacks["disabled"] == 1


def test_stale_value_served_with_age_until_ttl(registry: Registry) -> None:
    clock = FakeClock(1000.0)
    feature = Features(registry=registry).register(
        "prices", fallback="default", stale=True, stale_ttl=60.0, clock=clock
    )
    assert feature.call(ok, "v1") == "v1"
    clock.now += 5.0
    result = feature.call_result(fail)
    assert (result.value, result.source, result.reason, result.age) == (
        "v1",
        "stale",
        FallbackReason.ERROR,
        5.0,
    )
    clock.now += 60.0
    assert feature.call_result(fail).source == "fallback"


def test_without_fallback_error_is_reraised_and_disabled_raises_unavailable(registry: Registry) -> None:
    feature = Features(registry=registry).register("strict")
    with pytest.raises(Boom):
        feature.call(fail)
    feature.disable()
    with pytest.raises(FeatureUnavailableError) as info:
        feature.call(ok)
    assert info.value.name == "strict"
    assert info.value.reason is FallbackReason.DISABLED
    assert feature.snapshot().fallbacks == {reason.value: 0 for reason in FallbackReason}


def test_async_calls_and_async_fallback(registry: Registry) -> None:
    async def primary(value: str) -> str:
        await asyncio.sleep(0)
        return value

    async def broken(value: str) -> str:
        raise Boom

    async def fallback(value: str) -> str:
        return f"fb:{value}"

    feature = Features(registry=registry).register("recs", fallback_fn=fallback)

    async def scenario() -> tuple[str, str]:
        return await feature.call_async(primary, "a"), await feature.call_async(broken, "b")

    assert asyncio.run(scenario()) == ("a", "fb:b")


def test_decorator_keeps_name_and_degrades(registry: Registry) -> None:
    feature = Features(registry=registry).register("recs", fallback="none")

    @feature
    def recommend(user: str) -> str:
        if user == "bad":
            raise Boom
        return f"for {user}"

    assert recommend.__name__ == "recommend"
    assert recommend("ann") == "for ann"
    assert recommend("bad") == "none"


def test_registry_lists_features_and_rejects_duplicates(registry: Registry) -> None:
    features = Features(registry=registry)
    features.register("a", fallback=1)
    assert [feature.name for feature in registry.features()] == ["a"]
    assert [snap.name for snap in registry.snapshot().features] == ["a"]
    with pytest.raises(ValueError, match="'a'"):
        features.register("a", fallback=2)
    with pytest.raises(KeyError, match="no feature named 'b'"):
        features["b"]
    # The feature's own breaker stays out of the registry's breakers.
    assert registry.breakers() == []


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"stale_ttl": 0}, "stale_ttl"),
        ({"fallback_fn": 3}, "fallback_fn"),
        ({"fallback": 1, "fallback_fn": ok}, "not both"),
        ({"failure_threshold": 0}, "failure_threshold"),
        ({"errors": object()}, "errors"),
    ],
)
def test_bad_settings_name_the_field(registry: Registry, settings: dict[str, Any], message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        Features(registry=registry).register("x", **settings)


def test_safe_call_answers_fallback_logs_and_records(caplog: pytest.LogCaptureFixture) -> None:
    aggregator = seawall.ErrorAggregator(registry=Registry())
    with caplog.at_level(logging.WARNING, logger="seawall"):
        assert seawall.safe_call(fail, fallback="fb", errors=aggregator, source="db") == "fb"
    assert "db failed with Boom" in caplog.text
    stats = aggregator.stats()
    assert stats["errors_by_source"] == {"db": 1}
    assert seawall.safe_call(ok, "x", fallback="fb", errors=aggregator) == "x"
    assert seawall.safe_call(fail, fallback_fn=lambda: "computed", errors=None) == "computed"


def test_safe_call_through_retry() -> None:
    attempts = 0

    def flaky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise ConnectionError("reset")
        return "done"

    retry = seawall.Retry("flaky", attempts=3, sleep=lambda _: None, registry=Registry())
    assert seawall.safe_call(flaky, fallback="fb", retry=retry, errors=None) == "done"
    assert attempts == 3


def test_safe_call_async() -> None:
    async def broken() -> str:
        raise Boom

    async def fallback() -> str:
        return "async-fb"

    assert asyncio.run(seawall.safe_call_async(broken, fallback_fn=fallback, errors=None)) == "async-fb"


def test_feature_factory_keeps_a_none_fallback_and_follows_the_one_rule(registry: Registry) -> None:
    made = seawall.feature("recs", fallback=None, registry=registry)
    made.disable()
    assert made.call(ok, "x") is None  # None is a fallback value, not "no fallback"
    assert seawall.feature("recs", fallback=None, registry=registry) is made
    with pytest.raises(ValueError, match="different configuration: fallback='other'"):
        seawall.feature("recs", fallback="other", registry=registry)
    settings = seawall.FeatureSettings(fallback=None)
    assert made.settings == settings
    with pytest.raises(ValueError, match="fallback or fallback_fn, not both"):
        seawall.FeatureSettings(fallback=1, fallback_fn=ok)
