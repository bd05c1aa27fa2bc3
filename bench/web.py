"""Web cases: `/health/ready`, `/api/resilience/breakers` and `/metrics` with many breakers.

Requests go straight into the ASGI app (no sockets, no TestClient thread), so the time is the
handlers' own: reading snapshots and serializing them.
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Any

from prometheus_client import CollectorRegistry

from .breaker import work
from .exporter import instrumented_registry, seawall_instrumented_breaker
from .harness import (
    CaseResult,
    Config,
    Measurement,
    Unavailable,
    attempt_build,
    case,
    milliseconds,
    seawall_attr,
)

PATHS = ("/health/ready", "/api/resilience/breakers", "/metrics")
TARGET_MS = 5.0


async def asgi_get(app: Any, path: str) -> tuple[int, bytes]:
    """One GET through the ASGI interface; returns (status, body)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"accept", b"*/*")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    await app(scope, receive, send)
    status = next(m["status"] for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return status, body


def build_app(count: int, **options: Any) -> Any:
    """An app over `count` breakers, each called once; metrics bound when seawall.prometheus exists."""
    create_app = seawall_attr("seawall.starlette.create_app")
    try:
        registry, prometheus_registry = instrumented_registry(count)
    except Unavailable:
        registry, prometheus_registry = seawall_attr("seawall.Registry")(), CollectorRegistry()
    for index in range(count):
        breaker = seawall_instrumented_breaker(registry, f"breaker-{index:04d}")
        breaker(work)()
    return create_app(registry=registry, prometheus_registry=prometheus_registry, **options)


UNCACHED, CACHED = "cache off", "cached"


async def _measure(app: Any, path: str, repeat: int) -> Measurement | str:
    """Median ms of `repeat` GETs after a warm-up one; or why it could not be measured."""
    status, body = await asgi_get(app, path)  # warm-up, and proof the route exists
    if status != 200:
        return f"status {status}"
    samples: list[float] = []
    for _ in range(max(1, repeat)):
        start = time.perf_counter_ns()
        await asgi_get(app, path)
        samples.append(time.perf_counter_ns() - start)
    low, middle = milliseconds(samples)
    note = f"{len(body) / 1024:,.0f} KiB body, fastest {low:.2f} ms"
    return Measurement(path, middle, "ms", median=middle, note=note)


@case("web.endpoints", lambda config: f"GET latency through the ASGI app with {config.breakers:,} breakers")
def endpoints(result: CaseResult, config: Config) -> CaseResult:
    """The status routes with their body cache off (the work a request really costs after a state
    change or once the cache expires) and on (what most requests in a burst get)."""
    count = config.breakers
    apps: dict[str, Any] = {}
    settings: tuple[tuple[str, dict[str, Any]], ...] = (
        (UNCACHED, {"status_cache_seconds": 0.0}),
        (CACHED, {}),
    )
    for label, options in settings:
        app, why = attempt_build(functools.partial(build_app, count, **options))
        if app is None:
            for path in PATHS:
                result.measurements.append(Measurement(f"{path} ({label})", None, "ms", note=why))
        else:
            apps[label] = app

    async def measure() -> None:
        for label, app in apps.items():
            for path in PATHS if label == UNCACHED else PATHS[:2]:
                measured = await _measure(app, path, config.request_repeat)
                subject = f"{path} ({label})"
                if isinstance(measured, str):
                    result.measurements.append(Measurement(subject, None, "ms", note=measured))
                else:
                    measured.subject = subject
                    result.measurements.append(measured)

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(measure(), timeout=300))
    finally:
        loop.close()
    for path in PATHS[:2]:
        subject = f"{path} ({UNCACHED})"
        result.absolute_target(f"{subject}, {count:,} breakers, median ms", subject, TARGET_MS, "ms")
    return result
