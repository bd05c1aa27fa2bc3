"""Random work on every kind of primitive, so that every family of the metric contract has series:
used by the multiprocess parity test (in worker processes) and the OpenTelemetry parity test."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Iterator
from typing import Any

import seawall


def fail() -> None:
    raise TimeoutError("slow")


def random_work(registry: seawall.Registry, seed: int, redis_url: str, steps: int = 300) -> None:
    """Breakers (one with a window, one shared through the real Redis at `redis_url`), retries,
    features, errors, timeouts, bulkheads, rate limiters, supervised tasks, a failing listener;
    more names than a cap of 3 admits."""
    rng = random.Random(seed)
    now = [1000.0]

    def clock() -> float:
        return now[0]

    def bad_listener(event: Any) -> None:
        raise RuntimeError("listener")

    registry.bus.subscribe(bad_listener, events=[seawall.events.BreakerStateChanged])
    breakers = [
        seawall.CircuitBreaker(f"b{i}", failure_threshold=2, reset_timeout=5, clock=clock, registry=registry)
        for i in range(4)
    ]
    breakers.append(
        seawall.CircuitBreaker(
            "windowed",
            failure_threshold=10_000,
            failure_rate_threshold=0.9,
            minimum_calls=50,
            clock=clock,
            registry=registry,
        )
    )
    backend = seawall.RedisBackend(redis_url, timeout=1.0)
    breakers.append(seawall.CircuitBreaker("shared", shared=backend, clock=clock, registry=registry))
    retries = [seawall.Retry(f"r{i}", attempts=2, sleep=lambda s: None, registry=registry) for i in range(4)]
    features = [
        seawall.Feature(f"f{i}", fallback=0, failure_threshold=2, clock=clock, registry=registry)
        for i in range(2)
    ]
    timeouts = [seawall.Timeout(f"t{i}", 1.0, clock=clock, registry=registry) for i in range(4)]
    bulkheads = [seawall.Bulkhead(f"h{i}", 1 + i, registry=registry) for i in range(4)]
    limiters = [seawall.RateLimiter(f"l{i}", 5, burst=2, clock=clock, registry=registry) for i in range(4)]
    held: list[seawall.Bulkhead] = []

    def slow() -> None:
        now[0] += 1.5

    for _ in range(steps):
        op = rng.choice(
            [
                "ok",
                "fail",
                "tick",
                "retry_ok",
                "retry_fail",
                "feature",
                "error",
                "timeout",
                "bulkhead",
                "limit",
            ]
        )
        target = rng.randrange(len(breakers))
        with contextlib.suppress(Exception):
            if op == "ok":
                breakers[target].call(lambda: 1)
            elif op == "fail":
                breakers[target].call(fail)
            elif op == "tick":
                now[0] += 3
            elif op == "retry_ok":
                retries[target % 4].call(lambda: 1)
            elif op == "retry_fail":
                retries[target % 4].call(fail if rng.random() < 0.5 else _type_error)
            elif op == "feature":
                features[target % 2].call(fail if rng.random() < 0.5 else (lambda: 1))
            elif op == "error":
                registry.errors.record(rng.choice([TimeoutError(), PermissionError()]), source=f"s{target}")
            elif op == "timeout":
                timeouts[target % 4].call(slow if rng.random() < 0.3 else (lambda: None))
            elif op == "bulkhead":
                bulkhead = bulkheads[target % 4]
                if rng.random() < 0.3:
                    bulkhead.acquire()
                    held.append(bulkhead)
                else:
                    bulkhead.call(lambda: None)
            else:
                limiters[target % 4].call(lambda: None)
    features[0].disable()
    backend.close()
    _tasks(registry, rng)
    _hedges(registry, rng)


def _hedges(registry: seawall.Registry, rng: random.Random) -> None:
    """Hedges (more names than the cap) whose first attempts are slow: hedges sent, won and
    cancelled, and throttled once a small budget is spent."""
    hedges = [seawall.Hedge(f"g{i}", delay=0.0, budget=0.3, burst=1.0, registry=registry) for i in range(4)]

    async def run() -> None:
        for _ in range(8):
            delays = iter([0.2])  # the first attempt is slow (cancelled when hedged); a hedge answers at once

            async def attempt(delays: Iterator[float] = delays) -> int:
                await asyncio.sleep(next(delays, 0.0))
                return 1

            await asyncio.wait_for(hedges[rng.randrange(len(hedges))].call_async(attempt), 10)

    asyncio.run(run())


def _type_error() -> None:
    raise TypeError("bad")


def _tasks(registry: seawall.Registry, rng: random.Random) -> None:
    """A crashing task (fails for good), a beating one left running, one that finishes."""

    async def crash() -> None:
        raise OSError("queue")

    async def finish() -> None:
        return None

    async def no_wait(seconds: float) -> None:
        return None

    async def run() -> None:
        supervisor = seawall.Supervisor(registry=registry, sleep=no_wait)
        await supervisor.supervise("crash", crash, max_restarts=rng.randrange(1, 3)).wait()
        await supervisor.supervise("finish", finish).wait()
        started = asyncio.Event()

        async def beating() -> None:
            seawall.current_task().beat()
            started.set()
            await asyncio.sleep(3600)

        supervisor.supervise("beat", beating, heartbeat_timeout=30.0)
        await asyncio.wait_for(started.wait(), 10)

    asyncio.run(run())
