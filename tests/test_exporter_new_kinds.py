"""Timeouts, bulkheads, rate limiters and supervised tasks through the exporters: the Prometheus
exposition equals their snapshots (`_other` folded truthfully), and their rejections, timeouts and
task failures are span events on the caller's current span."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

import seawall
from conftest import FakeClock
from exposition import get, scrape
from seawall import prometheus as sp


def test_limits_exposition_equals_their_snapshots(registry: seawall.Registry, fake_clock: FakeClock) -> None:
    prom = CollectorRegistry()
    instrumentation = sp.instrument(prom, seawall_registry=registry, max_label_values=1, buckets=(0.5, 2.0))
    timeouts = [
        seawall.Timeout(name, 1.0, clock=fake_clock, registry=registry) for name in ("t0", "t1", "t2")
    ]

    def slow() -> None:
        fake_clock.advance(1.5)

    timeouts[0].call(lambda: None)
    for timeout in timeouts[1:]:  # both folded into _other
        with contextlib.suppress(seawall.CallTimeoutError):
            timeout.call(slow)
    bulkheads = [seawall.Bulkhead(name, 2, registry=registry) for name in ("b0", "b1", "b2")]
    for bulkhead in bulkheads:
        bulkhead.call(lambda: None)
    held = [bulkheads[1].acquire(), bulkheads[2].acquire()]
    limiters = [
        seawall.RateLimiter(name, 1, burst=1, clock=fake_clock, registry=registry) for name in ("l0", "l1")
    ]
    for limiter in limiters:
        limiter.call(lambda: None)
        with contextlib.suppress(seawall.RateLimitedError):
            limiter.call(lambda: None)
    found = scrape(prom)
    snaps = [timeout.snapshot() for timeout in timeouts]
    assert get(found, "seawall_timeout_calls_total", timeout="t0", outcome="success") == 1
    for outcome in ("success", "timed_out"):
        want = sum(snap.calls[outcome] for snap in snaps[1:])
        assert get(found, "seawall_timeout_calls_total", timeout="_other", outcome=outcome) == want
    assert get(found, "seawall_timeout_call_duration_seconds_bucket", timeout="_other", le="2.0") == 2
    assert get(found, "seawall_timeout_call_duration_seconds_bucket", timeout="_other", le="0.5") == 0
    assert get(found, "seawall_bulkhead_capacity", bulkhead="b0") == 2
    assert get(found, "seawall_bulkhead_capacity", bulkhead="_other") == 4  # capacities add up
    assert get(found, "seawall_bulkhead_in_flight", bulkhead="_other") == sum(
        b.snapshot().in_flight for b in bulkheads[1:]
    )
    assert get(found, "seawall_bulkhead_calls_total", bulkhead="_other", outcome="admitted") == 4
    assert get(found, "seawall_rate_limiter_calls_total", limiter="l0", outcome="rejected") == 1
    assert get(found, "seawall_rate_limiter_calls_total", limiter="_other", outcome="admitted") == 1
    assert get(found, "seawall_rate_limiter_backend_up", limiter="l0") == 1
    tokens = limiters[0].snapshot().available_tokens
    assert get(found, "seawall_rate_limiter_available_tokens", limiter="l0") == pytest.approx(tokens)
    for bulkhead, _ in zip(bulkheads[1:], held, strict=True):
        bulkhead.release()
    instrumentation.close()


def test_task_exposition_and_span_event(
    registry: seawall.Registry, tracing: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = tracing
    prom = CollectorRegistry()
    instrumentation = sp.instrument(prom, seawall_registry=registry)

    async def crash() -> None:
        raise TimeoutError("queue")

    async def no_wait(seconds: float) -> None:
        return None

    async def run() -> None:
        supervisor = seawall.Supervisor(registry=registry, sleep=no_wait)
        with provider.get_tracer("t").start_as_current_span("boot"):
            await supervisor.supervise("sync", crash, max_restarts=1).wait()

    asyncio.run(run())
    found = scrape(prom)
    snapshot = registry.get("task", "sync").snapshot()
    assert get(found, "seawall_task_state", task="sync", state="failed") == 1
    assert get(found, "seawall_task_up", task="sync") == 0
    assert (
        get(found, "seawall_task_permanent_failures_total", task="sync") == snapshot.permanent_failures == 1
    )
    assert (
        get(found, "seawall_task_restarts_total", task="sync", error_type="TimeoutError") == snapshot.restarts
    )
    instrumentation.close()
    events = [event for span in exporter.get_finished_spans() for event in span.events]
    failed = [event for event in events if event.name == "seawall.task.failed"]
    assert failed, [event.name for event in events]
    assert failed[-1].attributes is not None
    assert failed[-1].attributes["seawall.error.type"] == "TimeoutError"
    assert "error.type" not in failed[-1].attributes  # the operation of the span is not what failed
    assert failed[-1].attributes["seawall.task.will_restart"] is False


def test_rejections_and_timeouts_are_span_events(
    registry: seawall.Registry, tracing: tuple[TracerProvider, InMemorySpanExporter], fake_clock: FakeClock
) -> None:
    provider, exporter = tracing
    tracer = provider.get_tracer("t")
    timeout = seawall.Timeout("db", 1.0, clock=fake_clock, registry=registry)
    bulkhead = seawall.Bulkhead("pool", 1, registry=registry)
    limiter = seawall.RateLimiter("api", 1, burst=1, clock=fake_clock, registry=registry)
    with tracer.start_as_current_span("request"):
        with contextlib.suppress(seawall.CallTimeoutError):
            timeout.call(lambda: fake_clock.advance(2.0))
        bulkhead.acquire()
        with contextlib.suppress(seawall.BulkheadFullError):
            bulkhead.call(lambda: None)
        bulkhead.release()
        limiter.call(lambda: None)
        with contextlib.suppress(seawall.RateLimitedError):
            limiter.call(lambda: None)
    (span,) = exporter.get_finished_spans()
    by_name = {event.name: event.attributes for event in span.events}
    assert by_name["seawall.timeout"] is not None
    assert by_name["seawall.timeout"]["seawall.timeout.name"] == "db"
    assert by_name["seawall.bulkhead.rejected"] is not None
    assert by_name["seawall.bulkhead.rejected"]["seawall.bulkhead.name"] == "pool"
    assert by_name["seawall.rate_limiter.rejected"] is not None
    assert by_name["seawall.rate_limiter.rejected"]["seawall.rate_limiter.retry_after"] == pytest.approx(1.0)
