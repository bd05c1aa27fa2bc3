"""Random requests at the router and the demo, in-process: never a 5xx, never a planted secret.

Secrets are planted first where a careless layer would repeat them: an error's message and
context, a breaker's failure, the admin token. Every response body and every log line (formatted,
tracebacks included) is then searched for them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

import seawall
from seawall.breakers.breaker import CircuitBreaker
from seawall.degrade.features import Features
from seawall.demo import create_demo_app
from seawall.demo import worker as worker_module
from seawall.demo.dependencies import CHAOS_FIELDS
from seawall.starlette import create_app

TOKEN = "fuzz-admin-token-5ecret"
SECRETS = ("pw-Zk41q", "sk_live_Qm82x", "tok-Hv93c", "hunter-Rt55y", TOKEN)

METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")
PATHS = (
    "/",
    "/metrics",
    "/health",
    "/health/ready",
    "/api/resilience/breakers",
    "/api/resilience/breakers/payments",
    "/api/resilience/breakers/payments/reset",
    "/api/resilience/breakers/payments/open",
    "/api/resilience/breakers/{x}/{x}",
    "/api/resilience/errors",
    "/api/resilience/errors/recent",
    "/api/resilience/features",
    "/api/resilience/features/payments/disable",
    "/api/resilience/features/{x}/enable",
    "/api/resilience/retries",
    "/api/resilience/snapshot",
    # Not /api/resilience/stream: an endless SSE response; its findings belong to the stream's owner.
    "/resilience",
    "/resilience/",
    "/resilience/static/{x}",
    "/chaos",
    "/chaos/payments",
    "/chaos/{x}",
    "/checkout",
    "/inventory/{x}",
    "/recommendations",
    "/{x}",
    "/{x}/",
)

# Printable header text (httpx refuses control characters in headers before they reach the app).
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)
# Percent-encoded, so control characters and "/" reach the app decoded, as a real client sends them.
segment = st.text(max_size=30).map(lambda text: quote(text, safe=""))
header_names = st.sampled_from(
    ["accept", "content-type", "authorization", "x-forwarded-for", "cookie", "range", "origin", "host"]
) | st.from_regex(r"\Ax-[a-z]{1,12}\Z")
content_types = st.sampled_from(
    ["application/json", "application/json; charset=utf-8", "text/plain", "multipart/form-data", "", "*/*"]
)
authorizations = st.sampled_from(
    ["", f"Bearer {TOKEN}", "Bearer wrong-token", "Basic Zm9vOmJhcg==", "Bearer"]
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)
# Every chaos field (dependencies' and the worker's) and some odd keys, each with values that broke
# the demo (issue 17): a lone surrogate, a 4,000-digit number, an overflowing float, control text.
CHAOS_KEYS = (*CHAOS_FIELDS, *worker_module._SWITCHES, "\\ud800", "x\\u0000y", "\\udfff\\ud800")
HOSTILE_VALUES = (
    '"\\ud800"',
    "9" * 4000,
    "-" + "9" * 4000,
    "1e400",
    "-1e400",
    "1" + "0" * 300 + ".5",
    '"\\u0000\\u001b[2J"',
    '["\\ud800"]',
    '{"\\ud800": 1}',
    "true",
    "0.5",
)
hostile_json = st.dictionaries(
    st.sampled_from(CHAOS_KEYS), st.sampled_from(HOSTILE_VALUES), min_size=1, max_size=3
).map(lambda items: ("{" + ",".join(f'"{key}":{value}' for key, value in items.items()) + "}").encode())
bodies = (
    hostile_json
    | st.binary(max_size=5000)
    | json_values.map(lambda value: repr(value).encode())
    | st.sampled_from([b"[" * 3000 + b"]" * 3000, b'{"outage": true}', b'{"failure_rate": 2}', b"\xff\xfe"])
)


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    path = draw(st.sampled_from(PATHS)).replace("{x}", draw(segment))
    query = draw(
        st.sampled_from(["", "limit=", "limit=5", "limit=-1", "limit=١٢"]) | segment.map("limit=".__add__)
    )
    headers = dict(draw(st.lists(st.tuples(header_names, header_text), max_size=4)))
    headers["content-type"] = draw(content_types)
    headers["authorization"] = draw(authorizations)
    if path == "/metrics" and draw(st.booleans()):  # /metrics negotiates: odd OpenMetrics ranges too
        headers["accept"] = draw(
            st.sampled_from(["application/openmetrics-text; version=", "application/openmetrics-text;q="])
        ) + draw(header_text)
    headers = {name: value for name, value in headers.items() if value}
    return {
        "method": draw(st.sampled_from(METHODS)),
        "url": path + ("?" + query if query else ""),
        "headers": headers,
        "content": draw(bodies) if draw(st.booleans()) else None,
    }


class LogLines(logging.Handler):
    """Every record, formatted as a handler would write it (exc_info and stack included)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def log_lines() -> Iterator[LogLines]:
    handler = LogLines()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def plant_secrets(registry: seawall.Registry) -> None:
    """Secrets where a careless layer would echo them: error messages, contexts, breaker failures."""
    errors = registry.errors
    errors.record(
        RuntimeError(f"login failed password={SECRETS[0]}"), source="jobs", context={"api_key": SECRETS[1]}
    )
    errors.record(KeyError(f"token={SECRETS[2]}"), context={"url": f"redis://:{SECRETS[3]}@cache", "n": 1})
    existing = registry.get("breaker", "payments")
    breaker = existing or CircuitBreaker("payments", failure_threshold=2, errors=errors, registry=registry)

    def fail() -> None:
        raise ConnectionError(f"postgres://app:{SECRETS[3]}@db refused")

    for _ in range(2):
        with pytest.raises(ConnectionError):
            breaker.call(fail)
    errors.record(ConnectionError(f"postgres://app:{SECRETS[3]}@db refused"), source="payments")


def check(client: TestClient, request: dict[str, Any], log_lines: LogLines) -> None:
    response = client.request(**request)
    assert response.status_code < 500 or (
        response.status_code == 503 and request["url"].startswith("/health")
    ), (
        request,
        response.status_code,
        response.text[:300],
    )
    leaked = [secret for secret in SECRETS if secret in response.text or secret in str(response.headers)]
    assert not leaked, (request, leaked)
    logged = [line for line in log_lines.lines if any(secret in line for secret in SECRETS)]
    assert not logged, logged[:3]


FUZZ = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def fuzz(app: Any, log_lines: LogLines) -> None:
    with TestClient(app, raise_server_exceptions=False) as client:

        @FUZZ
        @given(request=requests())
        def run(request: dict[str, Any]) -> None:
            check(client, request, log_lines)

        run()


@pytest.mark.timeout(90)  # 250 examples take ~7 s on a loaded 2-core machine
def test_router_answers_every_request_without_5xx_or_secrets(log_lines: LogLines) -> None:
    registry = seawall.Registry()
    Features(registry=registry).register("payments", fallback=None)
    plant_secrets(registry)
    prometheus_registry = CollectorRegistry()
    fuzz(
        create_app(
            registry=registry,
            prometheus_registry=prometheus_registry,
            admin_token=TOKEN,
            include_error_messages=True,
        ),
        log_lines,
    )


@pytest.mark.timeout(90)
def test_demo_answers_every_request_without_5xx_or_secrets(
    log_lines: LogLines, monkeypatch: pytest.MonkeyPatch, fake_clock: Any
) -> None:
    monkeypatch.setenv("SEAWALL_ADMIN_TOKEN", TOKEN)
    monkeypatch.delenv("SEAWALL_ADMIN_TOKEN_FILE", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    app = create_demo_app(traffic_rate=0, clock=fake_clock, sleep=fake_clock.sleep, seed=3, tracing=False)
    plant_secrets(app.state.registry)
    fuzz(app, log_lines)


def test_every_chaos_field_with_every_hostile_value_is_a_4xx_or_2xx(
    log_lines: LogLines, monkeypatch: pytest.MonkeyPatch, fake_clock: Any
) -> None:
    """Deterministic, every pair: the random fuzz above reaches a chaos route with JSON rarely."""
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    app = create_demo_app(traffic_rate=0, clock=fake_clock, sleep=fake_clock.sleep, seed=3, tracing=False)
    # The last is a surrogate's UTF-8 bytes, percent-encoded: what a client can send of one.
    paths = ["/chaos/worker", "/chaos/payments", "/chaos/inventory", "/chaos/%ED%A0%80"]
    with TestClient(app, raise_server_exceptions=False) as client:
        for path in paths:
            for key in CHAOS_KEYS:
                for value in HOSTILE_VALUES:
                    content = f'{{"{key}":{value}}}'.encode()
                    response = client.post(
                        path, content=content, headers={"content-type": "application/json"}
                    )
                    assert response.status_code < 500, (path, content[:80], response.text[:200])
                    response.json()  # a valid JSON body, whatever text it names


def test_lone_surrogates_in_sources_and_context_never_break_a_route() -> None:
    registry = seawall.Registry()
    registry.errors.record(
        RuntimeError("bad \ud800 text"), source="https://x/\udfff", context={"\ud800": "\udc00", "k": b"\xff"}
    )
    prometheus_registry = CollectorRegistry()
    app = create_app(registry=registry, prometheus_registry=prometheus_registry, admin_token=TOKEN)
    with TestClient(app, raise_server_exceptions=False) as client:
        for path in (
            "/metrics",
            "/api/resilience/errors",
            "/api/resilience/errors/recent",
            "/api/resilience/snapshot",
        ):
            for headers in ({}, {"authorization": f"Bearer {TOKEN}"}):
                response = client.get(path, headers=headers)
                assert response.status_code == 200, (path, response.text[:200])
        recent = client.get("/api/resilience/errors/recent", headers={"authorization": f"Bearer {TOKEN}"})
        (item,) = recent.json()["errors"]
    assert item["source"] == "https://x/\ufffd"
    assert item["context"] == {"\ufffd": "\ufffd", "k": "\ufffd"}


def test_a_primitive_name_with_a_lone_surrogate_is_refused_by_name() -> None:
    registry = seawall.Registry()
    with pytest.raises(
        ValueError, match=r"breaker name must be text without lone surrogates, got 'pay\\ud800'"
    ):
        CircuitBreaker("pay\ud800", registry=registry)
    assert registry.breakers() == []
