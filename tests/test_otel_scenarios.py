"""seawall.otel with real CircuitBreakers: rejections and state changes as events on the caller's span."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import seawall
from seawall import otel


@pytest.fixture
def traced() -> Iterator[tuple[seawall.Registry, TracerProvider, InMemorySpanExporter]]:
    registry = seawall.Registry()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentation = otel.instrument(provider, seawall_registry=registry)
    yield registry, provider, exporter
    instrumentation.close()
    provider.shutdown()


def fail() -> None:
    raise ConnectionError("down")


def test_breaker_events_on_the_callers_span(traced: Any, fake_clock: Any) -> None:
    registry, provider, exporter = traced
    breaker = seawall.CircuitBreaker(
        "db", failure_threshold=1, reset_timeout=5.0, clock=fake_clock, registry=registry
    )
    tracer = provider.get_tracer("test")
    rejected: list[BaseException] = []
    try:
        with tracer.start_as_current_span("request"):
            with pytest.raises(ConnectionError):
                breaker.call(fail)
            breaker.call(fail)  # rejected
    except seawall.CircuitOpenError as exc:
        rejected.append(exc)
    assert len(rejected) == 1
    (span,) = exporter.get_finished_spans()
    names = [event.name for event in span.events]
    # the caller's span records the CircuitOpenError once, as it propagates
    assert names == ["seawall.breaker.state_change", "seawall.breaker.rejected", "exception"]
    assert span.events[0].attributes["seawall.breaker.to_state"] == "open"
    assert span.events[0].attributes["seawall.breaker.reason"] == "failures"
    assert span.events[1].attributes["seawall.breaker.retry_after"] == 5.0
    assert span.status.status_code is StatusCode.ERROR


def test_no_span_no_cost(traced: Any, fake_clock: Any) -> None:
    registry, _provider, exporter = traced
    breaker = seawall.CircuitBreaker("db", failure_threshold=1, clock=fake_clock, registry=registry)
    with pytest.raises(ConnectionError):
        breaker.call(fail)  # no current span: events have nowhere to go and nothing fails
    assert exporter.get_finished_spans() == ()
    assert registry.bus.instrumentation_errors() == {}
