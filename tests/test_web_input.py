"""Hostile or odd input to the resilience routes: always a clear 4xx naming the field, never a 500."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

import seawall
from seawall.demo import create_demo_app
from seawall.starlette import create_app


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SEAWALL_ADMIN_TOKEN", "SEAWALL_ADMIN_TOKEN_FILE", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def client(registry: seawall.Registry, prom: CollectorRegistry) -> Iterator[TestClient]:
    app = create_app(registry=registry, prometheus_registry=prom)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


ODD_LIMITS = ["\u0661\u0662", "\uff11\uff12", "1_000", " 12", "12 ", "+5", "0x10", "1e3", "9" * 19]


@pytest.mark.parametrize("raw", ODD_LIMITS)
def test_limit_takes_ascii_digits_only(client: TestClient, raw: str) -> None:
    response = client.get("/api/resilience/errors/recent", params={"limit": raw})
    assert response.status_code == 422
    body = response.json()
    assert body["field"] == "limit"
    assert raw.strip()[:10] in body["message"]


def test_limit_value_is_escaped_in_the_message(client: TestClient) -> None:
    body = client.get("/api/resilience/errors/recent", params={"limit": "1\r\n<b>"}).json()
    assert "\r" not in body["message"]
    assert "\\r\\n" in body["message"]


def test_ascii_limits_still_work(client: TestClient) -> None:
    for raw, expected in (("12", 12), ("0", 1), ("-5", 1), ("100000", 100), ("007", 7)):
        assert client.get("/api/resilience/errors/recent", params={"limit": raw}).json()["limit"] == expected


@pytest.mark.parametrize("path", ["/health/", "/api/resilience/breakers/", "/metrics/"])
def test_trailing_slash_never_redirects_to_the_host_header(client: TestClient, path: str) -> None:
    response = client.get(path, headers={"host": "evil.example"}, follow_redirects=False)
    assert "evil.example" not in response.headers.get("location", "")
    assert response.status_code == 404
    assert response.json()["error_code"] == "not_found"


def test_demo_trailing_slash_never_redirects_to_the_host_header() -> None:
    app = create_demo_app(traffic_rate=0, tracing=False)
    with TestClient(app, raise_server_exceptions=False) as demo:
        response = demo.get("/chaos/", headers={"host": "evil.example"}, follow_redirects=False)
    assert "evil.example" not in response.headers.get("location", "")
    assert response.status_code == 404
