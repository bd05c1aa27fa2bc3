"""Prometheus cases: per-call cost with metrics on, the retry+breaker stack, and /metrics rendering.

The peer is what a service does today: pybreaker with a `CircuitBreakerListener` whose `success`
increments a prometheus counter (and tenacity around it for the stacked case). Every case uses a
fresh `CollectorRegistry`, so series from earlier cases never inflate later ones.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pybreaker
import tenacity
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    enable_created_metrics,
    generate_latest,
)
from prometheus_client import metrics as prometheus_metrics

from .breaker import RESET_TIMEOUT, work
from .harness import (
    CaseResult,
    Config,
    Measurement,
    Subjects,
    attempt_build,
    case,
    milliseconds,
    seawall_attr,
)


class CountingListener(pybreaker.CircuitBreakerListener):
    """The usual hand-written pybreaker instrumentation: a labelled counter per outcome."""

    def __init__(self, registry: CollectorRegistry) -> None:
        calls = Counter("pybreaker_calls", "calls by outcome", ["breaker", "outcome"], registry=registry)
        self._success = calls.labels("bench", "success")
        self._failure = calls.labels("bench", "failure")

    def success(self, cb: pybreaker.CircuitBreaker) -> None:
        self._success.inc()

    def failure(self, cb: pybreaker.CircuitBreaker, exc: BaseException) -> None:
        self._failure.inc()


def instrumented_registry(breakers: int = 0) -> tuple[Any, CollectorRegistry]:
    """A seawall Registry bound to a fresh CollectorRegistry through `seawall.prometheus.instrument`.

    With `breakers` above the default label cap (100 values), the cap is raised so every breaker
    gets its own series, as a service that really has that many would configure it.
    """
    registry = seawall_attr("seawall.Registry")()
    prometheus_registry = CollectorRegistry()
    instrument = seawall_attr("seawall.prometheus.instrument")
    settings: dict[str, Any] = {}
    if breakers > 100 and "max_label_values" in inspect.signature(instrument).parameters:
        settings["max_label_values"] = breakers + 10
    instrument(registry=prometheus_registry, seawall_registry=registry, **settings)
    return registry, prometheus_registry


def seawall_instrumented_breaker(registry: Any, name: str) -> Any:
    breaker_type = seawall_attr("seawall.CircuitBreaker")
    return breaker_type(name, failure_threshold=5, reset_timeout=RESET_TIMEOUT, registry=registry)


def on_fresh_registry(wrap: Callable[[Any], Callable[[], object]]) -> Callable[[], Callable[[], object]]:
    """A `Subjects.build` builder: `wrap(registry)` on a newly instrumented registry for every build."""

    def build() -> Callable[[], object]:
        registry, _ = instrumented_registry()
        return wrap(registry)

    return build


def listening_pybreaker() -> pybreaker.CircuitBreaker:
    breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=RESET_TIMEOUT, name="bench")
    breaker.add_listener(CountingListener(CollectorRegistry()))
    return breaker


@case("exporter.breaker", "breaker success path with Prometheus metrics on")
def breaker_with_metrics(result: CaseResult, config: Config) -> CaseResult:
    subjects = Subjects(work)

    def metered(registry: Any) -> Callable[[], object]:
        wrapped: Callable[[], object] = seawall_instrumented_breaker(registry, "bench-metrics")(work)
        return wrapped

    subjects.build("seawall + prometheus", on_fresh_registry(metered))
    subjects["pybreaker + counting listener"] = listening_pybreaker()(work)
    subjects["pybreaker (no listener)"] = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=RESET_TIMEOUT)(
        work
    )
    result.measurements = subjects.overhead(config)
    result.ratio_target(
        "seawall+metrics / pybreaker+listener overhead",
        "seawall + prometheus",
        "pybreaker + counting listener",
        0.5,
    )
    result.ratio_target(
        "seawall+metrics / bare pybreaker overhead", "seawall + prometheus", "pybreaker (no listener)", 1.0
    )
    return result


@case("exporter.stack", "retry(breaker(fn)) with metrics on one call, success path")
def stack_with_metrics(result: CaseResult, config: Config) -> CaseResult:
    subjects = Subjects(work)

    def stack(registry: Any) -> Callable[[], object]:
        breaker = seawall_instrumented_breaker(registry, "bench-stack")
        retry = seawall_attr("seawall.Retry")("bench-stack", attempts=3, initial=0.1, registry=registry)
        wrapped: Callable[[], object] = retry(breaker(work))
        return wrapped

    subjects.build("seawall retry+breaker+prometheus", on_fresh_registry(stack))
    peer = tenacity.retry(
        stop=tenacity.stop_after_attempt(3), wait=tenacity.wait_exponential(multiplier=0.1), reraise=True
    )(listening_pybreaker()(work))
    subjects["tenacity + pybreaker + listener"] = peer
    result.measurements = subjects.overhead(config)
    result.ratio_target(
        "seawall stack / tenacity+pybreaker+listener overhead",
        "seawall retry+breaker+prometheus",
        "tenacity + pybreaker + listener",
        0.2,
    )
    return result


def native_registry(count: int) -> CollectorRegistry:
    """The same series as seawall's breaker metrics, held by prometheus_client's own metric classes.

    A yardstick for rendering: what `generate_latest` costs for this many lines whoever holds them.
    """
    registry = CollectorRegistry()
    state = Gauge("native_circuit_breaker_state", "state", ["breaker", "state"], registry=registry)
    calls = Counter("native_circuit_breaker_calls", "calls", ["breaker", "outcome"], registry=registry)
    duration = Histogram(
        "native_circuit_breaker_call_duration_seconds",
        "duration",
        ["breaker", "outcome"],
        registry=registry,
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    )
    rate = Gauge("native_circuit_breaker_failure_rate", "rate", ["breaker"], registry=registry)
    for index in range(count):
        name = f"breaker-{index:04d}"
        for value in ("closed", "open", "half_open", "forced_open", "disabled"):
            state.labels(name, value).set(1 if value == "closed" else 0)
        for outcome in ("success", "failure", "rejected", "ignored"):
            calls.labels(name, outcome).inc(1 if outcome == "success" else 0)
        duration.labels(name, "success").observe(1e-6)
        rate.labels(name).set(0)
    return registry


@contextmanager
def created_series_off() -> Iterator[None]:
    """Leave out the `_created` samples seawall does not emit either, so line counts match."""
    was_on = bool(getattr(prometheus_metrics, "_use_created", True))
    disable_created_metrics()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        if was_on:
            enable_created_metrics()  # type: ignore[no-untyped-call]


def _time_ms(fn: Callable[[], object], repeat: int) -> tuple[float, float, object]:
    """(min ms, median ms, last result) of `repeat` timed calls after one warm-up call."""
    fn()
    samples: list[float] = []
    last: object = None
    for _ in range(max(1, repeat)):
        start = time.perf_counter_ns()
        last = fn()
        samples.append(time.perf_counter_ns() - start)
    low, middle = milliseconds(samples)
    return low, middle, last


def _lines(body: object) -> int:
    assert isinstance(body, bytes)
    return sum(1 for line in body.splitlines() if not line.startswith(b"#"))


@case(
    "exporter.render",
    lambda config: (
        f"/metrics for {config.breakers:,} instrumented breakers (each called once), label cap raised"
    ),
)
def render_metrics(result: CaseResult, config: Config) -> CaseResult:
    """/metrics for many breakers the way Prometheus asks for it (OpenMetrics, gzip), beside text."""
    count = config.breakers

    def build() -> CollectorRegistry:
        registry, prometheus_registry = instrumented_registry(count)
        for index in range(count):
            breaker = seawall_instrumented_breaker(registry, f"breaker-{index:04d}")
            breaker(work)()
        return prometheus_registry

    prometheus_registry, why = attempt_build(build)
    text_subject = f"seawall text format, {count:,} breakers"
    om_subject = f"seawall OpenMetrics, {count:,} breakers"
    gzip_subject = f"seawall OpenMetrics + gzip, {count:,} breakers"
    if prometheus_registry is None:
        for subject in (text_subject, om_subject, gzip_subject):
            result.measurements.append(Measurement(subject, None, "ms", note=why))
    else:
        render = seawall_attr("seawall.prometheus.render")
        om_accept = "application/openmetrics-text; version=1.0.0,text/plain;q=0.5"
        cases = (
            (text_subject, lambda: render(prometheus_registry, "text/plain")[0]),
            (om_subject, lambda: render(prometheus_registry, om_accept)[0]),
            (gzip_subject, lambda: render(prometheus_registry, om_accept, "gzip")[0]),
        )
        for subject, fn in cases:
            low, middle, body = _time_ms(fn, config.render_repeat)
            assert isinstance(body, bytes)
            note = f"{len(body) / 1024:,.0f} KiB"
            if subject != gzip_subject:
                note = f"{_lines(body):,} samples, {note}"
            result.measurements.append(Measurement(subject, low, "ms", median=middle, note=note))
        low, middle, body = _time_ms(lambda: generate_latest(prometheus_registry), config.render_repeat)
        note = "the same families through prometheus_client's own text encoder"
        result.measurements.append(
            Measurement("prometheus_client.generate_latest", low, "ms", median=middle, note=note)
        )
    native = native_registry(count)
    with created_series_off():
        low, middle, body = _time_ms(lambda: generate_latest(native), config.render_repeat)
    note = f"prometheus_client's own metrics, {_lines(body):,} samples (yardstick)"
    result.measurements.append(
        Measurement("prometheus_client native, same series", low, "ms", median=middle, note=note)
    )
    result.ratio_target("OpenMetrics / text format time", om_subject, text_subject, 1.2)
    return result
