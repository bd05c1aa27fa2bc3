"""Prometheus metrics and OTel spans under real Retry(CircuitBreaker(fn)) stacks: one scripted outage."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from prometheus_client import CollectorRegistry

import seawall
from seawall import otel
from seawall import prometheus as sp


@pytest.fixture
def stack(fake_clock: Any) -> Iterator[dict[str, Any]]:
    registry = seawall.Registry()
    prom = CollectorRegistry()
    metrics = sp.instrument(prom, seawall_registry=registry)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = otel.instrument(provider, seawall_registry=registry)
    slept: list[float] = []

    async def async_sleep(seconds: float) -> None:
        slept.append(seconds)

    breaker = seawall.CircuitBreaker(
        "inventory", failure_threshold=3, reset_timeout=30.0, clock=fake_clock, registry=registry
    )
    retry = seawall.Retry(
        "inventory",
        attempts=3,
        initial=0.1,
        jitter=0.0,
        sleep=slept.append,
        async_sleep=async_sleep,
        clock=fake_clock,
        registry=registry,
    )
    yield {
        "registry": registry,
        "prom": prom,
        "exporter": exporter,
        "provider": provider,
        "breaker": breaker,
        "retry": retry,
        "slept": slept,
    }
    tracing.close()
    metrics.close()
    provider.shutdown()


def sample(prom: CollectorRegistry, name: str, **labels: str) -> float | None:
    return prom.get_sample_value(name, labels)


class Flaky:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(f"attempt {self.calls}")
        return "ok"


def test_retry_through_breaker(stack: dict[str, Any]) -> None:
    prom, retry, breaker = stack["prom"], stack["retry"], stack["breaker"]
    guarded = retry(breaker(Flaky(2)))
    assert guarded() == "ok"
    assert stack["slept"] == [0.1, 0.2]
    assert sample(prom, "seawall_retry_calls_total", retry="inventory", outcome="success_with_retry") == 1
    assert sample(prom, "seawall_retries_total", retry="inventory", error_type="ConnectionError") == 2
    assert sample(prom, "seawall_circuit_breaker_calls_total", breaker="inventory", outcome="failure") == 2
    assert sample(prom, "seawall_circuit_breaker_calls_total", breaker="inventory", outcome="success") == 1
    spans = sorted(
        stack["exporter"].get_finished_spans(), key=lambda s: s.attributes["seawall.retry.attempt"]
    )
    assert [s.attributes["seawall.retry.attempt"] for s in spans] == [1, 2, 3]
    assert [s.status.status_code for s in spans] == [StatusCode.ERROR, StatusCode.ERROR, StatusCode.UNSET]
    assert spans[0].attributes["error.type"] == "ConnectionError"
    assert spans[0].attributes["seawall.error.category"] == "transient"
    assert spans[0].attributes["seawall.retry.delay"] == 0.1
    assert "http.request.resend_count" not in spans[2].attributes  # not an HTTP client span


def test_outage_opens_the_breaker_and_retries_give_up(stack: dict[str, Any]) -> None:
    prom, retry, breaker, provider = stack["prom"], stack["retry"], stack["breaker"], stack["provider"]
    guarded = retry(breaker(Flaky(100)))
    with provider.get_tracer("test").start_as_current_span("request") as request:
        with pytest.raises((ConnectionError, seawall.CircuitOpenError)):
            guarded()
        with pytest.raises((ConnectionError, seawall.CircuitOpenError)):
            guarded()
    assert sample(prom, "seawall_circuit_breaker_state", breaker="inventory", state="open") == 1
    assert sample(prom, "seawall_circuit_breaker_calls_total", breaker="inventory", outcome="failure") == 3
    rejected = sample(prom, "seawall_circuit_breaker_calls_total", breaker="inventory", outcome="rejected")
    assert rejected is not None
    assert rejected >= 1
    failed = sample(prom, "seawall_retry_calls_total", retry="inventory", outcome="failed_with_retry") or 0
    failed += (
        sample(prom, "seawall_retry_calls_total", retry="inventory", outcome="failed_without_retry") or 0
    )
    assert failed == 2
    spans = stack["exporter"].get_finished_spans()
    attempts = [s for s in spans if s.name == "retry inventory"]
    assert all(s.parent.span_id == request.get_span_context().span_id for s in attempts)
    events = [e.name for s in attempts for e in s.events]
    assert "seawall.breaker.state_change" in events  # the trip happened inside an attempt
    assert "seawall.breaker.rejected" in events
    outer = next(s for s in spans if s.name == "request")
    assert "seawall.retry.gave_up" in [e.name for e in outer.events]


def test_async_stack(stack: dict[str, Any]) -> None:
    prom, retry, breaker = stack["prom"], stack["retry"], stack["breaker"]
    flaky = Flaky(1)

    @retry
    @breaker
    async def fetch() -> str:
        return flaky()

    assert asyncio.run(asyncio.wait_for(fetch(), timeout=10)) == "ok"
    assert sample(prom, "seawall_retry_calls_total", retry="inventory", outcome="success_with_retry") == 1
    spans = stack["exporter"].get_finished_spans()
    assert sorted(s.attributes["seawall.retry.attempt"] for s in spans) == [1, 2]
