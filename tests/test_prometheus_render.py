"""seawall.prometheus.generate_latest / generate_openmetrics / render: byte for byte prometheus_client's."""

from __future__ import annotations

from collections.abc import Iterator

import prometheus_client
import pytest
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

import seawall
from seawall import otel
from seawall import prometheus as sp
from seawall.events import (
    BreakerCallCompleted,
    BreakerCallRejected,
    BreakerStateChanged,
    ErrorRecorded,
    PrimitiveRegistered,
    RetryAttemptFinished,
    RetryCompleted,
)

S = seawall.BreakerState
OC = seawall.CallOutcome


@pytest.fixture
def scenario() -> Iterator[CollectorRegistry]:
    prom = CollectorRegistry()
    before = Counter("app_requests_total", 'Requests "served"\nby the app', ["path"], registry=prom)
    before.labels('/a"b\\c').inc(3)
    registry = seawall.Registry()
    instrumentation = sp.instrument(prom, seawall_registry=registry, max_label_values=3)
    Gauge("app_temperature", "after seawall", registry=prom).set(1e7)
    provider = TracerProvider()
    tracing = otel.instrument(provider, seawall_registry=registry)
    instrumentation.refresh()  # tracing is active now: exemplars
    bus = registry.bus
    for name in ("db", 'quo"te\nnew\\line ✓', "c", "d", "e"):
        bus.publish(PrimitiveRegistered("breaker", name))
    with provider.get_tracer("t").start_as_current_span("op"):
        bus.publish(BreakerCallCompleted("db", OC.SUCCESS, 0.004, None))
    bus.publish(BreakerCallCompleted("db", OC.FAILURE, 12.0, "TimeoutError"))
    bus.publish(BreakerCallCompleted("db", OC.IGNORED, 2e6, "KeyError"))
    bus.publish(BreakerStateChanged("db", S.CLOSED, S.OPEN, "failures"))
    bus.publish(BreakerCallRejected("db", S.OPEN, 3.0))
    bus.publish(BreakerCallCompleted('quo"te\nnew\\line ✓', OC.SUCCESS, 0.3, None))
    bus.publish(RetryAttemptFinished("r", 1, 0.1, "OSError", seawall.ErrorCategory.TRANSIENT, True, 0.1))
    bus.publish(RetryCompleted("r", seawall.RetryOutcome.FAILED_WITH_RETRY, 2, 0.3, "OSError"))
    bus.publish(ErrorRecorded("r", "OSError", seawall.ErrorCategory.TRANSIENT))
    yield prom
    tracing.close()
    provider.shutdown()
    instrumentation.close()


def test_text_is_byte_identical(scenario: CollectorRegistry) -> None:
    ours = sp.generate_latest(scenario)
    assert ours == prometheus_client.generate_latest(scenario)
    assert b'breaker="_other"' in ours
    assert b"app_requests_total" in ours
    assert b"app_temperature 1e+07" in ours


def test_openmetrics_is_byte_identical(scenario: CollectorRegistry) -> None:
    ours = sp.generate_openmetrics(scenario)
    assert ours == openmetrics_latest(scenario)
    assert ours.endswith(b"# EOF\n")
    assert ours.count(b"# EOF") == 1
    assert b"trace_id=" in ours


def test_render_picks_the_format(scenario: CollectorRegistry) -> None:
    body, content_type = sp.render(scenario, "application/openmetrics-text; version=1.0.0,text/plain;q=0.5")
    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
    body, content_type = sp.render(scenario, "text/plain")
    assert content_type.startswith("text/plain")
    assert body == prometheus_client.generate_latest(scenario)
    assert sp.render(scenario)[1].startswith("text/plain")


def test_prometheus_client_still_reads_the_families(scenario: CollectorRegistry) -> None:
    value = scenario.get_sample_value(
        "seawall_circuit_breaker_calls_total", {"breaker": "db", "outcome": "rejected"}
    )
    assert value == 1
