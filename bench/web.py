"""Web cases: `/health/ready`, `/api/resilience/breakers` and `/metrics` with many breakers.

Requests go straight into the ASGI app (no sockets, no TestClient thread), so the time is the
handlers' own: reading snapshots and serializing them.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from prometheus_client import CollectorRegistry

from .breaker import work
from .exporter import instrumented_registry, seawall_instrumented_breaker
from .harness import CaseResult, Config, Measurement, Unavailable, attempt_build, milliseconds, seawall_attr

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


def build_app(count: int) -> Any:
    """An app over `count` breakers, each called once; metrics bound when seawall.prometheus exists."""
    create_app = seawall_attr("seawall.starlette.create_app")
    try:
        registry, prometheus_registry = instrumented_registry(count)
    except Unavailable:
        registry, prometheus_registry = seawall_attr("seawall.Registry")(), CollectorRegistry()
    for index in range(count):
        breaker = seawall_instrumented_breaker(registry, f"breaker-{index:04d}")
        breaker(work)()
    return create_app(registry=registry, prometheus_registry=prometheus_registry)


def endpoints(config: Config) -> CaseResult:
    count = config.breakers
    result = CaseResult("web.endpoints", f"GET latency through the ASGI app with {count:,} breakers")
    app, why = attempt_build(lambda: build_app(count))
    if app is None:
        for path in PATHS:
            result.measurements.append(Measurement(path, None, "ms", note=why))
    else:

        async def measure() -> None:
            for path in PATHS:
                status, body = await asgi_get(app, path)  # warm-up, and proof the route exists
                if status != 200:
                    result.measurements.append(Measurement(path, None, "ms", note=f"status {status}"))
                    continue
                samples: list[float] = []
                for _ in range(max(1, config.request_repeat)):
                    start = time.perf_counter_ns()
                    await asgi_get(app, path)
                    samples.append(time.perf_counter_ns() - start)
                _low, middle = milliseconds(samples)
                note = f"{len(body) / 1024:,.0f} KiB body"
                result.measurements.append(Measurement(path, middle, "ms", median=middle, note=note))

        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(asyncio.wait_for(measure(), timeout=120))
        finally:
            loop.close()
    for path in PATHS[:2]:
        result.absolute_target(f"{path} with {count:,} breakers, median (ms)", path, TARGET_MS, "ms")
    return result


CASES = [("web.endpoints", endpoints)]
