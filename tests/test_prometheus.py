"""seawall.prometheus against the event contract: scripted events in, parsed expositions out."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics

import seawall
from exposition import scrape
from seawall import otel
from seawall import prometheus as sp
from seawall.events import (
    BreakerCallCompleted,
    BreakerCallRejected,
    BreakerStateChanged,
    ErrorRecorded,
    FallbackUsed,
    FeatureToggled,
    PrimitiveRegistered,
    RetryAttemptFinished,
    RetryAttemptStarted,
    RetryCompleted,
)
from seawall._labels import OTHER, LabelGuard
from seawall._snapshots import BreakerSnapshot

S = seawall.BreakerState
OC = seawall.CallOutcome


def value(prom: CollectorRegistry, name: str, **labels: str) -> float | None:
    return scrape(prom).get((name, tuple(sorted(labels.items()))))


def test_breaker_scenario_exact_series(
    inst: sp.PrometheusInstrumentation, prom: CollectorRegistry, registry: seawall.Registry
) -> None:
    bus = registry.bus
    bus.publish(PrimitiveRegistered("breaker", "db"))
    # zero series exist before any call
    assert value(prom, "seawall_circuit_breaker_calls_total", breaker="db", outcome="rejected") == 0
    assert value(prom, "seawall_circuit_breaker_state", breaker="db", state="closed") == 1
    assert value(prom, "seawall_circuit_breaker_failure_ratio", breaker="db") == 0
    bus.publish(BreakerCallCompleted("db", OC.SUCCESS, 0.003, None))
    bus.publish(BreakerCallCompleted("db", OC.SUCCESS, 0.2, None))
    bus.publish(BreakerCallCompleted("db", OC.FAILURE, 1.5, "TimeoutError"))
    bus.publish(BreakerStateChanged("db", S.CLOSED, S.OPEN, "failures"))
    bus.publish(BreakerCallRejected("db", S.OPEN, 4.0))
    bus.publish(BreakerCallRejected("db", S.OPEN, 3.0))
    found = scrape(prom)

    def get(name: str, **labels: str) -> float | None:
        return found.get((name, tuple(sorted(labels.items()))))

    assert get("seawall_circuit_breaker_calls_total", breaker="db", outcome="success") == 2
    assert get("seawall_circuit_breaker_calls_total", breaker="db", outcome="failure") == 1
    assert get("seawall_circuit_breaker_calls_total", breaker="db", outcome="rejected") == 2
    assert get("seawall_circuit_breaker_calls_total", breaker="db", outcome="ignored") == 0
    for state in S:
        expected = 1.0 if state is S.OPEN else 0.0
        assert get("seawall_circuit_breaker_state", breaker="db", state=state.value) == expected
    assert (
        get("seawall_circuit_breaker_transitions_total", breaker="db", from_state="closed", to_state="open")
        == 1
    )
    hist = "seawall_circuit_breaker_call_duration_seconds"
    assert get(f"{hist}_count", breaker="db", outcome="success") == 2
    assert get(f"{hist}_sum", breaker="db", outcome="success") == pytest.approx(0.203)
    assert get(f"{hist}_bucket", breaker="db", outcome="success", le="0.005") == 1
    assert get(f"{hist}_bucket", breaker="db", outcome="success", le="0.25") == 2
    assert get(f"{hist}_bucket", breaker="db", outcome="failure", le="1.0") == 0
    assert get(f"{hist}_bucket", breaker="db", outcome="failure", le="2.5") == 1
    assert get(f"{hist}_bucket", breaker="db", outcome="failure", le="30.0") == 1
    assert get(f"{hist}_bucket", breaker="db", outcome="failure", le="+Inf") == 1
    assert get("seawall_build_info", version=seawall.__version__) == 1


def test_retry_error_feature_series(
    inst: sp.PrometheusInstrumentation, prom: CollectorRegistry, registry: seawall.Registry
) -> None:
    bus = registry.bus
    bus.publish(PrimitiveRegistered("retry", "fetch"))
    assert value(prom, "seawall_retry_calls_total", retry="fetch", outcome="failed_with_retry") == 0
    bus.publish(RetryAttemptStarted("fetch", 1))
    bus.publish(
        RetryAttemptFinished("fetch", 1, 0.1, "ConnectionError", seawall.ErrorCategory.TRANSIENT, True, 0.2)
    )
    bus.publish(RetryAttemptStarted("fetch", 2))
    bus.publish(
        RetryAttemptFinished("fetch", 2, 0.1, "TimeoutError", seawall.ErrorCategory.TRANSIENT, True, 0.4)
    )
    bus.publish(RetryAttemptStarted("fetch", 3))
    bus.publish(RetryAttemptFinished("fetch", 3, 0.1, None, None, False, 0.0))
    bus.publish(RetryCompleted("fetch", seawall.RetryOutcome.SUCCESS_WITH_RETRY, 3, 0.9, None))
    bus.publish(ErrorRecorded("fetch", "ConnectionError", seawall.ErrorCategory.TRANSIENT))
    bus.publish(FeatureToggled("recs", False, "failures"))
    bus.publish(FallbackUsed("recs", seawall.FallbackReason.CIRCUIT_OPEN, None))
    assert value(prom, "seawall_retry_calls_total", retry="fetch", outcome="success_with_retry") == 1
    assert value(prom, "seawall_retry_calls_total", retry="fetch", outcome="success_without_retry") == 0
    assert value(prom, "seawall_retries_total", retry="fetch", error_type="ConnectionError") == 1
    assert value(prom, "seawall_retries_total", retry="fetch", error_type="TimeoutError") == 1
    assert (
        value(
            prom, "seawall_errors_total", source="fetch", error_type="ConnectionError", category="transient"
        )
        == 1
    )
    assert value(prom, "seawall_feature_enabled", feature="recs") == 0
    assert value(prom, "seawall_fallbacks_total", feature="recs", reason="circuit_open") == 1
    assert value(prom, "seawall_fallbacks_total", feature="recs", reason="error") == 0
    bus.publish(FeatureToggled("recs", True, "recovered"))
    assert value(prom, "seawall_feature_enabled", feature="recs") == 1


def test_instrumentation_errors_counted(
    inst: sp.PrometheusInstrumentation, prom: CollectorRegistry, registry: seawall.Registry
) -> None:
    class Broken:
        component = "broken-listener"

        def __call__(self, event: object) -> None:
            raise RuntimeError("boom")

    registry.bus.subscribe(Broken())
    registry.bus.publish(BreakerCallCompleted("db", OC.SUCCESS, 0.01, None))
    registry.bus.publish(BreakerCallCompleted("db", OC.SUCCESS, 0.01, None))
    assert value(prom, "seawall_instrumentation_errors_total", component="broken-listener") == 2
    # the failing listener never stopped ours
    assert value(prom, "seawall_circuit_breaker_calls_total", breaker="db", outcome="success") == 2


def test_earlier_errors_are_carried_over(prom: CollectorRegistry, registry: seawall.Registry) -> None:
    registry.bus.report_error("otlp", ConnectionError("down"))
    instrumentation = sp.instrument(prom, seawall_registry=registry)
    try:
        assert value(prom, "seawall_instrumentation_errors_total", component="otlp") == 1
    finally:
        instrumentation.close()


@dataclass
class FakeBreaker:
    """Just what the registry and the exporter read: kind, name, config, snapshot()."""

    name: str
    state: seawall.BreakerState = S.CLOSED
    failure_rate: float | None = None
    kind: str = "breaker"
    reads: int = 0

    @property
    def config(self) -> dict[str, object]:
        return {}

    def snapshot(self) -> BreakerSnapshot:
        self.reads += 1
        return BreakerSnapshot(
            name=self.name,
            state=self.state,
            failure_threshold=5,
            reset_timeout=30.0,
            consecutive_failures=0,
            failure_rate=self.failure_rate,
            failure_rate_threshold=0.5,
            window_calls=10,
            retry_after=None,
            seconds_in_state=1.0,
            half_open_in_flight=0,
        )


def test_state_of_breakers_made_before_instrument_and_at_scrape(
    prom: CollectorRegistry, registry: seawall.Registry
) -> None:
    early = FakeBreaker("early", state=S.OPEN, failure_rate=0.75)
    registry.add(early)
    instrumentation = sp.instrument(prom, seawall_registry=registry)
    try:
        assert value(prom, "seawall_circuit_breaker_state", breaker="early", state="open") == 1
        assert value(prom, "seawall_circuit_breaker_state", breaker="early", state="closed") == 0
        assert value(prom, "seawall_circuit_breaker_failure_ratio", breaker="early") == 0.75
        # a state read at scrape time sees what the breaker says now (the lazy open -> half_open)
        early.state = S.HALF_OPEN
        early.failure_rate = 0.5
        assert value(prom, "seawall_circuit_breaker_state", breaker="early", state="half_open") == 1
        assert value(prom, "seawall_circuit_breaker_state", breaker="early", state="open") == 0
        assert value(prom, "seawall_circuit_breaker_failure_ratio", breaker="early") == 0.5
        late = FakeBreaker("late", state=S.FORCED_OPEN)
        registry.add(late)  # PrimitiveRegistered: series at once
        assert value(prom, "seawall_circuit_breaker_state", breaker="late", state="forced_open") == 1
    finally:
        instrumentation.close()


def test_broken_snapshot_is_counted_not_raised(prom: CollectorRegistry, registry: seawall.Registry) -> None:
    class Broken(FakeBreaker):
        def snapshot(self) -> BreakerSnapshot:
            raise RuntimeError("snapshot failed")

    registry.add(Broken("bad"))
    instrumentation = sp.instrument(prom, seawall_registry=registry)
    try:
        generate_latest(prom)
        assert (value(prom, "seawall_instrumentation_errors_total", component="prometheus") or 0) >= 2
    finally:
        instrumentation.close()


def test_idempotent_and_close(prom: CollectorRegistry, registry: seawall.Registry) -> None:
    first = sp.instrument(prom, seawall_registry=registry)
    assert sp.instrument(prom, seawall_registry=registry) is first
    assert len(registry.bus.listeners) == 1
    with pytest.raises(ValueError, match="already instrumented"):
        sp.instrument(prom, seawall_registry=seawall.Registry())
    with pytest.raises(ValueError, match="already instrumented"):
        sp.instrument(prom, seawall_registry=registry, buckets=(0.1, 1.0))
    registry.bus.publish(BreakerCallCompleted("db", OC.SUCCESS, 0.01, None))
    text = generate_latest(prom).decode()
    assert text.count("# TYPE seawall_circuit_breaker_calls_total counter") == 1
    first.close()
    first.close()
    assert registry.bus.listeners == ()
    assert "seawall_" not in generate_latest(prom).decode()
    second = sp.instrument(prom, seawall_registry=registry)
    assert second is not first
    second.close()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"buckets": ()}, ValueError, "buckets"),
        ({"buckets": (1.0, 0.5)}, ValueError, "buckets"),
        ({"buckets": "1,2"}, TypeError, "buckets"),
        ({"max_label_values": 0}, ValueError, "max_label_values must be >= 1, got 0"),
        ({"max_label_values": 2.5}, TypeError, "max_label_values"),
        ({"seawall_registry": object()}, TypeError, "seawall_registry"),
    ],
)
def test_bad_settings(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        sp.instrument(CollectorRegistry(), **kwargs)  # type: ignore[arg-type]


def test_custom_buckets(prom: CollectorRegistry, registry: seawall.Registry) -> None:
    instrumentation = sp.instrument(prom, seawall_registry=registry, buckets=(0.5, 2))
    try:
        registry.bus.publish(BreakerCallCompleted("db", OC.SUCCESS, 1.0, None))
        les = {
            labels["le"]
            for (name, items) in scrape(prom)
            if name.endswith("_bucket")
            for labels in [dict(items)]
            if labels.get("outcome") == "success"
        }
        assert les == {"0.5", "2.0", "+Inf"}
    finally:
        instrumentation.close()


def test_cardinality_cap_collapses_to_other(prom: CollectorRegistry, registry: seawall.Registry) -> None:
    instrumentation = sp.instrument(prom, seawall_registry=registry, max_label_values=3)
    try:
        for index in range(5):
            registry.bus.publish(BreakerCallCompleted(f"b{index}", OC.SUCCESS, 0.01, None))
        registry.bus.publish(BreakerCallCompleted("b4", OC.SUCCESS, 0.01, None))
        found = scrape(prom)
        breakers = {
            dict(labels)["breaker"]
            for (name, labels) in found
            if name == "seawall_circuit_breaker_calls_total"
        }
        assert breakers == {"b0", "b1", "b2", OTHER}
        assert value(prom, "seawall_circuit_breaker_calls_total", breaker=OTHER, outcome="success") == 3
        overflow = "seawall_label_overflow_total"
        # two distinct names refused, counted once each per metric
        assert value(prom, overflow, metric="seawall_circuit_breaker_calls_total", label="breaker") == 2
        assert value(prom, overflow, metric="seawall_circuit_breaker_state", label="breaker") == 2
        for index in range(5):
            registry.bus.publish(ErrorRecorded("svc", f"Error{index}", seawall.ErrorCategory.UNKNOWN))
        assert value(prom, overflow, metric="seawall_errors_total", label="error_type") == 2
        assert value(prom, "seawall_errors_total", source="svc", error_type=OTHER, category="unknown") == 2
    finally:
        instrumentation.close()


def test_label_guard_unit() -> None:
    counted: list[tuple[str, str]] = []
    guard = LabelGuard("m", "l", 2, lambda metric, label: counted.append((metric, label)))
    assert [guard.admit(v) for v in ["a", "b", "c", "a", "c", "d"]] == ["a", "b", OTHER, "a", OTHER, OTHER]
    assert counted == [("m", "l"), ("m", "l")]
    assert guard.admitted() == frozenset({"a", "b"})
    # memory stays bounded: past 10x the cap, refusals are counted each time
    for index in range(30):
        guard.admit(f"x{index}")
    assert len(counted) == 32
    with pytest.raises(ValueError, match="got -1"):
        LabelGuard("m", "l", -1)


@pytest.mark.parametrize("name", ['quo"te', "new\nline", "back\\slash", "ünïcødé ✓", "sp ace{}=,"])
def test_awkward_names_round_trip(prom: CollectorRegistry, registry: seawall.Registry, name: str) -> None:
    instrumentation = sp.instrument(prom, seawall_registry=registry)
    try:
        registry.bus.publish(BreakerCallCompleted(name, OC.FAILURE, 0.01, "ValueError"))
        assert value(prom, "seawall_circuit_breaker_calls_total", breaker=name, outcome="failure") == 1
        text = generate_openmetrics(prom).decode()
        families = {f.name: f for f in parse_openmetrics(text)}
        calls = families["seawall_circuit_breaker_calls"]
        assert any(
            s.labels == {"breaker": name, "outcome": "failure"} and s.value == 1 for s in calls.samples
        )
    finally:
        instrumentation.close()


def test_exemplars_with_sampled_span(
    prom: CollectorRegistry, registry: seawall.Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    # Whether tracing is active is process-wide (other tests may have traced the default registry):
    # start from "not active" explicitly.
    monkeypatch.setattr(sp, "_tracing_active", lambda trace: False)
    inst = sp.instrument(prom, seawall_registry=registry)
    monkeypatch.undo()
    provider = TracerProvider()
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("early"):  # tracing not active yet: no lookup, no exemplar
        registry.bus.publish(BreakerCallCompleted("db", OC.SUCCESS, 7.0, None))
    tracing = otel.instrument(provider, seawall_registry=registry)
    inst.refresh()  # every scrape re-checks whether tracing became active
    with tracer.start_as_current_span("op") as span:
        registry.bus.publish(BreakerCallCompleted("db", OC.SUCCESS, 0.02, None))
        context = span.get_span_context()
    unsampled = TracerProvider(sampler=ALWAYS_OFF).get_tracer("test")
    with unsampled.start_as_current_span("op"):
        registry.bus.publish(BreakerCallCompleted("db", OC.FAILURE, 0.02, "E"))
    text = generate_openmetrics(prom).decode()
    families = {f.name: f for f in parse_openmetrics(text)}
    buckets = [
        s
        for s in families["seawall_circuit_breaker_call_duration_seconds"].samples
        if s.name.endswith("_bucket") and s.exemplar is not None
    ]
    assert len(buckets) == 1
    assert buckets[0].labels["outcome"] == "success"
    assert buckets[0].labels["le"] == "0.025"
    assert buckets[0].exemplar.labels == {
        "trace_id": format(context.trace_id, "032x"),
        "span_id": format(context.span_id, "016x"),
    }
    assert buckets[0].exemplar.value == 0.02
    # the plain text format carries no exemplars
    assert "trace_id" not in generate_latest(prom).decode()
    tracing.close()
    provider.shutdown()
    inst.close()


def test_concurrent_calls_are_counted_exactly(
    inst: sp.PrometheusInstrumentation, prom: CollectorRegistry, registry: seawall.Registry
) -> None:
    import threading

    def worker() -> None:
        for index in range(2000):
            outcome = OC.SUCCESS if index % 4 else OC.FAILURE
            registry.bus.publish(BreakerCallCompleted("shared", outcome, 0.001 * (index % 50), None))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert value(prom, "seawall_circuit_breaker_calls_total", breaker="shared", outcome="success") == 6000
    assert value(prom, "seawall_circuit_breaker_calls_total", breaker="shared", outcome="failure") == 2000
    hist = "seawall_circuit_breaker_call_duration_seconds"
    assert value(prom, f"{hist}_count", breaker="shared", outcome="success") == 6000
    assert value(prom, f"{hist}_bucket", breaker="shared", outcome="success", le="+Inf") == 6000


def test_refresh_all(prom: CollectorRegistry, registry: seawall.Registry) -> None:
    breaker = FakeBreaker("lazy", state=S.OPEN)
    registry.add(breaker)
    instrumentation = sp.instrument(prom, seawall_registry=registry)
    try:
        reads = breaker.reads
        sp.refresh_all()
        assert breaker.reads == reads + 1
    finally:
        instrumentation.close()
    sp.refresh_all()  # closed instrumentations are skipped
    assert breaker.reads == reads + 1


def test_works_without_opentelemetry(monkeypatch: pytest.MonkeyPatch, registry: seawall.Registry) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # "import opentelemetry" now fails
    monkeypatch.setitem(sys.modules, "opentelemetry.trace", None)
    prom = CollectorRegistry()
    instrumentation = sp.instrument(prom, seawall_registry=registry)
    try:
        registry.bus.publish(BreakerCallCompleted("db", OC.SUCCESS, 0.01, None))
        text = generate_openmetrics(prom).decode()
        assert 'seawall_circuit_breaker_calls_total{breaker="db",outcome="success"} 1.0' in text
        assert "trace_id" not in text
    finally:
        instrumentation.close()
