"""OpenTelemetry case: what tracing adds to a call through a seawall Retry, against a bare span.

The provider is the SDK one with 1% sampling (`TraceIdRatioBased(0.01)`) and an in-memory
exporter behind a SimpleSpanProcessor, as a production service would sample. The yardstick is
OpenTelemetry's own cost for `tracer.start_as_current_span` around the same function.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

from .breaker import work
from .harness import (
    CaseResult,
    Config,
    Measurement,
    Subjects,
    attempt_build,
    case,
    overhead_measurements,
    per_call_ns,
    seawall_attr,
)

SAMPLE_RATIO = 0.01


def sampled_provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=TraceIdRatioBased(SAMPLE_RATIO))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def instrument_otel(registry: Any, provider: TracerProvider) -> None:
    """Call `seawall.otel.instrument`, passing the registry under whichever name it takes."""
    instrument = seawall_attr("seawall.otel.instrument")
    parameters = inspect.signature(instrument).parameters
    kwargs: dict[str, Any] = {"tracer_provider": provider}
    for name in ("seawall_registry", "registry"):
        if name in parameters:
            kwargs[name] = registry
            break
    instrument(**kwargs)


def plain_retry(name: str, **settings: Any) -> tuple[Any, Any]:
    registry = seawall_attr("seawall.Registry")()
    retry = seawall_attr("seawall.Retry")(name, attempts=3, initial=0.1, registry=registry, **settings)
    return registry, retry


def flaky() -> Callable[[], int]:
    """Fails with ConnectionError on every odd call: each retried call takes exactly two attempts."""
    calls = [0]

    def call() -> int:
        calls[0] += 1
        if calls[0] % 2:
            raise ConnectionError("flaky")
        return 1

    return call


def no_sleep(seconds: float) -> None:
    return None


SUCCESS, RETRIED = "first attempt ok", "retried once"


@case(
    "otel.retry", f"tracing added to a call through seawall Retry (SDK provider, {SAMPLE_RATIO:.0%} sampled)"
)
def tracing_cost(result: CaseResult, config: Config) -> CaseResult:
    provider, exporter = sampled_provider()
    tracer = provider.get_tracer("bench")

    def one_span() -> object:
        with tracer.start_as_current_span("bench"):
            return work()

    def two_spans() -> object:
        with tracer.start_as_current_span("attempt 1"):
            pass
        with tracer.start_as_current_span("attempt 2"):
            return work()

    subjects = Subjects(work, {"otel span": one_span, "2 otel spans": two_spans})
    variants = {
        f"seawall retry, {SUCCESS}": (work, ""),
        f"seawall retry, {RETRIED}": (flaky(), "r"),
    }
    unavailable = subjects.unavailable
    for label, (fn, suffix) in variants.items():

        def build(
            fn: Callable[[], int] = fn, suffix: str = suffix, label: str = label
        ) -> dict[str, Callable[[], object]]:
            _, untraced_policy = plain_retry(f"bench-untraced{suffix}", sleep=no_sleep)
            registry, traced_policy = plain_retry(f"bench-traced{suffix}", sleep=no_sleep)
            instrument_otel(registry, provider)
            untraced, traced = untraced_policy(fn), traced_policy(flaky() if suffix else fn)
            for wrapped in (untraced, traced):
                if wrapped() != 1:
                    raise RuntimeError("retry did not return the function's result")
            return {label: untraced, f"{label} + otel": traced}

        built, why = attempt_build(build)
        if built is None:
            unavailable[label] = unavailable[f"{label} + otel"] = why
        else:
            subjects.update(built)
    try:
        timings = per_call_ns(subjects, config)
    finally:
        exporter.clear()
        provider.shutdown()
    result.measurements = overhead_measurements(timings, "bare", unavailable)
    for label in variants:
        added_subject = f"otel added, {label.removeprefix('seawall retry, ')}"
        if label in timings:
            added = timings[f"{label} + otel"][0] - timings[label][0]
            added_median = timings[f"{label} + otel"][1] - timings[label][1]
            note = "traced - untraced"
            result.measurements.append(
                Measurement(added_subject, added, "ns/call", median=added_median, note=note)
            )
        else:
            missing = Measurement(added_subject, None, "ns/call", note=unavailable[label])
            result.measurements.append(missing)
    result.ratio_target(
        f"tracing added ({SUCCESS}) / one otel span", f"otel added, {SUCCESS}", "otel span", 1.2
    )
    result.ratio_target(
        f"tracing added ({RETRIED}) / two otel spans", f"otel added, {RETRIED}", "2 otel spans", 1.2
    )
    return result
