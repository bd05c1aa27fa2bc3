"""seawall.Hedge: a slow attempt gets a hedge, the first success wins, the losers are cancelled
and awaited, the extra load is bounded by max_hedges and the budget; counts, events, metrics and
span events; and hedged requests in the async HTTP client against a real upstream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

import seawall
import seawall.httpx as sh
from exposition import get, scrape
from http_upstream import Upstream
from seawall.events import Event, HedgeSent, HedgeWon


def arun(main: Callable[[], Awaitable[Any]]) -> Any:
    """Run `main()` and check that it left no task behind."""

    async def checked() -> Any:
        before = asyncio.all_tasks()
        result = await main()
        await asyncio.sleep(0)
        assert asyncio.all_tasks() == before, "an attempt outlived the call"
        return result

    return asyncio.run(asyncio.wait_for(checked(), timeout=20))


class Upstreamish:
    """An async callable whose n-th call (1-based) sleeps `slow[n]` seconds (default 0) and then
    returns n, or raises when n is in `fail`. Records cancellations."""

    def __init__(self, slow: dict[int, float] | None = None, fail: tuple[int, ...] = ()) -> None:
        self.slow = slow or {}
        self.fail = fail
        self.calls = 0
        self.cancelled: list[int] = []

    async def __call__(self) -> int:
        self.calls += 1
        n = self.calls
        try:
            await asyncio.sleep(self.slow.get(n, 0.0))
        except asyncio.CancelledError:
            self.cancelled.append(n)
            raise
        if n in self.fail:
            raise ConnectionError(f"attempt {n} failed")
        return n


def test_a_fast_call_is_not_hedged(registry: seawall.Registry) -> None:
    h = seawall.Hedge("h", delay=0.5, registry=registry)
    up = Upstreamish()
    assert arun(lambda: h.call_async(up)) == 1
    snap = h.snapshot()
    assert (snap.calls, snap.hedges) == (1, {"sent": 0, "won": 0, "cancelled": 0, "throttled": 0})


def test_a_slow_call_is_hedged_and_the_hedge_wins(registry: seawall.Registry) -> None:
    h = seawall.Hedge("h", delay=0.05, registry=registry)
    up = Upstreamish(slow={1: 5.0})
    started = time.monotonic()
    assert arun(lambda: h.call_async(up)) == 2
    assert time.monotonic() - started < 2.0
    assert up.cancelled == [1]
    assert h.snapshot().hedges == {"sent": 1, "won": 1, "cancelled": 1, "throttled": 0}


def test_a_failed_attempt_is_hedged_at_once(registry: seawall.Registry) -> None:
    h = seawall.Hedge("h", delay=5.0, registry=registry)
    up = Upstreamish(fail=(1,))
    started = time.monotonic()
    assert arun(lambda: h.call_async(up)) == 2
    assert time.monotonic() - started < 2.0  # no waiting out the 5 s delay


def test_when_every_attempt_fails_the_last_failure_is_raised(registry: seawall.Registry) -> None:
    h = seawall.Hedge("h", delay=0.01, max_hedges=2, budget=1.0, registry=registry)
    up = Upstreamish(fail=(1, 2, 3))

    async def main() -> None:
        with pytest.raises(ConnectionError, match="attempt 3"):
            await h.call_async(up)

    arun(main)
    assert up.calls == 3  # the first attempt and max_hedges hedges, no more
    assert h.snapshot().hedges["sent"] == 2


def test_the_budget_bounds_the_extra_load(registry: seawall.Registry) -> None:
    h = seawall.Hedge("h", delay=0.0, budget=0.25, burst=1.0, registry=registry)

    async def main() -> None:
        for _ in range(8):
            await h.call_async(Upstreamish(slow={1: 0.05}))

    arun(main)
    snap = h.snapshot()
    assert snap.calls == 8
    # the bucket starts full (1 token, its burst) and each call earns 0.25 before it may spend:
    # call 1 hedges, calls 2-4 hold 0.25-0.75 (refused), call 5 has 1.0 again, calls 6-8 are refused
    assert snap.hedges["sent"] == 2
    assert snap.hedges["throttled"] == 6


def test_the_delay_follows_a_percentile_of_recent_latency(registry: seawall.Registry) -> None:
    h = seawall.Hedge("h", delay=5.0, percentile=0.5, registry=registry)

    async def main() -> None:
        for _ in range(32):
            await h.call_async(Upstreamish(slow={1: 0.01}))

    arun(main)
    assert 0.005 < h.snapshot().delay < 0.5  # no longer the fixed 5 s


def test_the_callers_cancellation_cancels_every_attempt(registry: seawall.Registry) -> None:
    h = seawall.Hedge("h", delay=0.01, registry=registry)
    up = Upstreamish(slow={1: 5.0, 2: 5.0})

    async def main() -> None:
        task = asyncio.ensure_future(h.call_async(up))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    arun(main)
    assert sorted(up.cancelled) == [1, 2]
    assert h.snapshot().hedges["cancelled"] == 2


def test_settings_are_checked_and_sync_functions_refused(registry: seawall.Registry) -> None:
    with pytest.raises(ValueError, match="percentile"):
        seawall.Hedge("a", percentile=1.5, registry=registry)
    with pytest.raises(ValueError, match="max_hedges"):
        seawall.Hedge("b", max_hedges=0, registry=registry)
    with pytest.raises(ValueError, match="budget"):
        seawall.Hedge("c", budget=0, registry=registry)
    h = seawall.hedge("d", delay=1, registry=registry)
    assert seawall.hedge("d", delay=1.0, registry=registry) is h
    with pytest.raises(ValueError, match="different configuration"):
        seawall.hedge("d", delay=2, registry=registry)
    with pytest.raises(TypeError, match="async function"):
        h(lambda: 1)


def test_events_and_metrics(
    registry: seawall.Registry, events: list[Event], prom: CollectorRegistry, inst: Any
) -> None:
    h = seawall.Hedge("h", delay=0.02, registry=registry)
    assert arun(lambda: h.call_async(Upstreamish(slow={1: 5.0}))) == 2
    assert [type(e) for e in events if isinstance(e, (HedgeSent, HedgeWon))] == [HedgeSent, HedgeWon]
    assert events[-1] == HedgeWon("h", 2)
    found = scrape(prom)
    assert get(found, "seawall_hedge_calls_total", hedge="h") == 1
    assert get(found, "seawall_hedges_total", hedge="h", outcome="sent") == 1
    assert get(found, "seawall_hedges_total", hedge="h", outcome="won") == 1
    assert get(found, "seawall_hedges_total", hedge="h", outcome="cancelled") == 1
    assert get(found, "seawall_hedges_total", hedge="h", outcome="throttled") == 0


# -- in the async HTTP client -------------------------------------------------------------------


def test_the_async_client_hedges_a_slow_idempotent_request(
    upstream: Upstream, registry: seawall.Registry
) -> None:
    t = sh.AsyncResilientTransport(name="up", registry=registry, hedge={"delay": 0.05, "budget": 1.0})

    async def main() -> tuple[int, int, float]:
        async with httpx.AsyncClient(transport=t, base_url=upstream.base) as client:
            started = time.monotonic()
            response = await client.get("/flaky/slow?fail=1&status=200&delay=5")
            elapsed = time.monotonic() - started
            posted = await client.post("/flaky/post?fail=1&status=200&delay=0.3", content=b"x")
            busy = sum(1 for c in t.inner._pool.connections if not (c.is_idle() or c.is_closed()))  # type: ignore[attr-defined]
            return response.status_code, posted.status_code + busy, elapsed

    status, posted_and_busy, elapsed = arun(main)
    assert (status, posted_and_busy) == (200, 200)  # and no connection left checked out
    assert elapsed < 2.0
    assert len(upstream.hits("/flaky/slow")) == 2
    assert len(upstream.hits("/flaky/post")) == 1  # not idempotent: never hedged
    assert registry.get("hedge", "up").snapshot().hedges["won"] == 1


def test_hedging_needs_the_async_client() -> None:
    with pytest.raises(TypeError, match="async client"):
        sh.ResilientTransport(hedge=True)


def test_hedges_are_span_events_on_the_callers_span(registry: seawall.Registry) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from seawall import otel

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentation = otel.instrument(provider, seawall_registry=registry)
    h = seawall.Hedge("h", delay=0.02, registry=registry)

    async def main() -> int:
        with provider.get_tracer("test").start_as_current_span("call"):
            return await h.call_async(Upstreamish(slow={1: 5.0}))

    try:
        assert arun(main) == 2
    finally:
        instrumentation.close()
        provider.shutdown()
    (span,) = exporter.get_finished_spans()
    assert [(e.name, e.attributes["seawall.hedge.attempt"]) for e in span.events] == [
        ("seawall.hedge.sent", 2),
        ("seawall.hedge.won", 2),
    ]
