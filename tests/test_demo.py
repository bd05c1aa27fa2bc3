"""The demo service driven fast: fake clock and sleep, no traffic generator unless asked for."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from seawall import Registry
from seawall.demo import BREAKERS, DEPENDENCIES, Demo, SimulatedDependency, create_demo_app
from seawall.demo.dependencies import Chaos, ChaosError, parse_chaos

JSON = {"content-type": "application/json"}


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SEAWALL_ADMIN_TOKEN", "SEAWALL_ADMIN_TOKEN_FILE", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def client(fake_clock: Any) -> Iterator[TestClient]:
    app = create_demo_app(traffic_rate=0, clock=fake_clock, sleep=fake_clock.sleep, seed=7)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def states(client: TestClient) -> dict[str, str]:
    return {item["name"]: item["state"] for item in client.get("/api/resilience/breakers").json()["breakers"]}


def test_dependencies_answer_from_primary(client: TestClient) -> None:
    assert states(client) == dict.fromkeys(BREAKERS.values(), "closed")
    for path in ("/checkout", "/inventory/sku-1", "/recommendations"):
        body = client.get(path).json()
        assert body["source"] == "primary", body
    assert client.get("/").json()["status_page"] == "/resilience"


def test_outage_opens_the_breaker_and_healing_closes_it(client: TestClient, fake_clock: Any) -> None:
    response = client.post("/chaos/payments", json={"outage": True})
    assert response.json() == {"payments": {**Chaos().to_dict(), "outage": True}}
    answers = [client.get("/checkout").json() for _ in range(6)]
    assert all(answer["source"] == "fallback" for answer in answers)
    assert answers[-1]["result"]["status"] == "queued"
    assert states(client)[BREAKERS["payments"]] == "open"
    assert states(client)[BREAKERS["inventory"]] == "closed"
    metrics = client.get("/metrics").text
    assert f'seawall_circuit_breaker_state{{breaker="{BREAKERS["payments"]}",state="open"}} 1.0' in metrics
    assert client.get("/health/ready").json()["status"] == "degraded"

    client.post("/chaos/payments", json={"outage": False})
    fake_clock.advance(10)  # past both reset timeouts: the next call is a probe
    assert client.get("/checkout").json()["source"] == "primary"
    assert states(client)[BREAKERS["payments"]] == "closed"
    metrics = client.get("/metrics").text
    assert f'seawall_circuit_breaker_state{{breaker="{BREAKERS["payments"]}",state="closed"}} 1.0' in metrics
    assert client.get("/health/ready").json()["status"] == "healthy"


def test_failures_are_recorded_in_the_aggregator(client: TestClient) -> None:
    client.post("/chaos/inventory", json={"failure_rate": 1})
    client.get("/inventory/a")
    stats = client.get("/api/resilience/errors").json()
    assert stats["errors_by_source"].get(BREAKERS["inventory"], 0) >= 1  # the breaker records them
    assert stats["errors_by_type"].get("UpstreamStatusError", 0) >= 1  # the upstream's 503s


def test_latency_over_the_timeout_is_a_timeout(client: TestClient, fake_clock: Any) -> None:
    client.post("/chaos/recommendations", json={"latency_ms": 5000})
    before = fake_clock.now
    body = client.get("/recommendations").json()
    assert body["source"] == "fallback"
    assert fake_clock.now > before  # the fake sleep was used, not a real one


def test_get_chaos_and_partial_updates(client: TestClient) -> None:
    client.post("/chaos/payments", json={"failure_rate": 0.25})
    client.post("/chaos/payments", json={"latency_ms": 100})
    assert client.get("/chaos").json()["payments"] == {
        **Chaos().to_dict(),
        "failure_rate": 0.25,
        "latency_ms": 100.0,
    }
    assert set(client.get("/chaos").json()) == set(DEPENDENCIES)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"failure_rate": 1.5}, "failure_rate"),
        ({"failure_rate": -0.1}, "failure_rate"),
        ({"failure_rate": "half"}, "failure_rate"),
        ({"failure_rate": True}, "failure_rate"),
        ({"latency_ms": -1}, "latency_ms"),
        ({"latency_ms": 10**9}, "latency_ms"),
        ({"outage": "yes"}, "outage"),
        ({"outage": 1}, "outage"),
        ({"colour": "red"}, "colour"),
        ({"fault": "explode"}, "fault"),
        ({"status": 200}, "status"),
        ({"status": 503.5}, "status"),
        ({"retry_after": -1}, "retry_after"),
        ({"retry_after": "soon"}, "retry_after"),
        ([1, 2], "body"),
    ],
)
def test_bad_chaos_values_are_422_naming_the_field(client: TestClient, body: Any, field: str) -> None:
    response = client.post("/chaos/payments", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert response.json()["error_code"] == "invalid_parameter"
    assert client.get("/chaos").json()["payments"]["failure_rate"] == 0.0  # nothing half-applied


def test_bad_json_and_unknown_dependency(client: TestClient) -> None:
    response = client.post(
        "/chaos/payments", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["field"] == "body"
    unknown = client.post("/chaos/mainframe", json={"outage": True})
    assert unknown.status_code == 404
    assert unknown.json()["field"] == "dependency"
    assert client.post("/chaos/payments", content=b"x" * 5000, headers=JSON).status_code == 413
    for raw, field in (
        (b'{"latency_ms": Infinity}', "latency_ms"),
        (b'{"failure_rate": NaN}', "failure_rate"),
    ):
        response = client.post("/chaos/payments", content=raw, headers=JSON)  # Python's json takes these
        assert response.status_code == 422
        assert response.json()["field"] == field


def test_admin_token_only_from_env(monkeypatch: pytest.MonkeyPatch, fake_clock: Any) -> None:
    app = create_demo_app(traffic_rate=0, clock=fake_clock, sleep=fake_clock.sleep)
    with TestClient(app) as test_client:
        assert test_client.post(f"/api/resilience/breakers/{BREAKERS['payments']}/open").status_code == 403
    monkeypatch.setenv("SEAWALL_ADMIN_TOKEN", "demo-admin-token")
    app = create_demo_app(traffic_rate=0, clock=fake_clock, sleep=fake_clock.sleep)
    with TestClient(app) as test_client:
        headers = {"authorization": "Bearer demo-admin-token"}
        forced = f"/api/resilience/breakers/{BREAKERS['payments']}/open"
        assert test_client.post(forced, headers=headers).status_code == 200
        assert states(test_client)[BREAKERS["payments"]] == "forced_open"


def test_parse_chaos_keeps_unspecified_fields() -> None:
    current = Chaos(failure_rate=0.5, latency_ms=10, outage=True)
    assert parse_chaos({"outage": False}, current) == Chaos(0.5, 10, False)
    with pytest.raises(ChaosError) as info:
        parse_chaos({"latency_ms": float("nan")}, current)
    assert info.value.field == "latency_ms"


def test_simulated_dependency_is_deterministic() -> None:
    import random

    def run() -> list[int]:
        dependency = SimulatedDependency("x", rng=random.Random(3))
        dependency.update({"failure_rate": 0.5})
        outcomes = [dependency.decide().status for _ in range(20)]
        dependency.update({"failure_rate": 0, "latency_ms": 60_000})
        assert dependency.decide().status == 504  # past its 2 s give-up: a gateway timeout
        return outcomes

    first, second = run(), run()
    assert first == second
    assert set(first) == {200, 503}


def test_traffic_generator_calls_every_dependency_and_stops(fake_clock: Any) -> None:
    import seawall

    ticks = 0
    enough = asyncio.Event()

    async def pace(seconds: float) -> None:
        nonlocal ticks
        ticks += 1
        if ticks >= 3:
            enough.set()
            await asyncio.Event().wait()  # park until stop() cancels the generator
        await asyncio.sleep(0)

    async def scenario() -> Demo:
        demo = Demo(
            registry=seawall.Registry(),
            clock=fake_clock,
            sleep=fake_clock.sleep,
            traffic_rate=50,
            traffic_sleep=pace,
        )
        await demo.start()
        await asyncio.wait_for(enough.wait(), timeout=5)
        for _ in range(10):
            await asyncio.sleep(0)
        await demo.stop()
        return demo

    demo = asyncio.run(asyncio.wait_for(scenario(), timeout=10))
    assert all(item.dependency.calls >= 1 for item in demo.guarded.values())
    assert demo._task is None


def test_traffic_rate_is_validated() -> None:
    import seawall

    with pytest.raises(ValueError, match="traffic_rate"):
        Demo(registry=seawall.Registry(), traffic_rate=-1)


@pytest.fixture
def receiver() -> Iterator[Any]:
    from otlp_receiver import OTLPReceiver

    server = OTLPReceiver("ok").start()
    try:
        yield server
    finally:
        server.stop()


def test_retry_panel_data_and_otlp_traces(
    monkeypatch: pytest.MonkeyPatch, fake_clock: Any, receiver: Any
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "seawall-demo-test")
    app = create_demo_app(traffic_rate=0, clock=fake_clock, sleep=fake_clock.sleep, seed=1)
    with TestClient(app) as test_client:
        test_client.post("/chaos/inventory", json={"failure_rate": 1})
        assert test_client.get("/inventory/a").json()["source"] == "fallback"
        retries = {
            item["name"]: item for item in test_client.get("/api/resilience/retries").json()["retries"]
        }
        assert set(retries) == set(DEPENDENCIES)
        assert retries["inventory"]["retries"] == 1  # two attempts, one re-attempt
        assert retries["inventory"]["calls"]["failed_with_retry"] == 1
    # leaving the client ran the lifespan shutdown, which flushes the batch of spans
    assert receiver.received.wait(timeout=10)
    spans = receiver.spans()
    assert len(spans) >= 2
    # the request is a server span, and everything it caused is in its trace (one trace, not one per span)
    servers = {span.name: span for span in spans if span.kind == span.SPAN_KIND_SERVER}
    assert {"POST /chaos/{dependency}", "GET /inventory/{sku}"} <= set(servers)
    server = servers["GET /inventory/{sku}"]
    trace = [span for span in spans if span.trace_id == server.trace_id]
    attempts = [span for span in trace if span.name == "retry inventory"]
    assert len(attempts) == 2
    assert all(span.parent_span_id == server.span_id for span in attempts)
    events = {event.name for span in trace for event in span.events}
    assert {"seawall.retry.gave_up", "seawall.fallback"} <= events  # exported now that they have a span
    assert not [span for span in spans if span.name.startswith("GET /metrics")]
    resource = receiver.resources()[0]
    names = {attr.key: attr.value.string_value for attr in resource.attributes}
    assert names["service.name"] == "seawall-demo-test"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "seawall-demo"),
        ({"OTEL_SERVICE_NAME": "from-name"}, None),
        ({"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod, service.name=from-attributes"}, None),
        ({"OTEL_RESOURCE_ATTRIBUTES": "service.namespace=shop"}, "seawall-demo"),
    ],
)
def test_the_demo_names_itself_only_when_the_environment_does_not(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str | None
) -> None:
    from seawall.demo.app import demo_service_name

    for key in ("OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert demo_service_name() == expected


def test_demo_traces_carry_service_name_from_resource_attributes(
    monkeypatch: pytest.MonkeyPatch, fake_clock: Any, receiver: Any
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=checkout-demo")
    app = create_demo_app(traffic_rate=0, clock=fake_clock, sleep=fake_clock.sleep, seed=1)
    with TestClient(app) as test_client:
        test_client.post("/chaos/inventory", json={"failure_rate": 1})
        test_client.get("/inventory/a")
    assert receiver.received.wait(timeout=10)
    names = {attr.key: attr.value.string_value for attr in receiver.resources()[0].attributes}
    assert names["service.name"] == "checkout-demo"


def test_the_demo_traces_nothing_with_otel_traces_exporter_none(
    monkeypatch: pytest.MonkeyPatch, fake_clock: Any, receiver: Any
) -> None:
    from seawall.demo.app import _setup_tracing

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    registry = Registry()
    assert _setup_tracing(registry) is None
    assert registry.bus.listeners == ()


def test_any_json_body_is_200_or_422_naming_a_field(fake_clock: Any) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    values = st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
        max_leaves=6,
    )
    bodies = values | st.dictionaries(
        st.sampled_from(["failure_rate", "latency_ms", "outage"]), values, max_size=3
    )
    app = create_demo_app(traffic_rate=0, clock=fake_clock, sleep=fake_clock.sleep)
    with TestClient(app, raise_server_exceptions=False) as test_client:

        @settings(
            max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
        )
        @given(body=bodies)
        def check(body: Any) -> None:
            response = test_client.post("/chaos/payments", content=json.dumps(body), headers=JSON)
            assert response.status_code in (200, 422), response.text
            if response.status_code == 422:
                assert response.json()["field"]
            chaos = test_client.get("/chaos").json()["payments"]
            assert 0 <= chaos["failure_rate"] <= 1
            assert 0 <= chaos["latency_ms"] <= 60_000
            assert isinstance(chaos["outage"], bool)

        check()


def test_each_generated_call_is_one_trace(fake_clock: Any) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    import seawall
    from seawall import otel

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    registry = seawall.Registry()
    instrumentation = otel.instrument(provider, seawall_registry=registry)
    demo = Demo(registry=registry, clock=fake_clock, sleep=fake_clock.sleep, seed=1, traffic_rate=0)
    demo.tracer = provider.get_tracer("test")
    demo.guarded["inventory"].dependency.update({"failure_rate": 1})

    async def one() -> None:
        await demo.start()
        try:
            await demo._one(demo.guarded["inventory"])
        finally:
            await demo.stop()

    try:
        asyncio.run(asyncio.wait_for(one(), timeout=30))
    finally:
        instrumentation.close()
        provider.shutdown()
    spans = exporter.get_finished_spans()
    (root,) = [span for span in spans if span.parent is None]
    assert root.name == "demo traffic inventory"
    assert {span.context.trace_id for span in spans} == {root.context.trace_id}
    by_id = {span.context.span_id: span for span in spans}
    retries = [span for span in spans if span.name == "retry inventory"]
    assert [span.parent.span_id for span in retries] == [root.context.span_id] * 2
    # one HTTP client span per attempt, under its retry attempt, with the upstream's 503
    attempts = [span for span in spans if span.kind == SpanKind.CLIENT]
    assert len(attempts) == 2
    assert {by_id[span.parent.span_id].name for span in attempts} == {"retry inventory"}
    assert {span.attributes["server.address"] for span in attempts} == {"inventory"}
    assert {span.attributes["http.response.status_code"] for span in attempts} == {503}
    assert {"seawall.retry.gave_up", "seawall.fallback"} <= {event.name for event in root.events}
