"""A user's app as `gunicorn --preload` or `uvicorn --workers N` imports it, for tests/test_multiworker.py.

Everything is made at import, before any fork: the registry, the multiprocess exporter, the
primitives and the Starlette app. `GET /work` makes one call through each primitive and answers
the worker's pid. Its call blocks the event loop for a moment on purpose (a slow dependency
called synchronously), so concurrent connections spread over the workers. With env
`MULTIWORKER_CALLS_AT_IMPORT=k` the module makes k calls through each primitive at import (under
`--preload`: in the parent, before the fork). With `MULTIWORKER_REDIS_URL`, a breaker shared
through that Redis backs `GET /shared`, whose calls always fail (502) until the fleet's breaker
opens (503).
"""

from __future__ import annotations

import os
import time

from prometheus_client import CollectorRegistry
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import seawall
import seawall.prometheus
import seawall.starlette

WORK_SECONDS = 0.01  # how long one /work call blocks its worker's event loop
BULKHEAD_CAPACITY = 3
SHARED_THRESHOLD = 4  # failures across the fleet that open the shared breaker
SYNC_INTERVAL = 0.2  # the exporter's writes: short, so the tests wait little

registry = seawall.Registry()
prometheus_registry = CollectorRegistry()
instrumentation = seawall.prometheus.instrument(
    prometheus_registry, seawall_registry=registry, sync_interval=SYNC_INTERVAL
)
door = seawall.breaker("mw.breaker", registry=registry, failure_threshold=5)
deadline = seawall.timeout("mw.timeout", 2.0, registry=registry)
retrying = seawall.retry("mw.retry", registry=registry, attempts=2, initial=0.0)
gate = seawall.bulkhead("mw.bulkhead", BULKHEAD_CAPACITY, 1.0, registry=registry)

redis_url = os.environ.get("MULTIWORKER_REDIS_URL")
fleet = seawall.RedisBackend(redis_url) if redis_url else None
shared = (
    seawall.breaker(
        "mw.shared", registry=registry, failure_threshold=SHARED_THRESHOLD, reset_timeout=60.0, shared=fleet
    )
    if fleet is not None
    else None
)


def dependency() -> int:
    time.sleep(WORK_SECONDS)
    return os.getpid()


def call_each() -> int:
    """One call through each primitive; the pid that made them."""
    for primitive in (door, deadline, retrying, gate):
        pid = primitive.call(dependency)
    return pid


for _ in range(int(os.environ.get("MULTIWORKER_CALLS_AT_IMPORT", "0"))):
    call_each()


async def work(request: Request) -> JSONResponse:
    return JSONResponse({"pid": call_each()})


def broken_dependency() -> None:
    raise ConnectionError("the dependency is down")


async def call_shared(request: Request) -> JSONResponse:
    assert shared is not None, "set MULTIWORKER_REDIS_URL"
    try:
        shared.call(broken_dependency)
    except seawall.CircuitOpenError:
        return JSONResponse({"pid": os.getpid(), "open": True}, status_code=503)
    except ConnectionError:
        return JSONResponse({"pid": os.getpid(), "open": False}, status_code=502)
    raise AssertionError("broken_dependency returned")


app = seawall.starlette.create_app(
    registry=registry,
    prometheus_registry=prometheus_registry,
    routes=[Route("/work", work), Route("/shared", call_shared)],
    status_page=False,
)
