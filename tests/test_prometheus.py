"""seawall.prometheus reads the primitives: real calls in, parsed expositions out, equal to snapshots."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics

import seawall
from conftest import FakeClock, run_threads
from exposition import get, scrape, transitions
from seawall import otel
from seawall import prometheus as sp
from seawall.core.labels import OTHER, LabelGuard
from seawall.metrics.contract import by_name

S = seawall.BreakerState

WORST_FIRST = tuple(S(v) for v in by_name("seawall_circuit_breaker_state").worst_first)


def boom() -> None:
    raise OSError("down")


def call(target: Any, fn: Any) -> None:
    with contextlib.suppress(Exception):
        target.call(fn)


# -- the property: the exposition equals the primitives' snapshots, `_other` included ----------------

OPS = st.lists(
    st.tuples(
        st.sampled_from(
            ["ok", "fail", "ignored", "tick", "reset", "force_open", "disable", "retry_ok", "retry_fail"]
        ),
        st.integers(min_value=0, max_value=3),
    ),
    max_size=60,
)


def expected_breaker_series(snapshots: list[seawall.BreakerSnapshot]) -> dict[str, Any]:
    """What one label's series must show for the breakers folded into it."""
    worst = min((snap.state for snap in snapshots), key=WORST_FIRST.index)
    calls = {outcome: sum(snap.calls[outcome] for snap in snapshots) for outcome in snapshots[0].calls}
    transitions: dict[tuple[str, str], int] = {}
    for snap in snapshots:
        for (frm, to), count in snap.transitions.items():
            transitions[(frm.value, to.value)] = transitions.get((frm.value, to.value), 0) + count
    successes = sum(snap.durations["success"].count for snap in snapshots)
    return {"state": worst, "calls": calls, "transitions": transitions, "success_count": successes}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_exposition_equals_snapshots(ops: list[tuple[str, int]]) -> None:
    clock = FakeClock()
    registry = seawall.Registry()
    prom = CollectorRegistry()
    instrumentation = sp.instrument(prom, seawall_registry=registry, max_label_values=2)
    breakers = [
        seawall.CircuitBreaker(
            f"b{i}", failure_threshold=2, reset_timeout=5, clock=clock, registry=registry, ignore_on=KeyError
        )
        for i in range(4)
    ]
    retries = [
        seawall.Retry(f"r{i}", attempts=2, sleep=lambda s: None, clock=clock, registry=registry)
        for i in range(3)
    ]
    features = [
        seawall.Feature(
            f"f{i}", fallback=0, failure_threshold=2, reset_timeout=5, clock=clock, registry=registry
        )
        for i in range(3)
    ]
    seen: list[object] = []
    for kind, index in ops:
        breaker, retry, feature = breakers[index], retries[index % 3], features[index % 3]
        if kind == "ok":
            call(breaker, lambda: 1)
        elif kind == "fail":
            call(breaker, boom)
        elif kind == "ignored":
            call(breaker, lambda: {}["missing"])
        elif kind == "tick":
            clock.advance(3)
        elif kind == "reset":
            breaker.reset()
        elif kind == "force_open":
            breaker.force_open()
        elif kind == "disable":
            breaker.disable()
        elif kind == "retry_ok":
            call(retry, lambda: 1)
        elif kind == "retry_fail":
            call(retry, boom)
        elif kind == "feature_ok":
            call(feature, lambda: 1)
        elif kind == "feature_fail":
            call(feature, boom)
        elif feature.manually_disabled:
            feature.enable()
        else:
            feature.disable()
    before = [b.snapshot() for b in breakers]
    unsubscribe = registry.bus.subscribe(seen.append)
    found = scrape(prom)
    unsubscribe()
    assert seen == [], "a scrape published events"
    assert [f.snapshot().enabled for f in features] == [f.enabled for f in features]
    assert [b.snapshot().state for b in breakers] == [snap.state for snap in before], "a scrape moved a state"
    # b0 and b1 have their own series; b2 and b3 are folded into _other
    groups = {"b0": before[:1], "b1": before[1:2], OTHER: before[2:]}
    for label, snaps in groups.items():
        want = expected_breaker_series(snaps)
        for state in S:
            value = get(found, "seawall_circuit_breaker_state", breaker=label, state=state.value)
            assert value == (1.0 if state is want["state"] else 0.0), (label, state)
        for outcome, count in want["calls"].items():
            assert get(found, "seawall_circuit_breaker_calls_total", breaker=label, outcome=outcome) == count
        for (frm, to), count in want["transitions"].items():
            assert transitions(found, label, frm, to) == count
        got = get(
            found, "seawall_circuit_breaker_call_duration_seconds_count", breaker=label, outcome="success"
        )
        assert got == want["success_count"]
    retry_snaps = [r.snapshot() for r in retries]
    for label, snaps in {"r0": retry_snaps[:1], "r1": retry_snaps[1:2], OTHER: retry_snaps[2:]}.items():
        for outcome in seawall.RetryOutcome:
            got = get(found, "seawall_retry_calls_total", retry=label, outcome=outcome.value)
            assert got == sum(snap.calls[outcome.value] for snap in snaps)
        got = get(found, "seawall_retries_total", retry=label, error_type="OSError")
        assert (got or 0) == sum(snap.retries_by_error.get("OSError", 0) for snap in snaps)
    feature_snaps = [f.snapshot() for f in features]
    for label, fsnaps in {
        "f0": feature_snaps[:1],
        "f1": feature_snaps[1:2],
        OTHER: feature_snaps[2:],
    }.items():
        enabled = min(1.0 if snap.enabled else 0.0 for snap in fsnaps)
        assert get(found, "seawall_feature_enabled", feature=label) == enabled
        for reason in seawall.FallbackReason:
            got = get(found, "seawall_fallbacks_total", feature=label, reason=reason.value)
            assert got == sum(snap.fallbacks[reason.value] for snap in fsnaps)
    instrumentation.close()


# -- one behaviour each -----------------------------------------------------------------------------------


def test_zero_series_before_any_call(
    inst: sp.PrometheusInstrumentation, prom: CollectorRegistry, registry: seawall.Registry
) -> None:
    seawall.CircuitBreaker("db", registry=registry)
    seawall.Retry("fetch", registry=registry)
    found = scrape(prom)
    assert get(found, "seawall_circuit_breaker_calls_total", breaker="db", outcome="rejected") == 0
    assert get(found, "seawall_circuit_breaker_state", breaker="db", state="closed") == 1
    # no sliding window, no failure ratio: the series is left out rather than reading 0
    assert get(found, "seawall_circuit_breaker_failure_ratio", breaker="db") is None
    assert (
        get(found, "seawall_circuit_breaker_call_duration_seconds_count", breaker="db", outcome="success")
        == 0
    )
    assert get(found, "seawall_retry_calls_total", retry="fetch", outcome="failed_with_retry") == 0


def test_breakers_made_before_instrument_are_read(
    prom: CollectorRegistry, registry: seawall.Registry, fake_clock: FakeClock
) -> None:
    breaker = seawall.CircuitBreaker("early", failure_threshold=1, clock=fake_clock, registry=registry)
    call(breaker, boom)
    instrumentation = sp.instrument(prom, seawall_registry=registry)
    found = scrape(prom)
    assert get(found, "seawall_circuit_breaker_state", breaker="early", state="open") == 1
    assert get(found, "seawall_circuit_breaker_calls_total", breaker="early", outcome="failure") == 1
    assert transitions(found, "early", "closed", "open") == 1
    instrumentation.close()


def test_open_breaker_past_its_timeout_reads_open_until_a_call(
    inst: sp.PrometheusInstrumentation,
    prom: CollectorRegistry,
    registry: seawall.Registry,
    fake_clock: FakeClock,
) -> None:
    breaker = seawall.CircuitBreaker(
        "db", failure_threshold=1, reset_timeout=10, clock=fake_clock, registry=registry
    )
    call(breaker, boom)
    fake_clock.advance(11)
    for _ in range(3):  # scraping does not perform the transition, and does not count one
        found = scrape(prom)
        assert get(found, "seawall_circuit_breaker_state", breaker="db", state="open") == 1
        assert transitions(found, "db", "open", "half_open") is None
    call(breaker, lambda: 1)  # the probe
    found = scrape(prom)
    assert get(found, "seawall_circuit_breaker_state", breaker="db", state="closed") == 1
    assert transitions(found, "db", "open", "half_open") == 1


def test_other_shows_the_worst_state(
    prom: CollectorRegistry, registry: seawall.Registry, fake_clock: FakeClock
) -> None:
    instrumentation = sp.instrument(prom, seawall_registry=registry, max_label_values=1)
    seawall.CircuitBreaker("first", registry=registry)
    seawall.CircuitBreaker("closed", registry=registry)
    tripped = seawall.CircuitBreaker("tripped", failure_threshold=1, clock=fake_clock, registry=registry)
    call(tripped, boom)  # the last writer is not what decides: the worst state is shown
    seawall.CircuitBreaker("later", registry=registry).disable()
    found = scrape(prom)
    assert get(found, "seawall_circuit_breaker_state", breaker=OTHER, state="open") == 1
    assert get(found, "seawall_circuit_breaker_state", breaker=OTHER, state="disabled") == 0
    assert get(found, "seawall_circuit_breaker_calls_total", breaker=OTHER, outcome="failure") == 1
    assert (
        get(found, "seawall_label_overflow_total", metric="seawall_circuit_breaker_state", label="breaker")
        == 3
    )
    instrumentation.close()


def test_errors_and_fallbacks_are_read(
    inst: sp.PrometheusInstrumentation, prom: CollectorRegistry, registry: seawall.Registry
) -> None:
    registry.errors.record(TimeoutError("slow"), source="payments")
    registry.errors.record(TimeoutError("slow"), source="payments")
    own = seawall.ErrorAggregator(registry=registry)
    own.record(PermissionError("no"), source="auth")
    feature = seawall.Feature("recs", fallback=[], registry=registry)
    feature.call(boom)
    feature.disable()
    feature.call(lambda: [1])
    registry.errors.clear()  # the window forgets; counters must not
    found = scrape(prom)
    assert (
        get(found, "seawall_errors_total", source="payments", error_type="TimeoutError", category="transient")
        == 2
    )
    assert (
        get(found, "seawall_errors_total", source="auth", error_type="PermissionError", category="auth") == 1
    )
    assert get(found, "seawall_fallbacks_total", feature="recs", reason="error") == 1
    assert get(found, "seawall_fallbacks_total", feature="recs", reason="disabled") == 1
    assert get(found, "seawall_feature_enabled", feature="recs") == 0


def test_listener_failures_one_count_for_bus_and_metric(
    inst: sp.PrometheusInstrumentation, prom: CollectorRegistry, registry: seawall.Registry
) -> None:
    def broken(event: object) -> None:
        raise RuntimeError("listener bug")

    broken.component = "broken-listener"  # type: ignore[attr-defined]
    registry.bus.subscribe(broken)
    reports: list[object] = []
    registry.bus.subscribe(reports.append, events=[seawall.events.InstrumentationFailed])
    breaker = seawall.CircuitBreaker("db", registry=registry)
    for _ in range(3):
        breaker.call(lambda: 1)  # the call goes on
    counted = registry.bus.instrumentation_errors()["broken-listener"]
    assert counted == get(scrape(prom), "seawall_instrumentation_errors_total", component="broken-listener")
    assert counted == len(reports)


def test_raising_base_exception_listener_never_reaches_the_caller(registry: seawall.Registry) -> None:
    class Odd(BaseException):
        pass

    def broken(event: object) -> None:
        raise Odd

    registry.bus.subscribe(broken)
    assert seawall.CircuitBreaker("db", registry=registry).call(lambda: 7) == 7
    assert registry.bus.instrumentation_errors() == {"function": 2}  # registration and the call


def test_broken_snapshot_is_counted_not_raised(
    inst: sp.PrometheusInstrumentation, prom: CollectorRegistry, registry: seawall.Registry
) -> None:
    class Broken:
        kind, name, config = "breaker", "broken", {}

        def snapshot(self) -> None:
            raise RuntimeError("bad")

    registry.add(Broken())  # type: ignore[arg-type]
    text = generate_latest(prom).decode()
    assert "seawall_build_info" in text
    assert registry.bus.instrumentation_errors()["prometheus"] == 1


def test_idempotent_and_close(prom: CollectorRegistry, registry: seawall.Registry) -> None:
    first = sp.instrument(prom, seawall_registry=registry)
    assert sp.instrument(prom, seawall_registry=registry) is first
    with pytest.raises(ValueError, match="already instrumented"):
        sp.instrument(prom, seawall_registry=registry, max_label_values=5)
    assert registry.bus.listeners == ()  # reading needs no listener
    first.close()
    first.close()
    assert "seawall_" not in generate_latest(prom).decode()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"buckets": ()}, ValueError, "buckets"),
        ({"buckets": (1.0, 0.5)}, ValueError, "buckets"),
        ({"buckets": "1,2"}, TypeError, "buckets"),
        ({"max_label_values": 0}, ValueError, r"max_label_values must be in \[1, 1_000_000_000\], got 0"),
        ({"max_label_values": 2.5}, TypeError, "max_label_values"),
        ({"seawall_registry": object()}, TypeError, "seawall_registry"),
    ],
)
def test_bad_settings(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        sp.instrument(CollectorRegistry(), **kwargs)  # type: ignore[arg-type]


def test_custom_buckets(prom: CollectorRegistry, registry: seawall.Registry, fake_clock: FakeClock) -> None:
    instrumentation = sp.instrument(prom, seawall_registry=registry, buckets=(0.5, 2))
    breaker = seawall.CircuitBreaker("db", clock=fake_clock, registry=registry)

    def slow() -> None:
        fake_clock.advance(1.0)

    breaker.call(slow)
    found = scrape(prom)
    bounds = {labels[1][1] for (name, labels) in found if name.endswith("_bucket")}
    assert bounds == {"0.5", "2.0", "+Inf"}
    assert (
        get(
            found,
            "seawall_circuit_breaker_call_duration_seconds_bucket",
            breaker="db",
            le="0.5",
            outcome="success",
        )
        == 0
    )
    assert (
        get(
            found,
            "seawall_circuit_breaker_call_duration_seconds_bucket",
            breaker="db",
            le="2.0",
            outcome="success",
        )
        == 1
    )
    assert (
        get(found, "seawall_circuit_breaker_call_duration_seconds_sum", breaker="db", outcome="success")
        == 1.0
    )
    snapshot = breaker.snapshot().durations["success"]
    # interpolation inside (0.5, 2] would say 1.25; the one call took 1.0, the largest observed
    assert snapshot.quantile(0.5) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="already records durations"):
        sp.instrument(CollectorRegistry(), seawall_registry=registry, buckets=(1, 3))
    instrumentation.close()


def test_label_guard_unit() -> None:
    refused: list[tuple[str, str]] = []
    guard = LabelGuard("m", "l", 2, lambda metric, label: refused.append((metric, label)))
    assert [guard.admit(v) for v in ("a", "b", "a", "c", "c", "d")] == ["a", "b", "a", OTHER, OTHER, OTHER]
    assert refused == [("m", "l"), ("m", "l")]


@pytest.mark.parametrize("name", ['quo"te', "new\nline", "back\\slash", "ünïcødé ✓", "sp ace{}=,"])
def test_awkward_names_round_trip(prom: CollectorRegistry, registry: seawall.Registry, name: str) -> None:
    instrumentation = sp.instrument(prom, seawall_registry=registry)
    breaker = seawall.CircuitBreaker(name, failure_threshold=5, registry=registry)
    call(breaker, boom)
    assert get(scrape(prom), "seawall_circuit_breaker_calls_total", breaker=name, outcome="failure") == 1
    text = sp.generate_openmetrics(prom).decode()
    families = {family.name: family for family in parse_openmetrics(text)}
    calls = families["seawall_circuit_breaker_calls"].samples
    assert any(s.labels == {"breaker": name, "outcome": "failure"} and s.value == 1 for s in calls)
    instrumentation.close()


def test_exemplars_only_while_tracing(
    prom: CollectorRegistry, registry: seawall.Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    import seawall.prometheus as prometheus_module

    monkeypatch.setattr(prometheus_module, "_tracing_active", lambda trace, registry: False)
    inst = sp.instrument(prom, seawall_registry=registry)
    breaker = seawall.CircuitBreaker("db", registry=registry)
    provider = TracerProvider()
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("early"):
        breaker.call(lambda: 1)  # tracing not active yet: no listener, no exemplar
    assert registry.bus.listeners == ()
    monkeypatch.undo()
    tracing = otel.instrument(provider, seawall_registry=registry)
    sp.generate_latest(prom)  # every scrape re-checks whether tracing became active
    with tracer.start_as_current_span("op") as span:
        breaker.call(lambda: 1)
        context = span.get_span_context()
    text = sp.generate_openmetrics(prom).decode()
    families = {f.name: f for f in parse_openmetrics(text)}
    buckets = [
        s
        for s in families["seawall_circuit_breaker_call_duration_seconds"].samples
        if s.name.endswith("_bucket") and s.exemplar is not None
    ]
    assert len(buckets) == 1
    assert buckets[0].labels["le"] == "0.005"
    assert buckets[0].exemplar.labels == {
        "trace_id": format(context.trace_id, "032x"),
        "span_id": format(context.span_id, "016x"),
    }
    assert "trace_id" not in sp.generate_latest(prom).decode()  # the text format has no exemplars
    tracing.close()
    provider.shutdown()
    inst.close()


def test_concurrent_calls_are_counted_exactly(
    inst: sp.PrometheusInstrumentation, prom: CollectorRegistry, registry: seawall.Registry
) -> None:
    breaker = seawall.CircuitBreaker("db", registry=registry)
    retry = seawall.Retry("r", registry=registry)
    wrapped = retry(breaker(lambda: 1))

    def worker() -> None:
        for _ in range(2000):
            wrapped()

    run_threads(8, worker)
    found = scrape(prom)
    assert get(found, "seawall_circuit_breaker_calls_total", breaker="db", outcome="success") == 16000
    assert (
        get(found, "seawall_circuit_breaker_call_duration_seconds_count", breaker="db", outcome="success")
        == 16000
    )
    assert get(found, "seawall_retry_calls_total", retry="r", outcome="success_without_retry") == 16000


def test_refresh_all_is_harmless(inst: sp.PrometheusInstrumentation, registry: seawall.Registry) -> None:
    seawall.CircuitBreaker("db", registry=registry)
    sp.refresh_all()
    assert registry.bus.instrumentation_errors() == {}


def test_works_without_opentelemetry(monkeypatch: pytest.MonkeyPatch, registry: seawall.Registry) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # "import opentelemetry" now fails
    monkeypatch.setitem(sys.modules, "opentelemetry.trace", None)
    prom = CollectorRegistry()
    instrumentation = sp.instrument(prom, seawall_registry=registry)
    try:
        seawall.CircuitBreaker("db", registry=registry).call(lambda: 1)
        text = sp.generate_openmetrics(prom).decode()
        assert 'seawall_circuit_breaker_calls_total{breaker="db",outcome="success"} 1.0' in text
        assert "trace_id" not in text
    finally:
        instrumentation.close()


def test_failure_ratio_exists_only_where_a_window_gives_it_a_meaning(
    inst: sp.PrometheusInstrumentation, prom: CollectorRegistry, registry: seawall.Registry
) -> None:
    plain = seawall.CircuitBreaker("plain", failure_threshold=100, registry=registry)
    windowed = seawall.CircuitBreaker(
        "windowed", failure_threshold=100, failure_rate_threshold=0.9, minimum_calls=100, registry=registry
    )
    assert get(scrape(prom), "seawall_circuit_breaker_failure_ratio", breaker="windowed") == 0  # empty
    for breaker in (plain, windowed):
        for _ in range(5):
            call(breaker, boom)
    found = scrape(prom)
    # 5 of 5 failed in both; only the windowed one has a ratio, and it says so
    assert get(found, "seawall_circuit_breaker_failure_ratio", breaker="windowed") == 1.0
    assert get(found, "seawall_circuit_breaker_failure_ratio", breaker="plain") is None
