"""Supervised tasks through the web layer: a real asyncio run under uvicorn restarts a crashing
task and then answers 503 when it is permanently failed; readiness reasons for restarting, stale
and non-critical failures; the status API lists tasks."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

import seawall
from conftest import FakeClock
from seawall.starlette import resilience_routes
from seawall.starlette.health import HealthChecker
from test_stream_slow_clients import LiveServer


class Boom(Exception):
    pass


@pytest.fixture
def crashing_service() -> Iterator[tuple[LiveServer, seawall.Registry]]:
    registry = seawall.Registry()
    supervisor = seawall.Supervisor(registry=registry, shutdown_timeout=2.0)

    async def consumer() -> None:
        await asyncio.sleep(0.05)
        raise Boom("lost the broker at amqp://user:hunter2@mq/")

    async def warmer() -> None:
        await asyncio.Event().wait()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        supervisor.supervise("consumer", consumer, max_restarts=2, window=60, initial=0.4, jitter=0.0)
        supervisor.supervise("warmer", warmer, critical=False)
        yield
        assert await supervisor.shutdown() == []

    app = Starlette(routes=resilience_routes(registry=registry, metrics=False), lifespan=lifespan)
    server = LiveServer(app, lifespan="on")
    try:
        yield server, registry
    finally:
        server.stop()


def test_a_crashing_task_is_restarted_then_its_permanent_failure_answers_503(
    crashing_service: tuple[LiveServer, seawall.Registry],
) -> None:
    server, registry = crashing_service
    seen: list[tuple[int, str, tuple[str, ...]]] = []
    with httpx.Client(base_url=server.base, timeout=5) as client:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            response = client.get("/health/ready")
            body = response.json()
            seen.append((response.status_code, body["status"], tuple(body["reasons"])))
            if response.status_code == 503:
                break
            time.sleep(0.05)
        tasks = {item["name"]: item for item in client.get("/api/resilience/tasks").json()["tasks"]}
        snapshot = client.get("/api/resilience/snapshot").json()
    assert (200, "degraded", ("1 task(s) restarting",)) in seen
    assert seen[-1] == (503, "unhealthy", ("critical task consumer failed permanently (Boom)",))
    assert body["tasks"] == {"total": 2, "failed": ["consumer"], "restarting": [], "stale": []}
    consumer = tasks["consumer"]
    assert (consumer["state"], consumer["restarts"], consumer["permanent_failures"]) == ("failed", 2, 1)
    assert consumer["last_error_type"] == "Boom"
    assert "last_error_message" not in consumer  # messages only with include_error_messages=True
    assert tasks["warmer"]["state"] == "running"
    assert [t["name"] for t in snapshot["tasks"]] == ["consumer", "warmer"]
    assert registry.get("task", "consumer").snapshot().restarts == 2


def evaluate(registry: seawall.Registry) -> dict[str, Any]:
    return asyncio.run(HealthChecker(registry).evaluate())


def test_stale_heartbeats_and_non_critical_failures_only_degrade(fake_clock: FakeClock) -> None:
    registry = seawall.Registry()

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        supervisor = seawall.Supervisor(registry=registry, wall_clock=fake_clock, sleep=fake_clock.sleep)

        async def quiet() -> None:
            await asyncio.Event().wait()

        async def broken() -> None:
            raise Boom("nope")

        supervisor.supervise("poller", quiet, heartbeat_timeout=30.0)
        optional = supervisor.supervise("optional", broken, critical=False, max_restarts=0)
        await optional.wait()
        await asyncio.sleep(0)
        checker = HealthChecker(registry, wall_clock=fake_clock)
        fresh = await checker.evaluate()
        fake_clock.advance(31.0)
        stale = await checker.evaluate()
        await supervisor.shutdown()
        return fresh, stale

    fresh, stale = asyncio.run(scenario())
    assert fresh["status"] == "degraded"
    assert fresh["reasons"] == ["task optional failed permanently (Boom)"]
    assert stale["status"] == "degraded"
    assert stale["reasons"] == [
        "task optional failed permanently (Boom)",
        "1 task(s) with a stale heartbeat",
    ]
    assert stale["tasks"]["stale"] == ["poller"]


def test_no_tasks_no_change() -> None:
    report = evaluate(seawall.Registry())
    assert report["status"] == "healthy"
    assert report["tasks"] == {"total": 0, "failed": [], "restarting": [], "stale": []}
