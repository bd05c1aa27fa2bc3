"""The status body cache: counters may lag by `status_cache_seconds`, states never do, and mounting
the routes subscribes nothing to the registry's bus (so breaker calls build no events)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

import seawall
from seawall import CircuitBreaker, Feature, Retry
from seawall.starlette import create_app, resilience_routes
from seawall.starlette.cache import BodyCache, breakers_fingerprint, features_fingerprint

TOKEN = "s3cret-admin-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
LONG = 60.0  # a cache period no test run outlasts: every "still cached" below is deterministic


class Boom(Exception):
    pass


def fail() -> None:
    raise Boom("down")


def ok() -> str:
    return "ok"


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SEAWALL_ADMIN_TOKEN", "SEAWALL_ADMIN_TOKEN_FILE", "PROMETHEUS_MULTIPROC_DIR"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def client(registry: seawall.Registry) -> Iterator[TestClient]:
    app = create_app(
        registry=registry,
        prometheus_registry=CollectorRegistry(),
        instrument_prometheus=False,
        admin_token=TOKEN,
        status_cache_seconds=LONG,
    )
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def breakers(client: TestClient) -> dict[str, dict[str, Any]]:
    response = client.get("/api/resilience/breakers")
    assert response.status_code == 200
    return {item["name"]: item for item in response.json()["breakers"]}


def features(client: TestClient) -> dict[str, dict[str, Any]]:
    response = client.get("/api/resilience/features")
    assert response.status_code == 200
    return {item["name"]: item for item in response.json()["features"]}


# -- BodyCache on its own -----------------------------------------------------------------------------


def test_body_is_reused_while_young_and_its_fingerprint_unchanged(
    registry: seawall.Registry, fake_clock: Any
) -> None:
    cache = BodyCache(registry, 0.5, clock=fake_clock)
    builds: list[int] = []
    mark = ["a"]

    def build() -> bytes:
        builds.append(1)
        return str(len(builds)).encode()

    def fingerprint() -> str:
        return mark[0]

    assert cache.get("k", build, fingerprint) == b"1"
    fake_clock.advance(0.4)
    assert cache.get("k", build, fingerprint) == b"1"  # within the ttl, same fingerprint
    mark[0] = "b"
    assert cache.get("k", build, fingerprint) == b"2"  # fingerprint changed: rebuilt at once
    assert cache.get("k", build, fingerprint) == b"2"
    fake_clock.advance(0.5)
    assert cache.get("k", build, fingerprint) == b"3"  # expired
    assert cache.get("other", build) == b"4"  # keys are apart; no fingerprint: age alone
    assert cache.get("other", build) == b"4"
    cache.clear()
    assert cache.get("other", build) == b"5"


def test_zero_ttl_builds_every_time_and_bad_ttls_are_refused(registry: seawall.Registry) -> None:
    cache = BodyCache(registry, 0)
    bodies = iter([b"1", b"2"])
    assert cache.get("k", lambda: next(bodies)) == b"1"
    assert cache.get("k", lambda: next(bodies)) == b"2"
    for bad in (-1, 61, True, "0.5", float("nan")):
        with pytest.raises(ValueError, match=r"status_cache_seconds must be between 0 and 60, got"):
            BodyCache(registry, bad)  # type: ignore[arg-type]


def test_fingerprints_follow_registration_and_state(registry: seawall.Registry, fake_clock: Any) -> None:
    breaker = CircuitBreaker("db", failure_threshold=1, reset_timeout=10, registry=registry, clock=fake_clock)
    first = breakers_fingerprint(registry)
    assert breakers_fingerprint(registry) == first
    breaker.call(ok)
    assert breakers_fingerprint(registry) == first  # a counter is not part of it
    with pytest.raises(Boom):
        breaker.call(fail)
    opened = breakers_fingerprint(registry)
    assert opened != first
    fake_clock.advance(10)
    assert breakers_fingerprint(registry) == opened  # reading never moves open -> half_open
    assert breaker.snapshot().state is seawall.BreakerState.OPEN
    before = breakers_fingerprint(registry)
    CircuitBreaker("cache", registry=registry)
    assert breakers_fingerprint(registry) != before

    feature = Feature("search", fallback=[], registry=registry)
    marks = [features_fingerprint(registry)]
    feature.disable()
    marks.append(features_fingerprint(registry))
    feature.enable()
    marks.append(features_fingerprint(registry))
    assert marks[0] != marks[1] != marks[2]
    assert marks[0][1] == marks[2][1]  # type: ignore[index]  # same states again


# -- through the routes: states at once, counters from the cache ---------------------------------------


def test_breaker_trip_shows_in_the_next_response_while_counters_stay_cached(
    client: TestClient, registry: seawall.Registry
) -> None:
    breaker = CircuitBreaker("payments", failure_threshold=2, registry=registry)
    assert breakers(client)["payments"]["calls"]["success"] == 0
    breaker.call(ok)
    assert breakers(client)["payments"]["calls"]["success"] == 0  # cached: counters lag, as promised
    with pytest.raises(Boom):
        breaker.call(fail)
    assert breakers(client)["payments"]["consecutive_failures"] == 0  # still cached: no state change
    with pytest.raises(Boom):
        breaker.call(fail)  # trips
    body = breakers(client)["payments"]
    assert body["state"] == "open"
    assert body["calls"]["success"] == 1  # rebuilt, so the counters caught up too
    assert body["calls"]["failure"] == 2


def test_open_breaker_stays_open_until_a_call_probes(registry: seawall.Registry, fake_clock: Any) -> None:
    breaker = CircuitBreaker("db", failure_threshold=1, reset_timeout=5, registry=registry, clock=fake_clock)
    app = create_app(registry=registry, metrics=False, status_cache_seconds=LONG)
    with TestClient(app) as test_client:
        with pytest.raises(Boom):
            breaker.call(fail)
        assert breakers(test_client)["db"]["state"] == "open"
        fake_clock.advance(5)
        assert breakers(test_client)["db"]["state"] == "open"  # a read is no probe
        breaker.call(ok)
        assert breakers(test_client)["db"]["state"] == "closed"


def test_new_primitives_show_at_once(client: TestClient, registry: seawall.Registry) -> None:
    CircuitBreaker("payments", registry=registry)
    assert set(breakers(client)) == {"payments"}
    assert client.get("/api/resilience/retries").json()["retries"] == []
    assert features(client) == {}
    CircuitBreaker("search", registry=registry)
    Retry("fetch", attempts=2, retry_on=Boom, sleep=lambda seconds: None, registry=registry)
    Feature("recommendations", fallback=[], registry=registry)
    assert set(breakers(client)) == {"payments", "search"}
    assert [item["name"] for item in client.get("/api/resilience/retries").json()["retries"]] == ["fetch"]
    assert set(features(client)) == {"recommendations"}


def test_feature_switches_show_at_once(client: TestClient, registry: seawall.Registry) -> None:
    feature = Feature("recommendations", fallback=[], failure_threshold=1, registry=registry)
    assert features(client)["recommendations"]["enabled"] is True
    feature.disable()
    body = features(client)["recommendations"]
    assert (body["enabled"], body["manually_disabled"]) == (False, True)
    feature.enable()
    assert features(client)["recommendations"]["enabled"] is True
    assert feature.call(fail) == []  # its breaker trips: off by failures
    body = features(client)["recommendations"]
    assert (body["enabled"], body["breaker_state"]) == (False, "open")
    feature.disable()  # already not enabled; the manual switch still shows
    assert features(client)["recommendations"]["manually_disabled"] is True


def test_admin_reset_of_a_closed_breaker_shows_cleared_counts(
    client: TestClient, registry: seawall.Registry
) -> None:
    breaker = CircuitBreaker("payments", failure_threshold=5, registry=registry)
    with pytest.raises(Boom):
        breaker.call(fail)
    assert breakers(client)["payments"]["consecutive_failures"] == 1
    with pytest.raises(Boom):
        breaker.call(fail)
    assert breakers(client)["payments"]["consecutive_failures"] == 1  # cached
    response = client.post("/api/resilience/breakers/payments/reset", headers=AUTH)
    assert response.status_code == 200
    body = breakers(client)["payments"]
    assert (body["state"], body["consecutive_failures"]) == ("closed", 0)
    assert body["calls"]["failure"] == 2


# -- nothing listens --------------------------------------------------------------------------------------


def test_mounting_and_serving_the_routes_subscribes_nothing(registry: seawall.Registry) -> None:
    """With instrument_prometheus=False no part of the web layer is a bus listener, so a breaker
    call in a service that merely mounts the routes builds and delivers no events."""
    breaker = CircuitBreaker("payments", failure_threshold=1, registry=registry)
    Feature("recommendations", fallback=[], registry=registry)
    Retry("fetch", attempts=2, retry_on=Boom, sleep=lambda seconds: None, registry=registry)
    routes = resilience_routes(
        registry=registry,
        prometheus_registry=CollectorRegistry(),
        instrument_prometheus=False,
        admin_token=TOKEN,
        stream_max_seconds=0.01,
    )
    assert registry.bus.listeners == ()
    app = create_app(
        registry=registry,
        prometheus_registry=CollectorRegistry(),
        instrument_prometheus=False,
        admin_token=TOKEN,
        routes=[],
        stream_max_seconds=0.01,
    )
    assert registry.bus.listeners == ()
    from starlette.applications import Starlette

    for served in (Starlette(routes=routes), app):
        with TestClient(served, raise_server_exceptions=False) as test_client:
            paths = [
                "/health",
                "/health/ready",
                "/metrics",
                "/api/resilience/breakers",
                "/api/resilience/breakers/payments",
                "/api/resilience/errors",
                "/api/resilience/errors/recent",
                "/api/resilience/features",
                "/api/resilience/retries",
                "/api/resilience/snapshot",
                "/resilience",
            ]
            for path in paths:
                assert test_client.get(path).status_code == 200, path
            with test_client.stream("GET", "/api/resilience/stream") as response:
                assert "event: snapshot" in "".join(response.iter_text())
            with pytest.raises(Boom):
                breaker.call(fail)
            response = test_client.post("/api/resilience/breakers/payments/reset", headers=AUTH)
            assert response.status_code == 200
            assert test_client.get("/api/resilience/breakers").json()["breakers"][0]["state"] == "closed"
            assert registry.bus.listeners == ()
    assert registry.bus.listeners == ()
