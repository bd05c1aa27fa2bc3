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
    attempt_build,
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


def plain_retry(name: str) -> tuple[Any, Any]:
    registry = seawall_attr("seawall.Registry")()
    retry = seawall_attr("seawall.Retry")(name, attempts=3, initial=0.1, registry=registry)
    return registry, retry


def tracing_cost(config: Config) -> CaseResult:
    result = CaseResult(
        "otel.retry",
        f"tracing added to a call through seawall Retry (SDK provider, {SAMPLE_RATIO:.0%} sampled)",
    )
    provider, exporter = sampled_provider()
    tracer = provider.get_tracer("bench")

    def spanned() -> object:
        with tracer.start_as_current_span("bench"):
            return work()

    subjects: dict[str, Callable[[], object]] = {"bare": work, "otel span alone": spanned}
    unavailable: dict[str, str] = {}

    def build() -> tuple[Callable[[], object], Callable[[], object]]:
        _, untraced = plain_retry("bench-untraced")
        registry, traced = plain_retry("bench-traced")
        instrument_otel(registry, provider)
        return untraced(work), traced(work)

    built, why = attempt_build(build)
    if built is None:
        unavailable["seawall retry"] = why
        unavailable["seawall retry + otel"] = why
    else:
        subjects["seawall retry"], subjects["seawall retry + otel"] = built
    try:
        timings = per_call_ns(subjects, config)
    finally:
        exporter.clear()
        provider.shutdown()
    result.measurements = overhead_measurements(timings, "bare", unavailable)
    if built is not None:
        added = timings["seawall retry + otel"][0] - timings["seawall retry"][0]
        added_median = timings["seawall retry + otel"][1] - timings["seawall retry"][1]
        result.measurements.append(
            Measurement(
                "otel added by seawall", added, "ns/call", median=added_median, note="retry+otel - retry"
            )
        )
    else:
        result.measurements.append(Measurement("otel added by seawall", None, "ns/call", note=why))
    result.ratio_target(
        "seawall's tracing cost / a bare otel span", "otel added by seawall", "otel span alone", 1.2
    )
    return result


CASES = [("otel.retry", tracing_cost)]
