"""seawall.otel: attempt spans and span events with the SDK's in-memory exporter; OTLP end to end."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import StatusCode
from prometheus_client import CollectorRegistry

import seawall
from otlp_receiver import OTLPReceiver
from seawall import otel
from seawall import prometheus as sp
from seawall.events import (
    BreakerCallRejected,
    BreakerStateChanged,
    FallbackUsed,
    RetryAttemptFinished,
    RetryAttemptStarted,
    RetryCompleted,
    RetryGaveUp,
)
from stacktools.harness import wait_until

S = seawall.BreakerState
TRANSIENT = seawall.ErrorCategory.TRANSIENT


Memory = tuple[TracerProvider, InMemorySpanExporter]  # a provider and the exporter it writes into


@pytest.fixture
def memory() -> Iterator[Memory]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


@pytest.fixture
def traced(memory: Memory, registry: seawall.Registry) -> Iterator[otel.OtelInstrumentation]:
    """The registry's bus traced into `memory` (tests that only read spans use it by mark)."""
    instrumentation = otel.instrument(memory[0], seawall_registry=registry)
    yield instrumentation
    instrumentation.close()


def two_attempts(bus: seawall.EventBus, inner: trace.Tracer | None = None) -> None:
    bus.publish(RetryAttemptStarted("fetch", 1))
    if inner is not None:
        with inner.start_as_current_span("work"):
            pass
    bus.publish(RetryAttemptFinished("fetch", 1, 0.1, "ConnectionError", TRANSIENT, True, 0.25))
    bus.publish(RetryAttemptStarted("fetch", 2))
    bus.publish(RetryAttemptFinished("fetch", 2, 0.1, None, None, False, 0.0))
    bus.publish(RetryCompleted("fetch", seawall.RetryOutcome.SUCCESS_WITH_RETRY, 2, 0.5, None))


@pytest.mark.usefixtures("traced")
def test_one_span_per_attempt(memory: Memory, registry: seawall.Registry) -> None:
    provider, exporter = memory
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("caller") as caller:
        two_attempts(registry.bus, inner=tracer)
        assert trace.get_current_span() is caller  # every attach was detached
    spans = {(s.name, s.attributes.get("seawall.retry.attempt")): s for s in exporter.get_finished_spans()}
    first, second = spans[("retry fetch", 1)], spans[("retry fetch", 2)]
    work, outer = spans[("work", None)], spans[("caller", None)]
    assert first.parent.span_id == outer.context.span_id
    assert second.parent.span_id == outer.context.span_id
    assert work.parent.span_id == first.context.span_id  # the attempt's work nests under it
    assert dict(first.attributes) == {
        "seawall.retry.name": "fetch",
        "seawall.retry.attempt": 1,
        "error.type": "ConnectionError",
        "seawall.error.category": "transient",
        "seawall.retry.will_retry": True,
        "seawall.retry.delay": 0.25,
    }
    assert first.status.status_code is StatusCode.ERROR
    assert dict(second.attributes) == {
        "seawall.retry.name": "fetch",
        "seawall.retry.attempt": 2,
    }  # no http.request.resend_count: not an HTTP client span
    assert second.status.status_code is StatusCode.UNSET
    assert not first.events  # no exception recorded by seawall: the caller's span records it once
    assert len(exporter.get_finished_spans()) == 4


@pytest.mark.usefixtures("traced")
def test_breaker_and_retry_span_events(memory: Memory, registry: seawall.Registry) -> None:
    provider, exporter = memory
    bus = registry.bus
    with provider.get_tracer("test").start_as_current_span("caller"):
        bus.publish(BreakerStateChanged("db", S.CLOSED, S.OPEN, "failures"))
        bus.publish(BreakerCallRejected("db", S.OPEN, 12.5))
        bus.publish(FallbackUsed("recs", seawall.FallbackReason.CIRCUIT_OPEN, None))
        bus.publish(RetryCompleted("fetch", seawall.RetryOutcome.FAILED_WITH_RETRY, 3, 1.0, "TimeoutError"))
        bus.publish(RetryGaveUp("fetch", seawall.RetryOutcome.FAILED_WITH_RETRY, 3, "TimeoutError"))
        bus.publish(RetryCompleted("fetch", seawall.RetryOutcome.SUCCESS_WITHOUT_RETRY, 1, 1.0, None))
    (caller,) = exporter.get_finished_spans()
    events = [(e.name, dict(e.attributes)) for e in caller.events]
    assert events == [
        (
            "seawall.breaker.state_change",
            {
                "seawall.breaker.name": "db",
                "seawall.breaker.from_state": "closed",
                "seawall.breaker.to_state": "open",
                "seawall.breaker.reason": "failures",
            },
        ),
        (
            "seawall.breaker.rejected",
            {
                "seawall.breaker.name": "db",
                "seawall.breaker.state": "open",
                "seawall.breaker.retry_after": 12.5,
            },
        ),
        ("seawall.fallback", {"seawall.feature.name": "recs", "seawall.fallback.reason": "circuit_open"}),
        (
            "seawall.retry.gave_up",
            {
                "seawall.retry.name": "fetch",
                "seawall.retry.outcome": "failed_with_retry",
                "seawall.retry.attempts": 3,
                "seawall.error.type": "TimeoutError",  # an event: the caller's operation may succeed
            },
        ),
    ]


def test_unsampled_attempts_cost_no_attributes(registry: seawall.Registry) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentation = otel.instrument(provider, seawall_registry=registry)
    try:
        two_attempts(registry.bus)
        assert trace.get_current_span() is trace.INVALID_SPAN
        assert exporter.get_finished_spans() == ()
    finally:
        instrumentation.close()
        provider.shutdown()


@pytest.mark.usefixtures("traced")
def test_finish_without_start_is_ignored(memory: Memory, registry: seawall.Registry) -> None:
    registry.bus.publish(RetryAttemptFinished("fetch", 3, 0.1, None, None, False, 0.0))
    assert memory[1].get_finished_spans() == ()
    assert registry.bus.instrumentation_errors() == {}


@pytest.mark.usefixtures("traced")
def test_nested_retries_close_in_order(memory: Memory, registry: seawall.Registry) -> None:
    bus = registry.bus
    bus.publish(RetryAttemptStarted("outer", 1))
    bus.publish(RetryAttemptStarted("inner", 1))
    bus.publish(RetryAttemptFinished("inner", 1, 0.1, None, None, False, 0.0))
    bus.publish(RetryAttemptFinished("outer", 1, 0.1, None, None, False, 0.0))
    assert trace.get_current_span() is trace.INVALID_SPAN
    spans = {s.name: s for s in memory[1].get_finished_spans()}
    assert spans["retry inner"].parent.span_id == spans["retry outer"].context.span_id
    assert spans["retry outer"].parent is None


def test_no_sdk_provider_means_no_subscription(
    registry: seawall.Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the global provider is set-once per process: pretend nobody set one (the API's proxy)
    monkeypatch.setattr(trace, "get_tracer_provider", trace.ProxyTracerProvider)
    instrumentation = otel.instrument(seawall_registry=registry)
    assert instrumentation.active is False
    assert registry.bus.listeners == ()
    noop = otel.instrument(trace.NoOpTracerProvider(), seawall_registry=registry)
    assert noop.active is False
    assert registry.bus.listeners == ()
    instrumentation.close()


def test_instrument_is_idempotent(memory: Memory, registry: seawall.Registry) -> None:
    first = otel.instrument(memory[0], seawall_registry=registry)
    try:
        assert otel.instrument(memory[0], seawall_registry=registry) is first
        assert len(registry.bus.listeners) == 1
        with pytest.raises(ValueError, match="already traced"):
            otel.instrument(TracerProvider(), seawall_registry=registry)
        with pytest.raises(TypeError, match="tracer_provider"):
            otel.instrument(object(), seawall_registry=seawall.Registry())  # type: ignore[arg-type]
    finally:
        first.close()
    assert registry.bus.listeners == ()


# -- OTLP -----------------------------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    server = OTLPReceiver("ok").start()
    yield server
    server.stop()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def otlp_failures(registry: seawall.Registry) -> int:
    return registry.bus.instrumentation_errors().get("otlp", 0)


def test_otlp_http_end_to_end(receiver: OTLPReceiver, registry: seawall.Registry) -> None:
    provider = otel.configure_otlp(
        receiver.url, service_name="checkout", seawall_registry=registry, timeout=5
    )
    instrumentation = otel.instrument(provider, seawall_registry=registry)
    try:
        two_attempts(registry.bus)
        assert provider.force_flush(10_000)
    finally:
        instrumentation.close()
        provider.shutdown()
    assert receiver.paths
    assert set(receiver.paths) == {"/v1/traces"}
    spans = receiver.spans()
    assert sorted(s.name for s in spans) == ["retry fetch", "retry fetch"]
    by_attempt = {{a.key: a.value for a in s.attributes}["seawall.retry.attempt"].int_value: s for s in spans}
    first = {a.key: a.value for a in by_attempt[1].attributes}
    assert first["error.type"].string_value == "ConnectionError"
    assert by_attempt[1].status.code == 2  # STATUS_CODE_ERROR
    second = {a.key: a.value for a in by_attempt[2].attributes}
    assert "http.request.resend_count" not in second
    (resource,) = {
        a.value.string_value for r in receiver.resources() for a in r.attributes if a.key == "service.name"
    }
    assert resource == "checkout"
    assert registry.bus.instrumentation_errors() == {}


@pytest.fixture
def env(receiver: OTLPReceiver, monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The process environment with the standard OTLP endpoint variable pointed at `receiver`."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    return monkeypatch


@contextmanager
def from_env(registry: seawall.Registry) -> Iterator[TracerProvider]:
    """A tracer provider configured from the environment alone, shut down on exit."""
    provider = otel.configure_otlp(seawall_registry=registry)
    try:
        yield provider
    finally:
        provider.shutdown()


def send_one(registry: seawall.Registry, name: str) -> None:
    """One span through a provider configured from the environment, flushed."""
    with from_env(registry) as provider:
        provider.get_tracer("t").start_span(name).end()
        assert provider.force_flush(10_000)


def test_otlp_honours_env(
    receiver: OTLPReceiver, registry: seawall.Registry, env: pytest.MonkeyPatch
) -> None:
    env.setenv("OTEL_SERVICE_NAME", "from-env")
    env.setenv("OTEL_TRACES_SAMPLER", "always_on")
    send_one(registry, "one")
    assert [s.name for s in receiver.spans()] == ["one"]
    names = {
        a.value.string_value for r in receiver.resources() for a in r.attributes if a.key == "service.name"
    }
    assert names == {"from-env"}
    env.setenv("OTEL_TRACES_SAMPLER", "always_off")
    with from_env(registry) as quiet:
        assert not quiet.get_tracer("t").start_span("x").is_recording()


def test_otel_traces_exporter_none_sends_nothing(
    receiver: OTLPReceiver, registry: seawall.Registry, env: pytest.MonkeyPatch
) -> None:
    env.setenv("OTEL_TRACES_EXPORTER", "none")
    send_one(registry, "one")
    assert receiver.spans() == []
    env.setenv("OTEL_TRACES_EXPORTER", "otlp")
    send_one(registry, "two")
    assert [s.name for s in receiver.spans()] == ["two"]


def test_otlp_endpoint_down_is_counted_not_raised(registry: seawall.Registry) -> None:
    prom = CollectorRegistry()
    metrics = sp.instrument(prom, seawall_registry=registry)
    provider = otel.configure_otlp(f"http://127.0.0.1:{closed_port()}", seawall_registry=registry, timeout=1)
    instrumentation = otel.instrument(provider, seawall_registry=registry)
    try:
        two_attempts(registry.bus)  # returns: nothing raised into the caller
        provider.force_flush(5_000)
        wait_until(
            lambda: registry.bus.instrumentation_errors().get("otlp", 0) >= 1,
            10,
            "the export failure counted",
            0.02,
        )
        value = prom.get_sample_value("seawall_instrumentation_errors_total", {"component": "otlp"})
        assert value is not None
        assert value >= 1
    finally:
        instrumentation.close()
        provider.shutdown()
        metrics.close()


def test_otlp_hanging_endpoint_never_blocks_calls(registry: seawall.Registry) -> None:
    server = OTLPReceiver("hang").start()
    provider = otel.configure_otlp(server.url, seawall_registry=registry, timeout=0.5, max_queue_size=64)
    instrumentation = otel.instrument(provider, seawall_registry=registry)
    try:
        registry.bus.publish(RetryAttemptStarted("fetch", 1))
        registry.bus.publish(RetryAttemptFinished("fetch", 1, 0.1, None, None, False, 0.0))
        provider.force_flush(100)  # kick an export that will hang
        assert server.received.wait(10)
        for _ in range(1000):  # far more than the queue holds, while the exporter is stuck
            two_attempts(registry.bus)
        assert not server._release.is_set()  # still hanging: the calls did not wait for it
        wait_until(
            lambda: registry.bus.instrumentation_errors().get("otlp", 0) >= 1,
            10,
            "the export failure counted",
            0.02,
        )
    finally:
        server.release()
        instrumentation.close()
        provider.shutdown()
        server.stop()


def test_configure_otlp_bad_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="protocol must be one of"):
        otel.configure_otlp(protocol="http/json")
    with pytest.raises(ValueError, match="timeout"):
        otel.configure_otlp(timeout=0)
    with pytest.raises(ValueError, match="max_queue_size"):
        otel.configure_otlp(max_queue_size=0)
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.grpc.trace_exporter", None)
    with pytest.raises(ImportError, match=r"seawall\[otel-grpc\]"):
        otel.configure_otlp(protocol="grpc")
