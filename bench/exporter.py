"""Prometheus cases: per-call cost with metrics on, the retry+breaker stack, and /metrics rendering.

The peer is what a service does today: pybreaker with a `CircuitBreakerListener` whose `success`
increments a prometheus counter (and tenacity around it for the stacked case). Every case uses a
fresh `CollectorRegistry`, so series from earlier cases never inflate later ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pybreaker
import tenacity
from prometheus_client import CollectorRegistry, Counter, generate_latest

from .breaker import RESET_TIMEOUT, work
from .harness import (
    CaseResult,
    Config,
    Measurement,
    attempt_build,
    milliseconds,
    overhead_measurements,
    per_call_ns,
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


def instrumented_registry() -> tuple[Any, CollectorRegistry]:
    """A seawall Registry bound to a fresh CollectorRegistry through `seawall.prometheus.instrument`."""
    registry = seawall_attr("seawall.Registry")()
    prometheus_registry = CollectorRegistry()
    instrument = seawall_attr("seawall.prometheus.instrument")
    instrument(registry=prometheus_registry, seawall_registry=registry)
    return registry, prometheus_registry


def seawall_instrumented_breaker(registry: Any, name: str) -> Any:
    breaker_type = seawall_attr("seawall.CircuitBreaker")
    return breaker_type(name, failure_threshold=5, reset_timeout=RESET_TIMEOUT, registry=registry)


def listening_pybreaker() -> pybreaker.CircuitBreaker:
    breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=RESET_TIMEOUT, name="bench")
    breaker.add_listener(CountingListener(CollectorRegistry()))
    return breaker


def breaker_with_metrics(config: Config) -> CaseResult:
    result = CaseResult("exporter.breaker", "breaker success path with Prometheus metrics on")
    subjects: dict[str, Callable[[], object]] = {"bare": work}
    unavailable: dict[str, str] = {}

    def build() -> Callable[[], object]:
        registry, _ = instrumented_registry()
        wrapped: Callable[[], object] = seawall_instrumented_breaker(registry, "bench-metrics")(work)
        return wrapped

    wrapped, why = attempt_build(build)
    if wrapped is None:
        unavailable["seawall + prometheus"] = why
    else:
        subjects["seawall + prometheus"] = wrapped
    subjects["pybreaker + counting listener"] = listening_pybreaker()(work)
    subjects["pybreaker (no listener)"] = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=RESET_TIMEOUT)(
        work
    )
    result.measurements = overhead_measurements(per_call_ns(subjects, config), "bare", unavailable)
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


def stack_with_metrics(config: Config) -> CaseResult:
    result = CaseResult("exporter.stack", "retry(breaker(fn)) with metrics on one call, success path")
    subjects: dict[str, Callable[[], object]] = {"bare": work}
    unavailable: dict[str, str] = {}

    def build() -> Callable[[], object]:
        registry, _ = instrumented_registry()
        breaker = seawall_instrumented_breaker(registry, "bench-stack")
        retry = seawall_attr("seawall.Retry")("bench-stack", attempts=3, initial=0.1, registry=registry)
        wrapped: Callable[[], object] = retry(breaker(work))
        return wrapped

    wrapped, why = attempt_build(build)
    if wrapped is None:
        unavailable["seawall retry+breaker+prometheus"] = why
    else:
        subjects["seawall retry+breaker+prometheus"] = wrapped
    peer = tenacity.retry(
        stop=tenacity.stop_after_attempt(3), wait=tenacity.wait_exponential(multiplier=0.1), reraise=True
    )(listening_pybreaker()(work))
    subjects["tenacity + pybreaker + listener"] = peer
    result.measurements = overhead_measurements(per_call_ns(subjects, config), "bare", unavailable)
    result.ratio_target(
        "seawall stack / tenacity+pybreaker+listener overhead",
        "seawall retry+breaker+prometheus",
        "tenacity + pybreaker + listener",
        0.2,
    )
    return result


def render_metrics(config: Config) -> CaseResult:
    count = config.breakers
    result = CaseResult(
        "exporter.render", f"generate_latest() for {count:,} instrumented breakers (each called once)"
    )

    def build() -> CollectorRegistry:
        registry, prometheus_registry = instrumented_registry()
        for index in range(count):
            breaker = seawall_instrumented_breaker(registry, f"breaker-{index:04d}")
            breaker(work)()
        return prometheus_registry

    prometheus_registry, why = attempt_build(build)
    subject = f"seawall, {count:,} breakers"
    if prometheus_registry is None:
        result.measurements.append(Measurement(subject, None, "ms", note=why))
    else:
        generate_latest(prometheus_registry)  # warm-up
        samples: list[float] = []
        size = 0
        for _ in range(max(1, config.render_repeat)):
            start = time.perf_counter_ns()
            body = generate_latest(prometheus_registry)
            samples.append(time.perf_counter_ns() - start)
            size = len(body)
        low, middle = milliseconds(samples)
        result.measurements.append(
            Measurement(subject, low, "ms", median=middle, note=f"{size / 1024:,.0f} KiB body")
        )
    result.absolute_target(f"render /metrics for {count:,} breakers (ms)", subject, 50.0, "ms")
    return result


CASES = [
    ("exporter.breaker", breaker_with_metrics),
    ("exporter.stack", stack_with_metrics),
    ("exporter.render", render_metrics),
]
