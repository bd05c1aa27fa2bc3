"""Refusals are not service errors (issue 17): a readiness probe answering 503 once a second, a
scrape or a stream refused for load, must not count in seawall_errors_total (they fired
ErrorRateHigh); a route that really fails still does."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

import seawall
from seawall.starlette import Check, create_app


def failing_check() -> bool:
    return False


async def broken(request: Request) -> Response:
    raise RuntimeError("a real failure")


async def unavailable(request: Request) -> Response:
    return Response("upstream down", status_code=503)  # the service's own 503: its error


def test_refusals_are_not_recorded_and_failures_are() -> None:
    registry = seawall.Registry()
    app = create_app(
        registry=registry,
        prometheus_registry=CollectorRegistry(),
        checks=[Check("db", failing_check)],
        routes=[Route("/broken", broken), Route("/unavailable", unavailable)],
        stream_max_clients=1,
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        for _ in range(20):
            assert client.get("/health/ready").status_code == 503
        for route in app.routes:
            if getattr(route, "name", None) == "seawall_stream":
                route.endpoint.close()  # refuses every new stream with 503 shutting_down
        assert client.get("/api/resilience/stream").status_code == 503
        assert registry.errors.stats()["total_errors"] == 0
        assert client.get("/broken").status_code == 500
        assert client.get("/unavailable").status_code == 503
    totals = registry.errors.totals()
    assert sum(totals.values()) == 2
    assert {source for source, _, _ in totals} == {"/broken", "/unavailable"}
