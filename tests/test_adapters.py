"""The pybreaker and tenacity adapters, driven through the real libraries."""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pybreaker
import pytest
import tenacity
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

import seawall
from seawall import otel
from seawall import prometheus as sp
from seawall.adapters.pybreaker import SeawallListener, instrument_breaker
from seawall.adapters.tenacity import RETRYABLE_RESULT, instrument_retrying, is_instrumented
from seawall.events import (
    BreakerCallCompleted,
    BreakerCallRejected,
    BreakerStateChanged,
    Event,
    PrimitiveRegistered,
    RetryAttemptFinished,
    RetryAttemptStarted,
    RetryCompleted,
)

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
    assert [type(e).__name__ for e in events] == ["PrimitiveRegistered", "BreakerCallCompleted"]
    assert isinstance(events[1], BreakerCallCompleted)
    assert events[1].breaker == "unnamed-cb"
    shadow = registry.get("breaker", "unnamed-cb")
    assert shadow is not None
    assert shadow.snapshot().calls["success"] == 1
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
        prom.get_sample_value("seawall_retries_total", {"retry": "fetch", "error_type": "ConnectionError"})
        == 1
    )
    spans = sorted(exporter.get_finished_spans(), key=lambda s: s.attributes["seawall.retry.attempt"])
    assert [s.name for s in spans] == ["retry fetch", "retry fetch"]
    assert spans[0].attributes["error.type"] == "ConnectionError"
    assert spans[1].attributes["seawall.retry.attempt"] == 2


# -- issue 9: what the count-keeping shadows see, on every path -----------------------------------


@pytest.fixture
def spans(registry: seawall.Registry) -> Iterator[InMemorySpanExporter]:
    """Attempt spans through the real OpenTelemetry SDK (a local provider, not the global one)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = otel.instrument(provider, seawall_registry=registry)
    yield exporter
    tracing.close()
    provider.shutdown()


def calls_of(registry: seawall.Registry, name: str) -> dict[str, int]:
    shadow = registry.get("retry", name)
    assert shadow is not None, f"no retry {name!r} in the registry"
    return {outcome: n for outcome, n in shadow.snapshot().calls.items() if n}


def test_tenacity_iterator_form_closes_its_span_and_counts(
    registry: seawall.Registry, spans: InMemorySpanExporter
) -> None:
    slept: list[float] = []
    r = instrument_retrying(retrying(slept), "iter", registry=registry)
    flaky = Flaky(1)

    def fetch() -> str:
        for attempt in r:
            with attempt:
                return flaky()  # leaves the loop early, as the tenacity docs show
        raise AssertionError("unreachable")

    assert fetch() == "ok"
    assert trace.get_current_span() is trace.INVALID_SPAN  # nothing left current
    assert [s.attributes["seawall.retry.attempt"] for s in spans.get_finished_spans()] == [1, 2]
    assert calls_of(registry, "iter") == {"success_with_retry": 1}
    snapshot = registry.get("retry", "iter").snapshot()
    assert (snapshot.retries, snapshot.retries_by_error) == (1, {"ConnectionError": 1})


def test_tenacity_async_iterator_form_closes_its_span_and_counts(
    registry: seawall.Registry, spans: InMemorySpanExporter
) -> None:
    async def no_sleep(seconds: float) -> None:
        return None

    r = tenacity.AsyncRetrying(stop=tenacity.stop_after_attempt(3), sleep=no_sleep)
    instrument_retrying(r, "aiter", registry=registry)
    tracer = TracerProvider().get_tracer("test")

    async def fetch() -> int:
        async for attempt in r:
            if hasattr(attempt, "__aenter__"):  # tenacity >= 9.2
                async with attempt:
                    return 7
            with attempt:
                return 7
        raise AssertionError("unreachable")

    async def main() -> tuple[int, object]:
        value = await fetch()
        with tracer.start_as_current_span("later") as later:  # must not get the attempt as parent
            return value, later.parent  # type: ignore[attr-defined]

    value, parent = asyncio.run(asyncio.wait_for(main(), timeout=10))
    assert (value, parent) == (7, None)
    assert len(spans.get_finished_spans()) == 1
    assert calls_of(registry, "aiter") == {"success_without_retry": 1}


def test_tenacity_retry_with_and_patched_stop_are_counted(registry: seawall.Registry) -> None:
    @tenacity.retry(stop=tenacity.stop_after_attempt(5), sleep=lambda seconds: None)
    def always_fails() -> None:
        raise ConnectionError("down")

    instrument_retrying(always_fails, "fails", registry=registry)
    with pytest.raises(tenacity.RetryError):
        always_fails.retry_with(stop=tenacity.stop_after_attempt(2))()
    assert calls_of(registry, "fails") == {"failed_with_retry": 1}
    always_fails.retry.stop = tenacity.stop_after_attempt(3)  # as tenacity's own tests patch it
    with pytest.raises(tenacity.RetryError):
        always_fails()
    assert calls_of(registry, "fails") == {"failed_with_retry": 2}
    assert registry.get("retry", "fails").snapshot().retries == 1 + 2
    assert isinstance(always_fails.retry.stop, tenacity.stop_after_attempt)  # the user's object


@pytest.mark.parametrize("hook", ["wait", "after"])
def test_tenacity_raising_hook_ends_the_attempt_and_the_call(
    registry: seawall.Registry, spans: InMemorySpanExporter, hook: str
) -> None:
    def broken(state: tenacity.RetryCallState) -> float:
        raise RuntimeError(f"{hook} hook failed")

    slept: list[float] = []
    r = instrument_retrying(retrying(slept, **{hook: broken}), "hooked", registry=registry)
    with pytest.raises(RuntimeError, match="hook failed"):
        r(Flaky(1))
    assert trace.get_current_span() is trace.INVALID_SPAN
    assert len(spans.get_finished_spans()) == 1
    assert calls_of(registry, "hooked") == {"failed_without_retry": 1}


def tenacity_version() -> str:
    from importlib.metadata import version

    return version("tenacity")


def test_tenacity_instrumented_retrying_pickles(registry: seawall.Registry) -> None:
    r = tenacity.Retrying(stop=tenacity.stop_after_attempt(3), reraise=True)
    try:
        pickle.dumps(r)
    except (AttributeError, pickle.PicklingError) as exc:  # tenacity < 9.2's own default predicate
        pytest.skip(f"tenacity {tenacity_version()} cannot pickle its own Retrying: {exc}")
    instrument_retrying(r, "pickled", registry=registry)
    restored = pickle.loads(pickle.dumps(r))
    assert isinstance(restored, tenacity.Retrying)
    assert is_instrumented(restored)  # instrumented again on load, into the same registry
    assert isinstance(restored.stop, tenacity.stop_after_attempt)
    assert restored(Flaky(2)) == "ok"
    assert calls_of(registry, "pickled") == {"success_with_retry": 1}  # the same shadow
    assert repr(r).startswith("<Retrying object at")


def test_tenacity_strategies_called_directly_count_nothing(registry: seawall.Registry) -> None:
    r = instrument_retrying(
        tenacity.Retrying(stop=tenacity.stop_after_attempt(1)), "direct", registry=registry
    )
    state = tenacity.RetryCallState(r, fn=None, args=(), kwargs={})
    state.set_exception((ConnectionError, ConnectionError("x"), None))
    assert r.stop(state) is True
    assert r.retry(state) is True
    assert calls_of(registry, "direct") == {}


def test_tenacity_cancelled_sleep_counts_the_call(
    registry: seawall.Registry, spans: InMemorySpanExporter
) -> None:
    async def cancelled_sleep(seconds: float) -> None:
        raise asyncio.CancelledError

    async def down() -> None:
        raise ConnectionError("down")

    r = tenacity.AsyncRetrying(stop=tenacity.stop_after_attempt(3), sleep=cancelled_sleep)
    instrument_retrying(r, "cancelled", registry=registry)

    async def main() -> None:
        with pytest.raises(asyncio.CancelledError):
            await r(down)

    asyncio.run(asyncio.wait_for(main(), timeout=10))
    assert calls_of(registry, "cancelled") == {"failed_without_retry": 1}
    assert len(spans.get_finished_spans()) == 1


def test_tenacity_names_are_shared_and_checked(registry: seawall.Registry) -> None:
    first = instrument_retrying(tenacity.Retrying(), "shared", registry=registry)
    second = instrument_retrying(tenacity.Retrying(), "shared", registry=registry)
    first(ok)
    second(ok)
    assert calls_of(registry, "shared") == {"success_without_retry": 2}
    assert [item.name for item in registry.retries()] == ["shared"]
    seawall.Retry("native", registry=registry)
    with pytest.raises(ValueError, match="not a tenacity one"):
        instrument_retrying(tenacity.Retrying(), "native", registry=registry)


# -- pybreaker -------------------------------------------------------------------------------------


def test_pybreaker_starting_state_is_read_from_storage(
    registry: seawall.Registry, prom: CollectorRegistry
) -> None:
    storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_OPEN)  # as Redis shared by workers
    storage.opened_at = datetime.now(timezone.utc)
    cb = pybreaker.CircuitBreaker(fail_max=3, reset_timeout=60, state_storage=storage, name="shared")
    instrument_breaker(cb, registry=registry)
    state = "seawall_circuit_breaker_state"
    assert (
        prom.get_sample_value(state, {"breaker": "shared", "state": "open"}) == 1
    )  # CircuitBreakerOpen sees it
    assert prom.get_sample_value(state, {"breaker": "shared", "state": "closed"}) == 0
    snapshot = registry.get("breaker", "shared").snapshot()
    assert snapshot.state is S.OPEN
    assert snapshot.retry_after is not None
    assert 0 < snapshot.retry_after <= 60
    storage.state = pybreaker.STATE_CLOSED  # another worker closed it
    assert registry.get("breaker", "shared").state is S.CLOSED
    assert snapshot.transitions == {}


def test_pybreaker_close_on_closed_breaker_is_no_transition(
    registry: seawall.Registry, events: list[Event]
) -> None:
    cb = pybreaker.CircuitBreaker(name="steady")
    instrument_breaker(cb, registry=registry)
    cb.close()
    cb.open()
    cb.open()
    assert registry.get("breaker", "steady").snapshot().transitions == {(S.CLOSED, S.OPEN): 1}
    assert [e for e in events if isinstance(e, BreakerStateChanged)] == [
        BreakerStateChanged("steady", S.CLOSED, S.OPEN, "failures")
    ]


def test_pybreaker_call_async_rejections_are_counted(registry: seawall.Registry, events: list[Event]) -> None:
    from tornado import gen

    cb = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=60, name="tornado")
    instrument_breaker(cb, registry=registry)

    @gen.coroutine
    def down() -> object:
        yield gen.moment
        raise ConnectionError("down")

    @gen.coroutine
    def scenario() -> object:
        with pytest.raises(pybreaker.CircuitBreakerError):  # the trip
            yield cb.call_async(down)
        for _ in range(2):
            with pytest.raises(pybreaker.CircuitBreakerError):  # rejected
                yield cb.call_async(down)

    async def main() -> None:
        await scenario()

    asyncio.run(asyncio.wait_for(main(), timeout=10))
    calls = registry.get("breaker", "tornado").snapshot().calls
    assert (calls["failure"], calls["rejected"]) == (1, 2)
    assert sum(isinstance(e, BreakerCallRejected) for e in events) == 2


def test_pybreaker_durations_when_the_registry_records_them(registry: seawall.Registry) -> None:
    cb = pybreaker.CircuitBreaker(name="timed")
    instrument_breaker(cb, registry=registry)
    registry.record_durations((0.5, 1.0))
    cb.call(ok)
    durations = registry.get("breaker", "timed").snapshot().durations
    assert durations["success"].count == 1
    assert durations["success"].bounds == (0.5, 1.0)
    assert "failure" not in durations


def test_pybreaker_broken_storage_is_counted_not_raised(registry: seawall.Registry) -> None:
    class BrokenStorage(pybreaker.CircuitMemoryStorage):
        broken = False

        @property
        def state(self) -> str:
            if self.broken:
                raise OSError("storage down")
            return super().state

        @state.setter
        def state(self, value: str) -> None:
            pybreaker.CircuitMemoryStorage.state.fset(self, value)  # type: ignore[attr-defined]

    storage = BrokenStorage(pybreaker.STATE_CLOSED)
    cb = pybreaker.CircuitBreaker(state_storage=storage, name="broken")
    instrument_breaker(cb, registry=registry)
    storage.broken = True
    assert registry.get("breaker", "broken").snapshot().state is S.CLOSED  # the last state seen
    assert registry.bus.instrumentation_errors() == {"pybreaker-adapter": 1}


def test_tenacity_retry_error_callback_after_rejected_results(
    registry: seawall.Registry, events: list[Event]
) -> None:
    r = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(2),
        retry=tenacity.retry_if_result(lambda value: value is None),
        retry_error_callback=lambda state: "fallback",
        sleep=lambda seconds: None,
    )
    instrument_retrying(r, "fallback", registry=registry)
    assert r(lambda: None) == "fallback"
    assert calls_of(registry, "fallback") == {"failed_with_retry": 1}
    finished = [
        (e.attempt, e.error_type, e.will_retry) for e in events if isinstance(e, RetryAttemptFinished)
    ]
    assert finished == [(1, RETRYABLE_RESULT, True), (2, RETRYABLE_RESULT, False)]


def test_tenacity_tornado_retrying_is_counted(registry: seawall.Registry) -> None:
    from tornado import gen

    flaky = Flaky(1)

    @gen.coroutine
    def fetch() -> object:
        yield gen.moment
        return flaky()

    @gen.coroutine
    def no_sleep(seconds: float) -> object:
        yield gen.moment

    r = tenacity.TornadoRetrying(stop=tenacity.stop_after_attempt(3), sleep=no_sleep)
    instrument_retrying(r, "tornado", registry=registry)

    async def main() -> object:
        return await r(fetch)

    assert asyncio.run(asyncio.wait_for(main(), timeout=10)) == "ok"
    assert calls_of(registry, "tornado") == {"success_with_retry": 1}


def test_adapters_in_the_status_routes(registry: seawall.Registry) -> None:
    """The stand-ins are what the web layer reads and acts on, like seawall's own primitives."""
    from starlette.testclient import TestClient

    from seawall.starlette import create_app

    storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_OPEN)
    storage.opened_at = datetime.now(timezone.utc)
    cb = pybreaker.CircuitBreaker(name="db", state_storage=storage)
    instrument_breaker(cb, registry=registry)
    instrument_retrying(tenacity.Retrying(), "fetch", registry=registry)(ok)
    token = "adapter-test-token"
    app = create_app(
        registry=registry, prometheus_registry=CollectorRegistry(), admin_token=token, metrics=False
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/api/resilience/breakers").json()["breakers"][0]["state"] == "open"
        ready = client.get("/health/ready").json()
        assert (ready["status"], ready["breakers"]["open"]) == ("degraded", ["db"])
        retries = client.get("/api/resilience/retries").json()["retries"]
        assert retries[0]["calls"]["success_without_retry"] == 1
        reset = client.post("/api/resilience/breakers/db/reset", headers={"authorization": f"Bearer {token}"})
        assert reset.status_code == 200
        # pybreaker has no "let everything through" state: a clear 409, not a 500
        disable = client.post(
            "/api/resilience/breakers/db/disable", headers={"authorization": f"Bearer {token}"}
        )
        assert disable.status_code == 409
        assert disable.json()["error_code"] == "unsupported_action"
    assert cb.current_state == pybreaker.STATE_CLOSED
    assert registry.get("breaker", "db").snapshot().transitions == {(S.OPEN, S.CLOSED): 1}


def test_tenacity_iterator_left_by_an_error_outside_the_attempt(
    registry: seawall.Registry, spans: InMemorySpanExporter
) -> None:
    r = instrument_retrying(tenacity.Retrying(stop=tenacity.stop_after_attempt(3)), "left", registry=registry)

    def leave() -> None:
        for attempt in r:
            with attempt:
                pass
            raise KeyError("after the attempt, before tenacity decided")

    with pytest.raises(KeyError):
        leave()
    assert trace.get_current_span() is trace.INVALID_SPAN
    assert len(spans.get_finished_spans()) == 1
    assert calls_of(registry, "left") == {"success_without_retry": 1}  # the attempt's own outcome


def test_tenacity_raising_before_hook_fails_the_call(registry: seawall.Registry, events: list[Event]) -> None:
    def before(state: tenacity.RetryCallState) -> None:
        raise RuntimeError("before hook failed")

    r = instrument_retrying(tenacity.Retrying(before=before), "before", registry=registry)
    with pytest.raises(RuntimeError, match="before hook"):
        r(ok)
    assert calls_of(registry, "before") == {"failed_without_retry": 1}
    assert not any(isinstance(e, RetryAttemptStarted) for e in events)
