"""`python -m bench.profile TARGET`: cProfile one seawall hot path, to see where a MISS comes from.

The subjects are built exactly as the benchmark cases build them, then called in a loop under
cProfile; the top functions by own time are printed. Profiling inflates small functions, so read
it for *where* the time goes, and the benchmark for *how much*.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import itertools
import pstats
from collections.abc import Awaitable, Callable, Sequence

from . import aggregator, breaker, exporter, otel, retry, web
from .harness import seawall_attr

Builder = Callable[[], Callable[[], object]]


def _rejected() -> Callable[[], object]:
    error = seawall_attr("seawall.CircuitOpenError")
    opened = breaker._opened(breaker.seawall_breaker("profile-rejected"), error)
    return breaker._rejecting(opened, error)


def _record() -> Callable[[], object]:
    record = aggregator._aggregator(aggregator.FakeClock(0.001)).record
    pairs = itertools.cycle(
        [(exc, source) for exc in aggregator.sample_errors() for source in aggregator.SOURCES]
    )

    def call() -> None:
        exc, source = next(pairs)
        record(exc, source=source)

    return call


def _metrics() -> Callable[[], object]:
    registry, _ = exporter.instrumented_registry()
    wrapped: Callable[[], object] = exporter.seawall_instrumented_breaker(registry, "profile")(breaker.work)
    return wrapped


def _stack() -> Callable[[], object]:
    registry, _ = exporter.instrumented_registry()
    cb = exporter.seawall_instrumented_breaker(registry, "profile")
    policy = seawall_attr("seawall.Retry")("profile", attempts=3, initial=0.1, registry=registry)
    wrapped: Callable[[], object] = policy(cb(breaker.work))
    return wrapped


def _otel() -> Callable[[], object]:
    provider, _ = otel.sampled_provider()
    registry, traced = otel.plain_retry("profile")
    otel.instrument_otel(registry, provider)
    wrapped: Callable[[], object] = traced(breaker.work)
    return wrapped


def _otel_retried() -> Callable[[], object]:
    provider, _ = otel.sampled_provider()
    registry, traced = otel.plain_retry("profile", sleep=otel.no_sleep)
    otel.instrument_otel(registry, provider)
    wrapped: Callable[[], object] = traced(otel.flaky())
    return wrapped


def _render() -> Callable[[], object]:
    from prometheus_client import generate_latest

    registry, prometheus_registry = exporter.instrumented_registry(1000)
    for index in range(1000):
        exporter.seawall_instrumented_breaker(registry, f"breaker-{index:04d}")(breaker.work)()
    return lambda: generate_latest(prometheus_registry)


def _web(path: str) -> Callable[[], object]:
    app = web.build_app(1000, status_cache_seconds=0.0)  # the uncached work, as the benchmark's target
    loop = asyncio.new_event_loop()
    return lambda: loop.run_until_complete(web.asgi_get(app, path))


def _async(build: Callable[[], Callable[[], Awaitable[object]]]) -> Callable[[], object]:
    fn = build()
    loop = asyncio.new_event_loop()

    async def many(count: int) -> None:
        for _ in range(count):
            await fn()

    return lambda: loop.run_until_complete(many(100))


TARGETS: dict[str, tuple[Builder, int, str]] = {
    "breaker": (lambda: breaker.seawall_breaker("profile")(breaker.work), 200_000, "breaker success path"),
    "rejected": (_rejected, 200_000, "call rejected by an open breaker"),
    "retry": (lambda: retry.seawall_retry("profile")(retry.work), 200_000, "retry success path"),
    "retry.async": (
        lambda: _async(lambda: retry.seawall_retry("profile")(retry.awork)),
        2_000,
        "async retry success path, 100 awaits per call",
    ),
    "retry.retried": (
        lambda: retry.seawall_retry("profile", sleep=otel.no_sleep)(otel.flaky()),
        100_000,
        "retry: first attempt raises ConnectionError, second succeeds (no real sleep)",
    ),
    "mounted": (
        lambda: breaker.breaker_beside_web_app("profile"),
        200_000,
        "breaker success path, its registry also serving create_app(metrics=False)",
    ),
    "otel.retried": (_otel_retried, 50_000, "retry with seawall.otel on, first attempt fails, 1% sampled"),
    "record": (_record, 200_000, "ErrorAggregator.record"),
    "metrics": (_metrics, 200_000, "breaker success path with prometheus on"),
    "stack": (_stack, 200_000, "retry(breaker(fn)) with prometheus on"),
    "otel": (_otel, 200_000, "retry with seawall.otel on, 1% sampled"),
    "render": (_render, 20, "generate_latest for 1,000 breakers"),
    "web.ready": (lambda: _web("/health/ready"), 200, "/health/ready, 1,000 breakers"),
    "web.breakers": (
        lambda: _web("/api/resilience/breakers"),
        200,
        "/api/resilience/breakers, 1,000 breakers",
    ),
}


def profile(target: str, calls: int | None = None, top: int = 20, sort: str = "tottime") -> str:
    """Build `target`, call it `calls` times under cProfile, return the top of the stats."""
    build, default_calls, title = TARGETS[target]
    fn = build()
    for _ in range(100 if default_calls > 1000 else 2):
        fn()  # warm-up outside the profile
    profiler = cProfile.Profile()
    count = calls or default_calls
    profiler.enable()
    for _ in range(count):
        fn()
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.strip_dirs().sort_stats(sort).print_stats(top)
    return f"# {target}: {title}, {count:,} calls\n{out.getvalue()}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("target", choices=sorted(TARGETS))
    parser.add_argument("--calls", type=int, help="calls to profile (default depends on the target)")
    parser.add_argument("--top", type=int, default=20, help="functions to show")
    parser.add_argument("--sort", default="tottime", help="pstats sort key (tottime, cumulative, ncalls)")
    args = parser.parse_args(argv)
    print(profile(args.target, args.calls, args.top, args.sort))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
