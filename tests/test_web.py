"""The resilience routes through Starlette's TestClient: health, status API, admin, errors, metrics."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

import seawall
from seawall import CircuitBreaker, Feature
from seawall.starlette import Check, create_app, resilience_routes
from seawall.starlette.middleware import route_template

TOKEN = "s3cret-admin-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
ERROR_KEYS = {"error", "error_code", "error_id", "message"}


class Boom(Exception):
    pass


@pytest.fixture(autouse=True)
def _no_admin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEAWALL_ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("SEAWALL_ADMIN_TOKEN_FILE", raising=False)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)


def make_client(registry: seawall.Registry, prom: CollectorRegistry, **options: Any) -> TestClient:
    app = create_app(registry=registry, prometheus_registry=prom, **options)
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def client(registry: seawall.Registry, prom: CollectorRegistry) -> Iterator[TestClient]:
    with make_client(registry, prom, admin_token=TOKEN) as test_client:
        yield test_client


def trip(breaker: CircuitBreaker) -> None:
    def fail() -> None:
        raise Boom("password=hunter2 at https://internal.example/db")

    for _ in range(breaker.config["failure_threshold"]):
        with pytest.raises(Boom):
            breaker.call(fail)


def assert_error(response: Any, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= ERROR_KEYS, body
    assert body["error_code"] == code
    assert len(body["error_id"]) == 32
    if field is not None:
        assert body["field"] == field
    assert "Traceback" not in response.text
    return dict(body)


# -- health -----------------------------------------------------------------------------------------


def test_liveness(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "alive"}


def test_ready_is_healthy_with_closed_breakers(client: TestClient, registry: seawall.Registry) -> None:
    CircuitBreaker("db", registry=registry)
    response = client.get("/health/ready")
    assert response.status_code == 200
    assert response.json()["status"] == "healthy"
    assert response.json()["breakers"]["total"] == 1


def test_open_breaker_degrades_but_keeps_200(
    client: TestClient, registry: seawall.Registry, fake_clock: Any
) -> None:
    breaker = CircuitBreaker("payments", failure_threshold=2, registry=registry, clock=fake_clock)
    trip(breaker)
    response = client.get("/health/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["breakers"]["open"] == ["payments"]
    fake_clock.advance(61)  # past reset_timeout: reads stay open (no call has probed yet), still degraded
    body = client.get("/health/ready").json()
    assert body["breakers"]["open"] == ["payments"]
    assert breaker.retry_after == 0.0


def test_open_critical_breaker_is_unhealthy_503(
    registry: seawall.Registry, prom: CollectorRegistry, fake_clock: Any
) -> None:
    breaker = CircuitBreaker("db", failure_threshold=1, registry=registry, clock=fake_clock)
    with make_client(registry, prom, critical_breakers=["db"]) as test_client:
        assert test_client.get("/health/ready").status_code == 200
        trip(breaker)
        response = test_client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["status"] == "unhealthy"
    assert "critical breaker db is open" in response.json()["reasons"]


def test_forced_open_critical_breaker_is_unhealthy(
    registry: seawall.Registry, prom: CollectorRegistry
) -> None:
    CircuitBreaker("db", registry=registry).force_open()
    with make_client(registry, prom, critical_breakers=["db"]) as test_client:
        assert test_client.get("/health/ready").status_code == 503


def test_disabled_feature_degrades(client: TestClient, registry: seawall.Registry) -> None:
    feature = Feature("recommendations", fallback=[], registry=registry)
    assert client.get("/health/ready").json()["status"] == "healthy"
    feature.disable()
    body = client.get("/health/ready").json()
    assert body["status"] == "degraded"
    assert body["features"]["on_fallback"] == ["recommendations"]


def test_component_checks_sync_async_failing_and_timeout(
    registry: seawall.Registry, prom: CollectorRegistry
) -> None:
    never = asyncio.Event()

    async def db() -> bool:
        return True

    def cache() -> None:
        return None

    def queue() -> bool:
        raise Boom("amqp://user:password@broker/ is down")

    async def slow() -> bool:
        await never.wait()  # released only by the check's timeout
        return True

    checks = [
        Check("db", db),
        Check("cache", cache),
        Check("queue", queue, critical=False),
        Check("search", slow, timeout=0.01, critical=False),
    ]
    with make_client(registry, prom, checks=checks) as test_client:
        response = test_client.get("/health/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["db"]["status"] == "pass"
    assert body["checks"]["cache"]["status"] == "pass"
    assert body["checks"]["queue"] == {
        "status": "fail",
        "critical": False,
        "response_time_ms": body["checks"]["queue"]["response_time_ms"],
        "error_type": "Boom",
    }
    assert body["checks"]["search"]["error_type"] == "timeout"
    assert all(isinstance(c["response_time_ms"], float) for c in body["checks"].values())
    assert "password" not in response.text


def test_failing_critical_check_is_503(registry: seawall.Registry, prom: CollectorRegistry) -> None:
    with make_client(registry, prom, checks={"db": lambda: False}) as test_client:
        response = test_client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["checks"]["db"]["error_type"] == "returned_false"


def test_check_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="timeout"):
        Check("db", lambda: True, timeout=0)
    with pytest.raises(TypeError, match="fn must be callable"):
        Check("db", "nope")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unique"):
        resilience_routes(
            registry=seawall.Registry(), checks=[Check("a", bool), Check("a", bool)], metrics=False
        )
    with pytest.raises(TypeError, match="critical_breakers"):
        resilience_routes(registry=seawall.Registry(), critical_breakers="db", metrics=False)


# -- status API ---------------------------------------------------------------------------------------


def test_breakers_list_and_one(client: TestClient, registry: seawall.Registry, fake_clock: Any) -> None:
    breaker = CircuitBreaker("payments", failure_threshold=2, registry=registry, clock=fake_clock)
    CircuitBreaker("inventory", registry=registry)
    trip(breaker)
    body = client.get("/api/resilience/breakers").json()
    states = {item["name"]: item["state"] for item in body["breakers"]}
    assert states == {"payments": "open", "inventory": "closed"}
    one = client.get("/api/resilience/breakers/payments").json()
    assert one["calls"]["failure"] == 2
    assert one["retry_after"] == pytest.approx(60.0)
    assert "hunter2" not in client.get("/api/resilience/breakers").text
    assert_error(client.get("/api/resilience/breakers/nope"), 404, "unknown_breaker", "name")


def test_features_list(client: TestClient, registry: seawall.Registry) -> None:
    feature = Feature("recommendations", fallback=[], registry=registry)
    assert feature.call(lambda: [1]) == [1]
    feature.disable()
    assert feature.call(lambda: [1]) == []
    (item,) = client.get("/api/resilience/features").json()["features"]
    assert item["name"] == "recommendations"
    assert item["enabled"] is False
    assert item["manually_disabled"] is True
    assert item["fallbacks"]["disabled"] == 1


def test_retries_list(client: TestClient, registry: seawall.Registry) -> None:
    from seawall import Retry

    assert client.get("/api/resilience/retries").json() == {"retries": []}
    retry = Retry("search", attempts=3, retry_on=Boom, sleep=lambda seconds: None, registry=registry)
    attempts = iter([Boom("x"), Boom("y"), None])

    def flaky() -> str:
        error = next(attempts)
        if error is not None:
            raise error
        return "ok"

    assert retry.call(flaky) == "ok"
    (item,) = client.get("/api/resilience/retries").json()["retries"]
    assert item["name"] == "search"
    assert item["attempts"] == 3
    assert item["retries"] == 2
    assert item["calls"]["success_with_retry"] == 1


def test_snapshot_has_everything(client: TestClient, registry: seawall.Registry) -> None:
    CircuitBreaker("a", registry=registry)
    body = client.get("/api/resilience/snapshot").json()
    assert set(body) >= {"time", "breakers", "retries", "features", "errors", "recent_errors"}
    assert body["breakers"][0]["name"] == "a"


# -- errors ---------------------------------------------------------------------------------------------


def test_error_stats_and_recent(client: TestClient, registry: seawall.Registry) -> None:
    for _ in range(3):
        registry.errors.record(Boom("token=abc123 leaked"), source="payments")
    registry.errors.record(ValueError("bad"), source="inventory")
    stats = client.get("/api/resilience/errors").json()
    assert stats["total_errors"] == 4
    assert stats["errors_by_type"]["Boom"] == 3
    assert stats["errors_by_source"]["payments"] == 3
    recent = client.get("/api/resilience/errors/recent?limit=2").json()
    assert recent["limit"] == 2
    assert len(recent["errors"]) == 2
    assert "abc123" not in client.get("/api/resilience/errors/recent").text


def test_recent_limit_is_clamped_and_validated(client: TestClient, registry: seawall.Registry) -> None:
    for index in range(120):
        registry.errors.record(Boom(str(index)), source="s")
    body = client.get("/api/resilience/errors/recent?limit=100000").json()
    assert body["limit"] == 100
    assert len(body["errors"]) <= 100
    assert client.get("/api/resilience/errors/recent?limit=-5").json()["limit"] == 1
    assert_error(client.get("/api/resilience/errors/recent?limit=abc"), 422, "invalid_parameter", "limit")
    assert_error(client.get("/api/resilience/errors/recent?limit=1.5"), 422, "invalid_parameter", "limit")


# -- admin ----------------------------------------------------------------------------------------------


def test_admin_off_without_token(registry: seawall.Registry, prom: CollectorRegistry) -> None:
    CircuitBreaker("payments", registry=registry)
    with make_client(registry, prom) as test_client:
        response = test_client.post("/api/resilience/breakers/payments/open", headers=AUTH)
    body = assert_error(response, 403, "admin_disabled")
    assert "SEAWALL_ADMIN_TOKEN" in body["message"]
    assert registry.get("breaker", "payments").state.value == "closed"
    assert (
        prom.get_sample_value("seawall_admin_actions_total", {"action": "breaker_open", "result": "disabled"})
        == 1
    )


def test_admin_auth(client: TestClient, registry: seawall.Registry, prom: CollectorRegistry) -> None:
    CircuitBreaker("payments", registry=registry)
    missing = client.post("/api/resilience/breakers/payments/open")
    assert_error(missing, 401, "unauthorized")
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert_error(
        client.post("/api/resilience/breakers/payments/open", headers={"authorization": "Basic abc"}),
        401,
        "unauthorized",
    )
    wrong = client.post(
        "/api/resilience/breakers/payments/open", headers={"authorization": "Bearer nope-nope"}
    )
    assert_error(wrong, 403, "forbidden")
    assert TOKEN not in wrong.text
    assert registry.get("breaker", "payments").state.value == "closed"
    sample = prom.get_sample_value
    assert sample("seawall_admin_actions_total", {"action": "breaker_open", "result": "unauthorized"}) == 2
    assert sample("seawall_admin_actions_total", {"action": "breaker_open", "result": "forbidden"}) == 1


def test_admin_breaker_actions(
    client: TestClient, registry: seawall.Registry, prom: CollectorRegistry
) -> None:
    breaker = CircuitBreaker("payments", registry=registry)
    response = client.post("/api/resilience/breakers/payments/open", headers=AUTH)
    assert response.status_code == 200
    assert response.json()["breaker"]["state"] == "forced_open"
    assert breaker.state.value == "forced_open"
    client.post("/api/resilience/breakers/payments/disable", headers=AUTH)
    assert breaker.state.value == "disabled"
    client.post("/api/resilience/breakers/payments/reset", headers=AUTH)
    assert breaker.state.value == "closed"
    assert_error(
        client.post("/api/resilience/breakers/nope/reset", headers=AUTH), 404, "unknown_breaker", "name"
    )
    assert_error(
        client.post("/api/resilience/breakers/payments/explode", headers=AUTH),
        404,
        "unknown_action",
        "action",
    )
    assert_error(client.get("/api/resilience/breakers/payments/reset"), 405, "method_not_allowed")
    sample = prom.get_sample_value
    assert sample("seawall_admin_actions_total", {"action": "breaker_open", "result": "ok"}) == 1
    assert sample("seawall_admin_actions_total", {"action": "breaker_reset", "result": "not_found"}) == 1


def test_admin_feature_actions(client: TestClient, registry: seawall.Registry) -> None:
    feature = Feature("recommendations", fallback=[], registry=registry)
    response = client.post("/api/resilience/features/recommendations/disable", headers=AUTH)
    assert response.status_code == 200
    assert response.json()["feature"]["enabled"] is False
    assert feature.enabled is False
    client.post("/api/resilience/features/recommendations/enable", headers=AUTH)
    assert feature.enabled is True
    assert_error(client.post("/api/resilience/features/nope/enable", headers=AUTH), 404, "unknown_feature")


def test_admin_token_from_env_and_file(
    registry: seawall.Registry, prom: CollectorRegistry, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    breaker = CircuitBreaker("payments", registry=registry)
    monkeypatch.setenv("SEAWALL_ADMIN_TOKEN", "from-the-environment")
    with make_client(registry, prom) as test_client:
        headers = {"authorization": "Bearer from-the-environment"}
        assert test_client.post("/api/resilience/breakers/payments/open", headers=headers).status_code == 200
    monkeypatch.delenv("SEAWALL_ADMIN_TOKEN")
    secret = tmp_path / "token"
    secret.write_text("from-a-mounted-file\n")
    monkeypatch.setenv("SEAWALL_ADMIN_TOKEN_FILE", str(secret))
    with make_client(registry, CollectorRegistry()) as test_client:
        headers = {"authorization": "Bearer from-a-mounted-file"}
        assert test_client.post("/api/resilience/breakers/payments/reset", headers=headers).status_code == 200
    assert breaker.state.value == "closed"
    monkeypatch.setenv("SEAWALL_ADMIN_TOKEN_FILE", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="SEAWALL_ADMIN_TOKEN_FILE"):
        resilience_routes(registry=registry, metrics=False)


def test_short_token_is_refused_without_echoing_it(registry: seawall.Registry) -> None:
    with pytest.raises(ValueError, match="at least 8") as info:
        resilience_routes(registry=registry, admin_token="abc", metrics=False)
    assert "abc" not in str(info.value)


# -- standard errors and the middleware ------------------------------------------------------------


async def crash(request: Request) -> Response:
    raise Boom("connection to postgres://admin:pw@10.0.0.5 failed")


async def unavailable(request: Request) -> Response:
    return JSONResponse({"detail": "down"}, status_code=503)


async def fine(request: Request) -> Response:
    return JSONResponse({"id": request.path_params["id"]})


@pytest.fixture
def app_client(registry: seawall.Registry, prom: CollectorRegistry) -> Iterator[TestClient]:
    routes = [
        Route("/orders/{id}", crash),
        Route("/down/{id}", unavailable),
        Route("/fine/{id}", fine),
    ]
    app = create_app(registry=registry, prometheus_registry=prom, routes=routes)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def test_unhandled_exception_is_json_500_and_recorded_by_template(
    app_client: TestClient, registry: seawall.Registry
) -> None:
    response = app_client.get("/orders/12345")
    body = assert_error(response, 500, "internal_error")
    assert "postgres" not in response.text
    assert "Boom" not in response.text
    assert body["error"] == "Internal Server Error"
    stats = registry.errors.stats()
    assert stats["errors_by_source"] == {"/orders/{id}": 1}
    assert stats["errors_by_type"] == {"Boom": 1}


def test_5xx_response_is_recorded(app_client: TestClient, registry: seawall.Registry) -> None:
    assert app_client.get("/down/7").status_code == 503
    assert app_client.get("/fine/7").status_code == 200
    stats = registry.errors.stats()
    assert stats["errors_by_source"] == {"/down/{id}": 1}
    assert stats["errors_by_type"] == {"HTTPServerError": 1}


def test_404_and_405_use_the_standard_body(app_client: TestClient, registry: seawall.Registry) -> None:
    assert_error(app_client.get("/no/such/path"), 404, "not_found")
    assert_error(app_client.delete("/health"), 405, "method_not_allowed")
    assert registry.errors.stats()["total_errors"] == 0  # client errors are not server errors


def test_route_template_without_a_route() -> None:
    assert route_template({"type": "http", "path": "/x/1"}) == "unmatched"
    assert route_template({"type": "http"}, unmatched="_other") == "_other"


def test_error_ids_differ(app_client: TestClient) -> None:
    ids = {app_client.get("/nope").json()["error_id"] for _ in range(3)}
    assert len(ids) == 3


# -- /metrics -------------------------------------------------------------------------------------------


def test_metrics_text_and_openmetrics(client: TestClient, registry: seawall.Registry) -> None:
    breaker = CircuitBreaker("payments", registry=registry)
    breaker.call(lambda: None)
    text = client.get("/metrics")
    assert text.status_code == 200
    assert text.headers["content-type"].startswith("text/plain")
    assert 'seawall_circuit_breaker_state{breaker="payments",state="closed"} 1.0' in text.text
    om = client.get("/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"})
    assert om.headers["content-type"].startswith("application/openmetrics-text")
    assert om.text.rstrip().endswith("# EOF")


def test_metrics_odd_accept_is_the_text_format_not_a_500(
    app_client: TestClient, registry: seawall.Registry
) -> None:
    """Issue 9: `version=abc` was a 500 and each one counted as the service's error."""
    for accept in ("application/openmetrics-text; version=abc", "application/openmetrics-text;q=x", ";;=,"):
        response = app_client.get("/metrics", headers={"accept": accept})
        assert response.status_code == 200, accept
        assert response.headers["content-type"].startswith("text/plain")
    assert registry.errors.stats()["total_errors"] == 0


def test_metrics_gzip_for_prometheus(client: TestClient) -> None:
    response = client.get(
        "/metrics",
        headers={"accept": "application/openmetrics-text; version=1.0.0", "accept-encoding": "gzip"},
    )
    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    assert response.text.rstrip().endswith("# EOF")  # httpx decoded it


def test_routes_can_be_mounted_without_metrics(registry: seawall.Registry) -> None:
    from starlette.applications import Starlette

    app = Starlette(routes=resilience_routes(registry=registry, metrics=False, status_page=False))
    with TestClient(app) as test_client:
        assert test_client.get("/metrics").status_code == 404
        assert test_client.get("/health").status_code == 200


# -- status page assets ----------------------------------------------------------------------------------


def test_status_page_and_assets(client: TestClient) -> None:
    page = client.get("/resilience")
    assert page.status_code == 200
    assert "default-src 'none'" in page.headers["content-security-policy"]
    total = len(page.content)
    for name in ("status.js", "status.css"):
        asset = client.get(f"/resilience/static/{name}")
        assert asset.status_code == 200
        total += len(asset.content)
        # Nothing is loaded from elsewhere (the SVG namespace is an identifier, not a download).
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", asset.text + page.text)
    assert total < 200 * 1024
    assert_error(client.get("/resilience/static/../../etc/passwd"), 404, "not_found")
    assert_error(client.get("/resilience/static/secret.py"), 404, "not_found", "file")
    assert client.get("/resilience/", follow_redirects=False).status_code == 308


def test_stream_route_answers_event_stream(registry: seawall.Registry) -> None:
    """The full ASGI behaviour is in test_web_stream.py; here: the route is wired and well-formed."""
    CircuitBreaker("payments", registry=registry)
    routes = resilience_routes(registry=registry, metrics=False, stream_max_seconds=0.01)
    from starlette.applications import Starlette

    with (
        TestClient(Starlette(routes=routes)) as test_client,
        test_client.stream("GET", "/api/resilience/stream") as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        text = "".join(response.iter_text())
    events = dict(block.split("\ndata: ", 1) for block in text.split("\n\n") if block.startswith("event: "))
    hello = json.loads(events["event: hello"])
    assert len(hello.pop("stream")) == 32
    assert hello == {"interval": 1.0, "heartbeat": 1.0, "ack_every": 5.0}
    snapshot = json.loads(events["event: snapshot"])
    assert snapshot["breakers"][0]["name"] == "payments"
    assert "event: bye" in text


# -- status body cache (more in test_web_cache.py) ------------------------------------------------------


def test_breaker_listing_shows_a_state_change_at_once(client: TestClient, registry: seawall.Registry) -> None:
    breaker = CircuitBreaker("payments", registry=registry)
    assert client.get("/api/resilience/breakers").json()["breakers"][0]["state"] == "closed"
    breaker.force_open()
    assert client.get("/api/resilience/breakers").json()["breakers"][0]["state"] == "forced_open"
    response = client.post("/api/resilience/breakers/payments/reset", headers=AUTH)
    assert response.status_code == 200
    assert client.get("/api/resilience/breakers").json()["breakers"][0]["state"] == "closed"


def test_metrics_in_multiprocess_mode_reads_the_directory(
    client: TestClient, registry: seawall.Registry, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    CircuitBreaker("payments", registry=registry)
    assert "seawall_circuit_breaker_state" in client.get("/metrics").text  # in-process registry
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    response = client.get("/metrics")
    assert response.status_code == 200
    # The worker files in the (empty) directory are the source now, not this process's registry.
    assert "seawall_circuit_breaker_state" not in response.text


def test_no_endpoint_leaks_secrets_or_stacks(app_client: TestClient, registry: seawall.Registry) -> None:
    secret = "pa55w0rd-9f8e7d"
    breaker = CircuitBreaker("payments", failure_threshold=1, registry=registry, errors=registry.errors)
    with pytest.raises(Boom):
        breaker.call(lambda: (_ for _ in ()).throw(Boom(f"login failed for admin:{secret}@db")))
    registry.errors.record(RuntimeError(f"token={secret}"), source="jobs")
    assert app_client.get("/orders/1").status_code == 500
    for path in (
        "/api/resilience/breakers",
        "/api/resilience/breakers/payments",
        "/api/resilience/errors",
        "/api/resilience/errors/recent?limit=100",
        "/api/resilience/snapshot",
        "/api/resilience/features",
        "/api/resilience/retries",
        "/health/ready",
        "/metrics",
        "/orders/2",
    ):
        text = app_client.get(path).text
        assert secret not in text, path
        assert "Traceback" not in text, path
        assert "postgres://" not in text, path


def test_a_hung_sync_check_does_not_pile_up_threads(
    registry: seawall.Registry, prom: CollectorRegistry
) -> None:
    import threading

    release = threading.Event()
    started: list[int] = []

    def hung() -> bool:
        started.append(1)
        release.wait(timeout=10)  # bounded, released below
        return True

    try:
        with make_client(registry, prom, checks=[Check("ldap", hung, timeout=0.01)]) as test_client:
            first = test_client.get("/health/ready").json()["checks"]["ldap"]
            second = test_client.get("/health/ready").json()["checks"]["ldap"]
    finally:
        release.set()
    assert first["error_type"] == "timeout"
    assert second["error_type"] == "still_running"
    assert started == [1]
