"""Retry cases: the success path (no retry needed), sync and async.

This is the path almost every call takes, so it is where a retry library's per-call machinery
(state objects, copies, hooks) shows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import backoff
import stamina
import tenacity

from .harness import CaseResult, Config, Subjects, case, seawall_attr

ATTEMPTS = 3


def work() -> int:
    return 1


async def awork() -> int:
    return 1


def seawall_retry(name: str, registry: Any = None, **settings: Any) -> Any:
    """A seawall Retry in a private registry, with injected sleeps (never used on the success path)."""
    if registry is None:
        registry = seawall_attr("seawall.Registry")()
    retry_type = seawall_attr("seawall.Retry")
    return retry_type(name, attempts=ATTEMPTS, initial=0.1, registry=registry, **settings)


def tenacity_retry(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`tenacity.retry` decorator; on a coroutine function it is AsyncRetrying underneath."""
    decorate = tenacity.retry(
        stop=tenacity.stop_after_attempt(ATTEMPTS),
        wait=tenacity.wait_exponential(multiplier=0.1),
        reraise=True,
    )
    return decorate(fn)


def stamina_retry(fn: Callable[..., Any]) -> Callable[..., Any]:
    return stamina.retry(on=Exception, attempts=ATTEMPTS, wait_initial=0.1)(fn)


def backoff_retry(fn: Callable[..., Any]) -> Callable[..., Any]:
    return backoff.on_exception(backoff.expo, Exception, max_tries=ATTEMPTS, factor=0.1)(fn)


@case("retry.success", "retry success path (first attempt succeeds), decorator form")
def success_sync(result: CaseResult, config: Config) -> CaseResult:
    subjects = Subjects(work)
    builders: dict[str, Callable[[], Any]] = {
        "seawall": lambda: seawall_retry("bench-retry")(work),
        "seawall + prometheus": lambda: instrumented_retry("bench-retry-metrics")(work),
        "seawall + otel metrics": lambda: otel_metered_retry("bench-retry-otel")(work),
    }
    for subject, build in builders.items():
        subjects.build(subject, build)
    subjects["tenacity"] = tenacity_retry(work)
    subjects["stamina"] = stamina_retry(work)
    subjects["backoff"] = backoff_retry(work)
    result.measurements = subjects.overhead(config)
    result.ratio_target("seawall / tenacity.retry overhead", "seawall", "tenacity", 0.1)
    result.ratio_target(
        "seawall + prometheus / tenacity.retry overhead", "seawall + prometheus", "tenacity", 0.1
    )
    for metrics in ("seawall + prometheus", "seawall + otel metrics"):  # metrics on vs off
        result.ratio_target(f"{metrics} / seawall overhead", metrics, "seawall", 1.2)
    return result


def instrumented_retry(name: str) -> Any:
    """A retry whose registry is exported by `seawall.prometheus.instrument` (metrics read at scrape)."""
    from prometheus_client import CollectorRegistry

    registry = seawall_attr("seawall.Registry")()
    seawall_attr("seawall.prometheus.instrument")(CollectorRegistry(), seawall_registry=registry)
    return seawall_retry(name, registry=registry)


def otel_metered_retry(name: str) -> Any:
    """A retry whose registry is reported by `seawall.otel.instrument_metrics` to an SDK
    MeterProvider with an in-memory reader (instruments read snapshots at collection)."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    registry = seawall_attr("seawall.Registry")()
    provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    seawall_attr("seawall.otel.instrument_metrics")(provider, seawall_registry=registry)
    return seawall_retry(name, registry=registry)


@case("retry.async", "async retry success path, awaited in one event loop")
def success_async(result: CaseResult, config: Config) -> CaseResult:
    subjects = Subjects(awork)
    subjects.build("seawall", lambda: seawall_retry("bench-retry-async")(awork))
    subjects["tenacity (AsyncRetrying)"] = tenacity_retry(awork)
    subjects["stamina"] = stamina_retry(awork)
    subjects["backoff"] = backoff_retry(awork)
    result.measurements = subjects.overhead(config, asynchronous=True)
    result.ratio_target(
        "seawall / tenacity AsyncRetrying overhead", "seawall", "tenacity (AsyncRetrying)", 0.05
    )
    return result
