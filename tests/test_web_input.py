"""Hostile or odd input to the resilience routes: always a clear 4xx naming the field, never a 500."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

import seawall
from seawall.demo import create_demo_app
from seawall.starlette import create_app
from test_uvicorn import Server, running_demo


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


# -- the demo's chaos API ------------------------------------------------------------------------------

JSON = {"content-type": "application/json"}


@pytest.fixture
def demo() -> Iterator[TestClient]:
    app = create_demo_app(traffic_rate=0, tracing=False)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def test_deeply_nested_json_is_a_422_not_a_500(demo: TestClient) -> None:
    for raw in (b"[" * 2000 + b"]" * 2000, b'{"outage":' + b"[" * 1900 + b"]" * 1900 + b"}"):
        assert len(raw) < 4096
        response = demo.post("/chaos/payments", content=raw, headers=JSON)
        assert response.status_code == 422, response.text
        assert response.json()["field"] == "body"
    assert demo.app.state.registry.errors.stats()["total_errors"] == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_chaos_refuses_what_a_cross_site_simple_request_can_send(
    demo: TestClient, content_type: str | None
) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    response = demo.post("/chaos/payments", content=b'{"outage": true}', headers=headers)
    assert response.status_code == 415
    assert response.json()["field"] == "content-type"
    assert demo.get("/chaos").json()["payments"]["outage"] is False


def test_chaos_takes_json_with_parameters(demo: TestClient) -> None:
    headers = {"content-type": "Application/JSON; charset=utf-8"}
    response = demo.post("/chaos/payments", content=b'{"outage": true}', headers=headers)
    assert response.status_code == 200
    assert demo.get("/chaos").json()["payments"]["outage"] is True


def _disconnecting_request(app: Any, path: str) -> list[dict[str, Any]]:
    """Drive `app` with a POST whose client sends half a body, then disconnects."""
    incoming = [
        {"type": "http.request", "body": b'{"outa', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [(b"content-type", b"application/json"), (b"host", b"127.0.0.1:8000")]
    scope = {"type": "http", "method": "POST", "path": path, "query_string": b"", "headers": headers}
    anyio.run(app, scope, receive, send)
    return sent


def test_a_client_leaving_mid_body_is_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    app = create_demo_app(traffic_rate=0, tracing=False)
    with caplog.at_level(logging.DEBUG):
        sent = _disconnecting_request(app, "/chaos/payments")
    statuses = [message["status"] for message in sent if message["type"] == "http.response.start"]
    assert statuses == [400]
    assert app.state.registry.errors.stats()["total_errors"] == 0
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert not [record for record in caplog.records if record.exc_info or "Traceback" in record.getMessage()]


def test_middleware_does_not_count_a_disconnect_in_a_users_route(
    registry: seawall.Registry, prom: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    async def upload(request: Request) -> Response:  # a route without seawall's `guarded`
        return JSONResponse({"size": len(await request.body())})

    app = create_app(
        registry=registry, prometheus_registry=prom, routes=[Route("/upload", upload, methods=["POST"])]
    )
    with caplog.at_level(logging.DEBUG):
        sent = _disconnecting_request(app, "/upload")
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [400]
    assert registry.errors.stats()["total_errors"] == 0
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]


@pytest.fixture
def quiet_demo() -> Iterator[Server]:
    """A real demo process (no traffic, INFO logs); stopped after the test."""
    with running_demo("--traffic-rate", "0", "--log-level", "info") as server:
        yield server


@pytest.mark.slow
def test_a_real_client_leaving_mid_body_under_uvicorn(quiet_demo: Server) -> None:
    host, port = quiet_demo.base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            b"POST /chaos/payments HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n" + b'{"outage": '
        )
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any(
        "client disconnected" in line for line in quiet_demo.output
    ):
        time.sleep(0.05)
    with httpx.Client(base_url=quiet_demo.base, timeout=5) as client:
        errors = client.get("/api/resilience/errors").json()
        assert client.get("/chaos").json()["payments"]["outage"] is False
    output = "".join(quiet_demo.output)
    assert "client disconnected before /chaos/{dependency}" in output
    assert "Traceback" not in output
    assert "unhandled" not in output
    assert errors["total_errors"] == 0
    (hint,) = [line for line in quiet_demo.output if "break it:" in line]
    assert "-H 'content-type: application/json'" in hint  # the printed command is not refused with 415
