"""The Redis rate-limiter backend in exact mode (one round trip per decision; leased tokens are
tests/test_leased_limiter.py) against a real redis-server the tests start and stop: one
budget shared by 4 worker processes, exact decisions, async, the failure policy when the server
is killed mid-test (and when it hangs), recovery, and bad input."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import socket
from typing import Any

import pytest

from conftest import FakeClock
from redis_server import REDIS_SERVER, RedisServer, worker_processes
from seawall import RateLimitedError, RateLimiter, RedisBackend, Registry
from seawall.events import RateLimiterBackendFailed

pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server not installed")

HOUR = 3600.0


def shared_limiter(url: str, burst: int, **settings: object) -> RateLimiter:
    """One call an hour sustained, `burst` at once: refills nothing during a test."""
    backend = RedisBackend(url, timeout=1.0, exact=True)
    return RateLimiter("shared", 1.0, per=HOUR, burst=burst, backend=backend, registry=Registry(), **settings)  # type: ignore[arg-type]


def test_decisions_are_exact_and_retry_after_is_the_interval(redis_server: RedisServer) -> None:
    limiter = shared_limiter(redis_server.url, 5)
    for _ in range(5):
        limiter.acquire()
    with pytest.raises(RateLimitedError) as caught:
        limiter.acquire()
    assert caught.value.backend == "redis"
    assert caught.value.retry_after is not None
    assert HOUR - 5 < caught.value.retry_after <= HOUR  # the next slot, by the server's clock
    snap = limiter.snapshot()
    assert snap.calls == {"admitted": 5, "rejected": 1}
    assert (snap.backend, snap.backend_up, snap.backend_errors, snap.available_tokens) == (
        "redis",
        True,
        0,
        None,
    )


def test_limits_are_separate_keys_and_async_shares_them(redis_server: RedisServer) -> None:
    backend = RedisBackend(redis_server.url, timeout=1.0, exact=True)
    registry = Registry()
    one = RateLimiter("one", 1.0, per=HOUR, burst=2, backend=backend, registry=registry)
    two = RateLimiter("two", 1.0, per=HOUR, burst=2, backend=backend, registry=registry)
    one.acquire()
    one.acquire()
    two.acquire()

    async def main() -> list[bool]:
        results = []
        for limiter in (one, two, two):
            try:
                await limiter.acquire_async()
                results.append(True)
            except RateLimitedError:
                results.append(False)
        await backend.aclose()
        return results

    assert asyncio.run(main()) == [False, True, False]
    backend.close()


def _worker(url: str, barrier: Any, results: Any, attempts: int) -> None:
    backend = RedisBackend(url, timeout=1.0, exact=True)
    limiter = RateLimiter("shared", 1.0, per=HOUR, burst=200, backend=backend, registry=Registry())
    assert backend.ping()  # connected before the race starts
    barrier.wait(timeout=30)
    admitted = 0
    for _ in range(attempts):
        try:
            limiter.acquire()
        except RateLimitedError:
            continue
        admitted += 1
    results.put((admitted, limiter.snapshot().backend_errors))


def test_four_worker_processes_share_one_budget(redis_server: RedisServer) -> None:
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(4), context.Queue()
    with worker_processes(_worker, [(redis_server.url, barrier, results, 150)] * 4) as workers:
        outcomes = [results.get(timeout=60) for _ in workers]
    admitted = [count for count, _ in outcomes]
    assert [errors for _, errors in outcomes] == [0, 0, 0, 0]
    assert sum(admitted) == 200  # 600 attempts against a budget of 200: exactly the budget
    assert len([count for count in admitted if count]) >= 2  # no worker can take 200 in 150 tries


def test_killed_server_fails_open_counted_logged_then_recovers(
    redis_server: RedisServer, fake_clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    registry = Registry()
    failures: list[object] = []
    registry.bus.subscribe(failures.append, events=[RateLimiterBackendFailed])
    backend = RedisBackend(redis_server.url, timeout=0.5, recheck=5.0, clock=fake_clock, exact=True)
    limiter = RateLimiter("api", 1.0, per=HOUR, burst=3, backend=backend, registry=registry)
    limiter.acquire()
    redis_server.kill()
    with caplog.at_level(logging.WARNING, logger="seawall"):
        for _ in range(10):
            limiter.acquire()  # open: admitted while the backend cannot decide
    snap = limiter.snapshot()
    assert (snap.backend_up, snap.backend_errors, snap.failure_policy) == (False, 10, "open")
    assert snap.calls == {"admitted": 11, "rejected": 0}
    assert len([r for r in caplog.records if "cannot decide" in r.getMessage()]) == 1  # logged once
    assert failures[0] == RateLimiterBackendFailed("api", "redis", "ConnectionError", "open")
    redis_server.start()  # same port, empty: the budget starts full again
    limiter.acquire()
    assert limiter.snapshot().backend_errors == 11  # still cooling off: Redis not asked yet
    fake_clock.advance(5.0)
    limiter.acquire()
    snap = limiter.snapshot()
    assert (snap.backend_up, snap.backend_errors) == (True, 11)
    assert snap.calls["admitted"] == 13


def test_killed_server_fails_closed_with_the_recheck_as_retry_after(
    redis_server: RedisServer, fake_clock: FakeClock
) -> None:
    backend = RedisBackend(redis_server.url, timeout=0.5, recheck=2.0, clock=fake_clock, exact=True)
    limiter = RateLimiter(
        "api", 1.0, per=HOUR, burst=3, backend=backend, failure_policy="closed", registry=Registry()
    )
    limiter.acquire()
    redis_server.kill()
    with pytest.raises(RateLimitedError) as first:
        limiter.acquire()
    assert first.value.retry_after == 2.0
    fake_clock.advance(0.5)
    with pytest.raises(RateLimitedError) as cooling:
        limiter.acquire()
    assert cooling.value.retry_after == pytest.approx(1.5)

    async def main() -> None:
        with pytest.raises(RateLimitedError):
            await limiter.acquire_async()

    asyncio.run(main())
    snap = limiter.snapshot()
    assert snap.calls == {"admitted": 1, "rejected": 3}
    assert (snap.backend_up, snap.backend_errors) == (False, 3)


def test_a_hanging_server_costs_one_bounded_timeout_per_recheck(fake_clock: FakeClock) -> None:
    with socket.socket() as hung:  # listens, never accepts or answers: connect works, replies never come
        hung.bind(("127.0.0.1", 0))
        hung.listen(8)
        url = f"redis://127.0.0.1:{hung.getsockname()[1]}/0"
        backend = RedisBackend(url, timeout=0.05, recheck=30.0, clock=fake_clock)
        limiter = RateLimiter("api", 10.0, backend=backend, registry=Registry())
        for _ in range(5):
            limiter.acquire()
        snap = limiter.snapshot()
        assert (snap.backend_up, snap.backend_errors) == (False, 5)
        backend.close()


@pytest.mark.parametrize(
    ("kwargs", "error", "text"),
    [
        (
            {"url": "localhost:6379"},
            ValueError,
            "url must be a redis:// or rediss:// URL, got 'localhost:6379'",
        ),
        ({"timeout": 0}, ValueError, r"timeout must be in \(0, 1_000_000\], got 0"),
        ({"recheck": -1}, ValueError, r"recheck must be in \[0, 1_000_000\], got -1"),
        ({"prefix": 3}, TypeError, "prefix must be a str"),
        ({"exact": "yes"}, TypeError, "exact must be a bool, got 'yes'"),
        ({"max_batch": 0}, ValueError, r"max_batch must be in \[1, 1_000_000_000\], got 0"),
        ({"lease": 0}, ValueError, r"lease must be in \(0, 1_000_000\], got 0"),
        ({"lease_ttl": -1}, ValueError, r"lease_ttl must be in \(0, 1_000_000\], got -1"),
        ({"clock": "now"}, TypeError, "clock must be callable"),
    ],
)
def test_bad_settings_name_the_field(kwargs: dict[str, object], error: type[Exception], text: str) -> None:
    with pytest.raises(error, match=text):
        RedisBackend(**kwargs)  # type: ignore[arg-type]
