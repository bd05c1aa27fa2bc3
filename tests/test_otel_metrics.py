"""seawall.otel.instrument_metrics: the metric contract as OpenTelemetry metrics (InMemoryMetricReader)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import seawall
from seawall import otel
from seawall.events import (
    ErrorRecorded,
    FallbackUsed,
    RetryAttemptFinished,
    RetryCompleted,
)

S = seawall.BreakerState


@pytest.fixture
def setup() -> Iterator[tuple[seawall.Registry, InMemoryMetricReader]]:
    registry = seawall.Registry()
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    instrumentation = otel.instrument_metrics(provider, seawall_registry=registry)
    assert instrumentation.active
    yield registry, reader
    instrumentation.close()
    provider.shutdown()


def points(reader: InMemoryMetricReader) -> dict[tuple[str, tuple[tuple[str, Any], ...]], Any]:
    data = reader.get_metrics_data()
    found: dict[tuple[str, tuple[tuple[str, Any], ...]], Any] = {}
    for resource_metrics in data.resource_metrics:
        for scope in resource_metrics.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    key = (metric.name, tuple(sorted(point.attributes.items())))
                    found[key] = getattr(point, "value", None) if hasattr(point, "value") else point
    return found


def fail() -> None:
    raise ConnectionError("down")


def test_metrics_mirror_the_contract(setup: Any, fake_clock: Any) -> None:
    registry, reader = setup
    breaker = seawall.CircuitBreaker(
        "db", failure_threshold=1, reset_timeout=5.0, clock=fake_clock, registry=registry
    )
    breaker.call(lambda: 1)
    with pytest.raises(ConnectionError):
        breaker.call(fail)
    with pytest.raises(seawall.CircuitOpenError):
        breaker.call(fail)
    bus = registry.bus
    bus.publish(RetryAttemptFinished("r", 1, 0.1, "OSError", seawall.ErrorCategory.TRANSIENT, True, 0.1))
    bus.publish(RetryCompleted("r", seawall.RetryOutcome.SUCCESS_WITH_RETRY, 2, 0.2, None))
    bus.publish(ErrorRecorded("r", "OSError", seawall.ErrorCategory.TRANSIENT))
    bus.publish(FallbackUsed("recs", seawall.FallbackReason.ERROR, "OSError"))
    found = points(reader)
    assert found[("seawall_circuit_breaker_calls", (("breaker", "db"), ("outcome", "success")))] == 1
    assert found[("seawall_circuit_breaker_calls", (("breaker", "db"), ("outcome", "failure")))] == 1
    assert found[("seawall_circuit_breaker_calls", (("breaker", "db"), ("outcome", "rejected")))] == 1
    transition = (("breaker", "db"), ("from_state", "closed"), ("to_state", "open"))
    assert found[("seawall_circuit_breaker_transitions", transition)] == 1
    histogram = found[("seawall_circuit_breaker_call_duration", (("breaker", "db"), ("outcome", "failure")))]
    assert histogram.count == 1
    assert found[("seawall_circuit_breaker_state", (("breaker", "db"), ("state", "open")))] == 1
    assert found[("seawall_circuit_breaker_state", (("breaker", "db"), ("state", "closed")))] == 0
    assert found[("seawall_retries", (("error_type", "OSError"), ("retry", "r")))] == 1
    assert found[("seawall_retry_calls", (("outcome", "success_with_retry"), ("retry", "r")))] == 1
    errors = (("category", "transient"), ("error_type", "OSError"), ("source", "r"))
    assert found[("seawall_errors", errors)] == 1
    assert found[("seawall_fallbacks", (("feature", "recs"), ("reason", "error")))] == 1
    fake_clock.advance(6)  # a probe is due; collecting never moves the state
    found = points(reader)
    assert found[("seawall_circuit_breaker_state", (("breaker", "db"), ("state", "open")))] == 1


def test_noop_provider_subscribes_nothing() -> None:
    registry = seawall.Registry()
    assert otel.instrument_metrics(seawall_registry=registry).active is False
    assert otel.instrument_metrics(NoOpMeterProvider(), seawall_registry=registry).active is False
    assert registry.bus.listeners == ()
    with pytest.raises(TypeError, match="meter_provider"):
        otel.instrument_metrics(object(), seawall_registry=registry)
