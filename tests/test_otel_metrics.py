"""seawall.otel.instrument_metrics: the metric contract as OpenTelemetry metrics, read from the same
snapshots as Prometheus (SDK InMemoryMetricReader against the Prometheus exposition)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import Gauge, InMemoryMetricReader, Sum
from prometheus_client import CollectorRegistry

import seawall
from contract_work import fail, random_work
from exposition import Samples, prometheus_name, scrape
from seawall import otel
from seawall import prometheus as sp
from seawall.metrics.contract import CONTRACT

HISTOGRAM_PARTS = ("count", "sum", "bucket")


def _key(name: str, attributes: dict[str, Any]) -> tuple[str, tuple[tuple[str, str], ...]]:
    labels = {k: (repr(float(v)) if k == "le" else str(v)) for k, v in attributes.items()}
    return name, tuple(sorted(labels.items()))


def otel_samples(reader: InMemoryMetricReader) -> Samples:
    """Every data point as the Prometheus sample the standard translation makes of it."""
    data = reader.get_metrics_data()
    if data is None:  # nothing reported
        return {}
    metrics = [m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics]
    units = {m.name: m.unit for m in metrics}
    found: Samples = {}
    for metric in metrics:
        base, _, part = metric.name.rpartition(".")
        if part in HISTOGRAM_PARTS:  # a histogram family as three counters; `.sum` has its unit
            name = prometheus_name(base, units[base + ".sum"], gauge=False) + "_" + part
        else:
            counter = isinstance(metric.data, Sum) and metric.data.is_monotonic
            gauge = isinstance(metric.data, Gauge) or not counter
            name = prometheus_name(metric.name, metric.unit or "", gauge) + ("_total" if counter else "")
        for point in metric.data.data_points:
            found[_key(name, dict(point.attributes or {}))] = float(point.value)
    return found


def normalised(found: Samples) -> Samples:
    return {_key(name, dict(labels)): value for (name, labels), value in found.items()}


@pytest.fixture
def reader() -> Iterator[tuple[MeterProvider, InMemoryMetricReader]]:
    memory = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[memory])
    yield provider, memory
    provider.shutdown()


@pytest.mark.parametrize("seed", [3, 11])
def test_every_family_agrees_with_prometheus(reader: Any, seed: int, redis_server: Any) -> None:
    """Random work on every kind, part of it before instrument_metrics(): every series of every
    family has the same value in OpenTelemetry as in the Prometheus exposition."""
    provider, memory = reader
    registry = seawall.Registry()
    prom = CollectorRegistry()
    prometheus = sp.instrument(prom, seawall_registry=registry, max_label_values=3)
    random_work(registry, seed, redis_server.url)
    listeners = registry.bus.listeners
    instrumentation = otel.instrument_metrics(provider, seawall_registry=registry, max_label_values=3)
    assert instrumentation.active
    assert registry.bus.listeners == listeners  # no event subscription
    for breaker in registry.items("breaker"):  # more work after: both read it at collection
        with contextlib.suppress(Exception):
            breaker.call(fail)
    for timeout in registry.items("timeout"):
        timeout.call(lambda: None)
    for _ in range(2):  # a second collection reads again
        expected = normalised(scrape(prom))
        found = otel_samples(memory)
        assert set(found) == set(expected)
        for key, value in expected.items():
            assert found[key] == pytest.approx(value), key
        registry.items("retry")[0].call(lambda: 1)
    families = {spec.prometheus_name for spec in CONTRACT}
    shown = {name.removesuffix("_total").removesuffix("_bucket").removesuffix("_count") for name, _ in found}
    assert {name.removesuffix("_sum") if name not in families else name for name in shown} == families
    instrumentation.close()
    assert otel_samples(memory) == {}  # closed: the instruments report nothing
    prometheus.close()


def test_counts_before_instrumenting_are_reported(reader: Any) -> None:
    provider, memory = reader
    registry = seawall.Registry()
    breaker = seawall.CircuitBreaker("db", registry=registry)
    breaker.call(lambda: 1)
    otel.instrument_metrics(provider, seawall_registry=registry)
    breaker.call(lambda: 1)
    found = otel_samples(memory)
    calls = ("seawall_circuit_breaker_calls_total", (("breaker", "db"), ("outcome", "success")))
    assert found[calls] == 2
    # durations are recorded from instrument_metrics() on (no exporter asked for buckets before)
    duration = (
        "seawall_circuit_breaker_call_duration_seconds_count",
        (("breaker", "db"), ("outcome", "success")),
    )
    assert found[duration] == 1
    infinite = (
        "seawall_circuit_breaker_call_duration_seconds_bucket",
        (("breaker", "db"), ("le", repr(math.inf)), ("outcome", "success")),
    )
    assert found[infinite] == 1


class BrokenBreaker:
    """A registered primitive whose snapshot raises."""

    kind = "breaker"
    name = "broken"
    config: dict[str, Any] = {}

    def snapshot(self) -> Any:
        raise RuntimeError("snapshot")


def test_a_failing_read_is_counted_not_raised(reader: Any) -> None:
    provider, memory = reader
    registry = seawall.Registry()
    seawall.CircuitBreaker("db", registry=registry).call(lambda: 1)
    registry.add(BrokenBreaker())
    otel.instrument_metrics(provider, seawall_registry=registry)
    found = otel_samples(memory)
    assert found[("seawall_circuit_breaker_calls_total", (("breaker", "db"), ("outcome", "success")))] == 1
    assert not any(("breaker", "broken") in labels for _, labels in found)
    assert registry.bus.instrumentation_errors()["otel-metrics"] >= 1


def test_noop_provider_registers_nothing() -> None:
    registry = seawall.Registry()
    assert otel.instrument_metrics(seawall_registry=registry).active is False
    assert otel.instrument_metrics(NoOpMeterProvider(), seawall_registry=registry).active is False
    assert registry.bus.listeners == ()
    with pytest.raises(TypeError, match="meter_provider"):
        otel.instrument_metrics(object(), seawall_registry=registry)
    with pytest.raises(ValueError, match="max_label_values"):
        otel.instrument_metrics(NoOpMeterProvider(), seawall_registry=registry, max_label_values=0)
