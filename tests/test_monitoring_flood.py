"""Monitoring never takes the service out: a flood of /metrics scrapes and snapshot polls under a
real uvicorn on 127.0.0.1 must leave readiness answering 200 within its check's deadline.

Before issue 17 sync readiness checks ran in the same thread pool as /metrics rendering, and the
snapshot route rendered on the event loop: with thousands of breakers and concurrent scrapes every
probe answered 503 (the passing check reported `timeout`).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import CollectorRegistry

import seawall
from seawall.starlette import Check, create_app
from seawall.starlette.routes import METRICS_BULKHEAD
from test_stream_slow_clients import LiveServer

pytestmark = pytest.mark.slow

BREAKERS = 2000
FLOODERS = 60
FLOOD_SECONDS = 4.0
CHECK_DEADLINE = 2.0


def passing_check() -> bool:
    time.sleep(0.005)  # a quick ping of a dependency that is fine
    return True


@pytest.fixture
def service() -> Iterator[tuple[LiveServer, seawall.Registry]]:
    registry = seawall.Registry()
    for i in range(BREAKERS):
        seawall.CircuitBreaker(f"upstream-{i:04d}", registry=registry)
    app = create_app(
        registry=registry,
        prometheus_registry=CollectorRegistry(),
        checks=[Check("db", passing_check, timeout=CHECK_DEADLINE)],
        status_cache_seconds=0,  # every poll builds: the worst case for the event loop
    )
    server = LiveServer(app)
    try:
        yield server, registry
    finally:
        server.stop()


async def flood(base: str, stop: threading.Event, answers: Counter[int | str]) -> None:
    # No keep-alive: this client shares the test process's GIL with the server and the renders,
    # so it can be starved past uvicorn's 5 s idle timeout and reuse a connection the server has
    # just closed (a client-side race seen once in ~8 runs, not a refusal by the service).
    limits = httpx.Limits(max_connections=FLOODERS, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:

        async def hammer(path: str) -> None:
            while not stop.is_set():
                try:
                    answers[(await client.get(path)).status_code] += 1
                except httpx.HTTPError as exc:
                    answers[f"{path}: {exc!r}"] += 1

        paths = ["/metrics", "/api/resilience/snapshot"]
        await asyncio.gather(*(hammer(paths[i % 2]) for i in range(FLOODERS)))


@pytest.mark.timeout(60)
def test_readiness_stays_200_within_its_deadline_under_a_scrape_flood(
    service: tuple[LiveServer, seawall.Registry],
) -> None:
    server, registry = service
    stop = threading.Event()
    answers: Counter[int | str] = Counter()
    flooder = threading.Thread(target=lambda: asyncio.run(flood(server.base, stop, answers)), daemon=True)
    flooder.start()
    probes: list[tuple[int, float, str]] = []
    try:
        time.sleep(0.5)  # let the flood build up
        with httpx.Client(base_url=server.base, timeout=10) as client:
            deadline = time.monotonic() + FLOOD_SECONDS
            while time.monotonic() < deadline:
                start = time.monotonic()
                response = client.get("/health/ready")
                elapsed = time.monotonic() - start
                probes.append((response.status_code, elapsed, response.json()["checks"]["db"]["status"]))
                time.sleep(0.2)
    finally:
        stop.set()
        flooder.join(timeout=30)
    assert not flooder.is_alive()
    assert sum(answers.values()) > FLOODERS, answers  # the flood really ran
    assert len(probes) >= 5
    assert all(status == 200 and check == "pass" for status, _, check in probes), probes
    assert max(elapsed for _, elapsed, _ in probes) < CHECK_DEADLINE, probes
    # Renders beyond the bulkhead's slots queued or were refused, and both are counted.
    gate = registry.get("bulkhead", METRICS_BULKHEAD).snapshot()
    assert gate.max_concurrent == 2
    assert answers[200] > 0
    assert set(answers) <= {200, 503}, answers


def test_scrapes_past_the_bulkhead_queue_get_503_and_are_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    from starlette.testclient import TestClient

    from seawall.starlette import routes

    monkeypatch.setattr(routes, "METRICS_QUEUE_SECONDS", 0.05)
    registry = seawall.Registry()
    app = create_app(registry=registry, prometheus_registry=CollectorRegistry())
    gate = registry.get("bulkhead", METRICS_BULKHEAD)
    with TestClient(app) as client:
        assert client.get("/metrics").status_code == 200
        gate.acquire()
        gate.acquire()  # both render slots taken, as by two slow scrapes
        try:
            busy = client.get("/metrics")
        finally:
            gate.release()
            gate.release()
        assert client.get("/metrics").status_code == 200
    assert busy.status_code == 503
    assert busy.json()["error_code"] == "metrics_busy"
    assert busy.headers["retry-after"] == "1"
    assert gate.snapshot().calls["rejected"] == 1


def test_a_stream_frame_is_bounded_and_shows_tripped_breakers_first() -> None:
    from seawall.starlette import SnapshotStream
    from seawall.starlette.stream import FRAME_ITEMS

    registry = seawall.Registry()
    breakers = [seawall.CircuitBreaker(f"b{i:04d}", registry=registry) for i in range(FRAME_ITEMS + 100)]
    breakers[-1].force_open()
    frame = SnapshotStream(registry)._frame().decode()
    payload = json.loads(frame.split("data: ", 1)[1])
    assert len(payload["breakers"]) == FRAME_ITEMS
    assert payload["breakers"][0]["name"] == breakers[-1].name
    assert payload["totals"]["breaker"] == FRAME_ITEMS + 100
    assert payload["truncated"] is True
