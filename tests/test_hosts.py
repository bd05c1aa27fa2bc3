"""Host and Origin on state-changing requests (DNS rebinding), in the router and the demo."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

import seawall
from seawall.demo import create_demo_app
from seawall.starlette import create_app
from seawall.starlette.hosts import resolve_trusted_hosts

TOKEN = "hosts-admin-token"


@pytest.fixture(autouse=True)
def defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEAWALL_TRUSTED_HOSTS", raising=False)  # the shipped defaults


def admin_app(**options: Any) -> TestClient:
    registry = seawall.Registry()
    seawall.CircuitBreaker("payments", registry=registry)
    app = create_app(registry=registry, prometheus_registry=CollectorRegistry(), admin_token=TOKEN, **options)
    return TestClient(app, base_url="http://127.0.0.1:8000")


AUTH = {"authorization": f"Bearer {TOKEN}"}


def test_a_rebound_name_cannot_change_state_but_can_read() -> None:
    client = admin_app()
    rebound = {**AUTH, "host": "evil.example:8000", "origin": "http://evil.example:8000"}
    refused = client.post("/api/resilience/breakers/payments/open", headers=rebound)
    assert refused.status_code == 403
    assert refused.json()["error_code"] == "untrusted_host"
    assert client.get("/api/resilience/breakers/payments", headers=rebound).json()["state"] == "closed"
    assert client.get("/metrics", headers={"host": "prometheus-target:8000"}).status_code == 200


def test_a_trusted_host_with_a_foreign_origin_is_refused() -> None:
    client = admin_app()
    response = client.post(
        "/api/resilience/breakers/payments/open", headers={**AUTH, "origin": "http://evil.example"}
    )
    assert response.status_code == 403
    assert response.json()["error_code"] == "untrusted_origin"


@pytest.mark.parametrize("host", ["127.0.0.1:8000", "localhost", "[::1]:9000"])
def test_loopback_names_are_trusted_by_default(host: str) -> None:
    client = admin_app()
    response = client.post(
        "/api/resilience/breakers/payments/open", headers={**AUTH, "host": host, "origin": f"http://{host}"}
    )
    assert response.status_code == 200, response.text


def test_configured_hosts_and_patterns(monkeypatch: pytest.MonkeyPatch) -> None:
    client = admin_app(trusted_hosts=["*.example.com"])
    ok = client.post("/api/resilience/breakers/payments/open", headers={**AUTH, "host": "api.example.com"})
    assert ok.status_code == 200
    refused = client.post("/api/resilience/breakers/payments/reset", headers={**AUTH, "host": "127.0.0.1"})
    assert refused.status_code == 403
    monkeypatch.setenv("SEAWALL_TRUSTED_HOSTS", "a.example, b.example")
    assert resolve_trusted_hosts(None) == ("a.example", "b.example")
    with pytest.raises(TypeError, match="trusted_hosts must be a list"):
        resolve_trusted_hosts("a.example")


def test_the_demo_chaos_api_refuses_a_rebound_host(fake_clock: Any) -> None:
    app = create_demo_app(traffic_rate=0, clock=fake_clock, sleep=fake_clock.sleep, seed=1, tracing=False)
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        body = {"content": b'{"outage": true}', "headers": {"content-type": "application/json"}}
        rebound = client.post(
            "/chaos/payments",
            content=body["content"],
            headers={**body["headers"], "host": "evil.example:8000"},
        )
        assert rebound.status_code == 403
        assert client.get("/chaos").json()["payments"]["outage"] is False
        local = client.post("/chaos/payments", **body)
        assert local.status_code == 200
        assert client.get("/chaos").json()["payments"]["outage"] is True
