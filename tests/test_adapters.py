"""The pybreaker and tenacity adapters, driven through the real libraries."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pybreaker
import pytest
import tenacity
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

import seawall
from seawall import otel
from seawall import prometheus as sp
from seawall._events import (
    BreakerCallCompleted,
    BreakerCallRejected,
    BreakerStateChanged,
    Event,
    PrimitiveRegistered,
    RetryAttemptFinished,
    RetryAttemptStarted,
    RetryCompleted,
)
from seawall.adapters.pybreaker import SeawallListener, instrument_breaker
from seawall.adapters.tenacity import RETRYABLE_RESULT, instrument_retrying

S = seawall.BreakerState
OC = seawall.CallOutcome
RO = seawall.RetryOutcome


@pytest.fixture
def prom(registry: seawall.Registry) -> Iterator[CollectorRegistry]:
    collector = CollectorRegistry()
    instrumentation = sp.instrument(collector, seawall_registry=registry)
    yield collector
    instrumentation.close()


def boom() -> None:
    raise ConnectionError("down")


def ok() -> str:
    return "ok"


# -- pybreaker ------------------------------------------------------------------------------------


def test_pybreaker_events(registry: seawall.Registry, events: list[Event]) -> None:
    cb = pybreaker.CircuitBreaker(fail_max=2, reset_timeout=60, name="pay")
    listener = instrument_breaker(cb, registry=registry)
    assert instrument_breaker(cb, registry=registry) is listener
    assert events == [PrimitiveRegistered("breaker", "pay")]
    assert cb.call(ok) == "ok"
    with pytest.raises(ConnectionError):
        cb.call(boom)
    with pytest.raises(pybreaker.CircuitBreakerError):  # the trip: counted as a failure, not a rejection
        cb.call(boom)
    with pytest.raises(pybreaker.CircuitBreakerError):  # rejected
        cb.call(ok)
    kinds = [(type(e).__name__, getattr(e, "outcome", None)) for e in events[1:]]
    assert kinds == [
        ("BreakerCallCompleted", OC.SUCCESS),
        ("BreakerCallCompleted", OC.FAILURE),
        ("BreakerCallCompleted", OC.FAILURE),
        ("BreakerStateChanged", None),
        ("BreakerCallRejected", None),
    ]
    completed = events[3]
    assert isinstance(completed, BreakerCallCompleted)
    assert completed.error_type == "ConnectionError"
    assert completed.duration >= 0
    assert events[4] == BreakerStateChanged("pay", S.CLOSED, S.OPEN, "failures")
    rejected = events[5]
    assert isinstance(rejected, BreakerCallRejected)
    assert rejected.state is S.OPEN
    assert 0 < rejected.retry_after <= 60


def test_pybreaker_half_open_and_recovery(registry: seawall.Registry, events: list[Event]) -> None:
    cb = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=30, name="pay")
    instrument_breaker(cb, registry=registry)
    with pytest.raises(pybreaker.CircuitBreakerError):
        cb.call(boom)
    # pretend the reset timeout has passed (pybreaker reads the wall clock; no real sleep)
    cb._state_storage.opened_at = datetime.now(timezone.utc) - timedelta(seconds=31)
    assert cb(ok)() == "ok"  # the decorator form goes through the hooked call too
    changes = [(e.from_state, e.to_state, e.reason) for e in events if isinstance(e, BreakerStateChanged)]
    assert changes == [
        (S.CLOSED, S.OPEN, "failures"),
        (S.OPEN, S.HALF_OPEN, "timeout"),
        (S.HALF_OPEN, S.CLOSED, "probe_success"),
    ]
    assert not any(isinstance(e, BreakerCallRejected) for e in events)


def test_pybreaker_metrics(registry: seawall.Registry, prom: CollectorRegistry) -> None:
    cb = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=60, name="pay")
    instrument_breaker(cb, registry=registry)
    assert (
        prom.get_sample_value("seawall_circuit_breaker_calls_total", {"breaker": "pay", "outcome": "success"})
        == 0
    )
    cb.call(ok)
    with pytest.raises(pybreaker.CircuitBreakerError):
        cb.call(boom)
    for _ in range(3):
        with pytest.raises(pybreaker.CircuitBreakerError):
            cb.call(ok)

    def get(name: str, **labels: str) -> float | None:
        return prom.get_sample_value(name, labels)

    assert get("seawall_circuit_breaker_calls_total", breaker="pay", outcome="success") == 1
    assert get("seawall_circuit_breaker_calls_total", breaker="pay", outcome="failure") == 1
    assert get("seawall_circuit_breaker_calls_total", breaker="pay", outcome="rejected") == 3
    assert get("seawall_circuit_breaker_state", breaker="pay", state="open") == 1
    assert get("seawall_circuit_breaker_state", breaker="pay", state="closed") == 0
    assert (
        get("seawall_circuit_breaker_transitions_total", breaker="pay", from_state="closed", to_state="open")
        == 1
    )


def test_pybreaker_plain_listener_and_bad_arguments(registry: seawall.Registry, events: list[Event]) -> None:
    cb = pybreaker.CircuitBreaker(fail_max=5)
    cb.add_listener(SeawallListener(registry, name="unnamed-cb"))
    cb.call(ok)
    assert [type(e).__name__ for e in events] == ["BreakerCallCompleted"]
    assert isinstance(events[0], BreakerCallCompleted)
    assert events[0].breaker == "unnamed-cb"
    with pytest.raises(TypeError, match=r"pybreaker\.CircuitBreaker"):
        instrument_breaker(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        SeawallListener(registry, name="")


# -- tenacity -------------------------------------------------------------------------------------


class Flaky:
    def __init__(self, failures: int, exc: type[Exception] = ConnectionError) -> None:
        self.failures = failures
        self.exc = exc
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.exc(f"attempt {self.calls}")
        return "ok"


def retrying(slept: list[float], attempts: int = 3, **kwargs: object) -> tenacity.Retrying:
    options: dict[str, object] = {
        "stop": tenacity.stop_after_attempt(attempts),
        "wait": tenacity.wait_fixed(0.5),
        "retry": tenacity.retry_if_exception_type(ConnectionError),
        "sleep": slept.append,
    }
    options.update(kwargs)
    return tenacity.Retrying(**options)  # type: ignore[arg-type]


def retry_events(events: list[Event]) -> list[Event]:
    return [e for e in events if isinstance(e, (RetryAttemptStarted, RetryAttemptFinished, RetryCompleted))]


def test_tenacity_success_after_retries(registry: seawall.Registry, events: list[Event]) -> None:
    slept: list[float] = []
    r = instrument_retrying(retrying(slept), "fetch", registry=registry)
    assert r(Flaky(2)) == "ok"
    assert slept == [0.5, 0.5]
    seen = retry_events(events)
    assert [type(e).__name__ for e in seen] == [
        "RetryAttemptStarted",
        "RetryAttemptFinished",
        "RetryAttemptStarted",
        "RetryAttemptFinished",
        "RetryAttemptStarted",
        "RetryAttemptFinished",
        "RetryCompleted",
    ]
    finished = [e for e in seen if isinstance(e, RetryAttemptFinished)]
    assert [(e.attempt, e.error_type, e.will_retry, e.delay) for e in finished] == [
        (1, "ConnectionError", True, 0.5),
        (2, "ConnectionError", True, 0.5),
        (3, None, False, 0.0),
    ]
    assert finished[0].category is seawall.ErrorCategory.TRANSIENT  # via seawall.classify
    assert finished[2].category is None
    completed = seen[-1]
    assert isinstance(completed, RetryCompleted)
    assert (completed.outcome, completed.attempts, completed.error_type) == (RO.SUCCESS_WITH_RETRY, 3, None)


def test_tenacity_outcomes(registry: seawall.Registry, events: list[Event]) -> None:
    slept: list[float] = []
    instrument_retrying(retrying(slept), "a", registry=registry)(ok)
    r = instrument_retrying(retrying(slept), "b", registry=registry)
    with pytest.raises(tenacity.RetryError):
        r(Flaky(10))
    r = instrument_retrying(retrying(slept, reraise=True), "c", registry=registry)
    with pytest.raises(ValueError, match="attempt 1"):
        r(Flaky(10, ValueError))  # not retried
    completed = [
        (e.retry, e.outcome, e.attempts, e.error_type) for e in events if isinstance(e, RetryCompleted)
    ]
    assert completed == [
        ("a", RO.SUCCESS_WITHOUT_RETRY, 1, None),
        ("b", RO.FAILED_WITH_RETRY, 3, "ConnectionError"),
        ("c", RO.FAILED_WITHOUT_RETRY, 1, "ValueError"),
    ]
    last_b = [e for e in events if isinstance(e, RetryAttemptFinished) and e.retry == "b"][-1]
    assert (last_b.attempt, last_b.will_retry, last_b.delay) == (3, False, 0.0)


def test_tenacity_decorator_and_result_predicate(registry: seawall.Registry, events: list[Event]) -> None:
    slept: list[float] = []
    results = iter([None, None, "value"])

    @tenacity.retry(
        stop=tenacity.stop_after_attempt(5),
        wait=tenacity.wait_fixed(0.1),
        retry=tenacity.retry_if_result(lambda value: value is None),
        sleep=slept.append,
    )
    def poll() -> str | None:
        return next(results)

    instrument_retrying(poll, "poll", registry=registry)
    assert poll() == "value"
    finished = [
        (e.attempt, e.error_type, e.will_retry) for e in events if isinstance(e, RetryAttemptFinished)
    ]
    assert finished == [(1, RETRYABLE_RESULT, True), (2, RETRYABLE_RESULT, True), (3, None, False)]
    with pytest.raises(ValueError, match="already instrumented"):
        instrument_retrying(poll, "again", registry=registry)
    with pytest.raises(TypeError, match="tenacity Retrying"):
        instrument_retrying(ok, "x", registry=registry)
    with pytest.raises(ValueError, match="name"):
        instrument_retrying(tenacity.Retrying(), "", registry=registry)


def test_tenacity_async(registry: seawall.Registry, events: list[Event]) -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    flaky = Flaky(1)

    async def call() -> str:
        return flaky()

    r = tenacity.AsyncRetrying(
        stop=tenacity.stop_after_attempt(3),
        wait=tenacity.wait_fixed(0.25),
        retry=tenacity.retry_if_exception_type(ConnectionError),
        sleep=fake_sleep,
    )
    instrument_retrying(r, "async-fetch", registry=registry)
    assert asyncio.run(asyncio.wait_for(r(call), timeout=10)) == "ok"
    assert slept == [0.25]
    completed = [e for e in events if isinstance(e, RetryCompleted)]
    assert [(e.outcome, e.attempts) for e in completed] == [(RO.SUCCESS_WITH_RETRY, 2)]


def test_tenacity_metrics_and_spans(registry: seawall.Registry, prom: CollectorRegistry) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = otel.instrument(provider, seawall_registry=registry)
    try:
        slept: list[float] = []
        r = instrument_retrying(retrying(slept), "fetch", registry=registry)
        assert r(Flaky(1)) == "ok"
    finally:
        tracing.close()
        provider.shutdown()
    labels = {"retry": "fetch", "outcome": "success_with_retry"}
    assert prom.get_sample_value("seawall_retry_calls_total", labels) == 1
    assert (
        prom.get_sample_value(
            "seawall_retries_total", {"retry": "fetch", "error_type": "ConnectionError"}
        )
        == 1
    )
    spans = sorted(exporter.get_finished_spans(), key=lambda s: s.attributes["seawall.retry.attempt"])
    assert [s.name for s in spans] == ["retry fetch", "retry fetch"]
    assert spans[0].attributes["error.type"] == "ConnectionError"
    assert spans[1].attributes["http.request.resend_count"] == 1
