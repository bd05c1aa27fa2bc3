"""Timeout, bulkhead and rate-limiter cases: the admitted path (what nearly every call takes),
against the stdlib construct each one wraps and the libraries a user would otherwise pick.

Targets (issue 10): seawall's own per-call cost (no listener) <= 1.0x the stdlib construct's plus
1 us ("<stdlib> + 1 us" rows are that sum, so the ratio reads directly), <= 0.5x the third-party
peers, and with `seawall.prometheus.instrument()` on <= 2x its own cost. The Redis case starts its
own redis-server on 127.0.0.1 (stopped when the case ends) and compares round trips.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import aiolimiter
import async_timeout
import limits.aio.storage
import limits.aio.strategies
import limits.storage
import limits.strategies
import pyrate_limiter

import limits
from stacktools.processes import stop_process

from .harness import CaseResult, Config, Measurement, Subjects, case, seawall_attr

HUGE = 10**9  # a rate no benchmark reaches: every call takes the admitted path


def work() -> int:
    return 1


async def awork() -> int:
    return 1


def registry() -> Any:
    return seawall_attr("seawall.Registry")()


def plus_one_us(result: CaseResult, subject: str) -> str:
    """Add the row `<subject> + 1 us` (the stdlib target's denominator); returns its name."""
    base = result.value(subject)
    name = f"{subject} + 1 us"
    result.measurements.append(Measurement(name, None if base is None else base + 1000.0, "ns/call"))
    return name


def measure(
    result: CaseResult,
    config: Config,
    subjects: Subjects,
    make_seawall: Callable[[], Any],
    *,
    stdlib: str | None = None,
    peers: tuple[str, ...] = (),
    asynchronous: bool = False,
) -> CaseResult:
    """Time `subjects` plus seawall's (bare first), then add the own-cost and peer targets."""
    subjects.build("seawall", make_seawall)
    result.measurements = subjects.overhead(config, asynchronous=asynchronous)
    if stdlib is not None:
        result.ratio_target(f"seawall / ({stdlib} + 1 us)", "seawall", plus_one_us(result, stdlib), 1.0)
    for peer in peers:
        result.ratio_target(f"seawall / {peer}", "seawall", peer, 0.5)
    return result


# -- timeouts ----------------------------------------------------------------------------------


@case("limits.timeout", "async call under a 1 s timeout that it meets")
def timeout_async(result: CaseResult, config: Config) -> CaseResult:

    async def stdlib() -> int:
        async with asyncio.timeout(1.0):
            return await awork()

    async def third_party() -> int:
        async with async_timeout.timeout(1.0):
            return await awork()

    subjects = Subjects(awork, {"asyncio.timeout": stdlib, "async-timeout": third_party})
    make = lambda: seawall_attr("seawall.Timeout")("t", 1.0, registry=registry())(awork)  # noqa: E731
    return measure(
        result, config, subjects, make, stdlib="asyncio.timeout", peers=("async-timeout",), asynchronous=True
    )


@case("limits.timeout.sync", "sync call under a 1 s deadline (no stdlib construct: bare + 1 us)")
def timeout_sync(result: CaseResult, config: Config) -> CaseResult:
    make = lambda: seawall_attr("seawall.Timeout")("t", 1.0, registry=registry())(work)  # noqa: E731
    return measure(result, config, Subjects(work), make, stdlib="bare")


# -- bulkheads ---------------------------------------------------------------------------------


@case("limits.bulkhead", "call through a bulkhead with a free slot, one thread")
def bulkhead_sync(result: CaseResult, config: Config) -> CaseResult:
    semaphore = threading.BoundedSemaphore(8)

    def stdlib() -> int:
        with semaphore:
            return work()

    make = lambda: seawall_attr("seawall.Bulkhead")("b", 8, registry=registry())(work)  # noqa: E731
    subjects = Subjects(work, {"threading.BoundedSemaphore": stdlib})
    return measure(result, config, subjects, make, stdlib="threading.BoundedSemaphore")


@case("limits.bulkhead.async", "awaited call through a bulkhead with a free slot")
def bulkhead_async(result: CaseResult, config: Config) -> CaseResult:
    semaphore = asyncio.Semaphore(8)  # binds to the loop at first use (3.10+)

    async def stdlib() -> int:
        async with semaphore:
            return await awork()

    make = lambda: seawall_attr("seawall.Bulkhead")("b", 8, registry=registry())(awork)  # noqa: E731
    subjects = Subjects(awork, {"asyncio.Semaphore": stdlib})
    return measure(result, config, subjects, make, stdlib="asyncio.Semaphore", asynchronous=True)


# -- rate limiters (local) ---------------------------------------------------------------------


def limiter_peers(
    window: limits.strategies.FixedWindowRateLimiter,
    item: limits.RateLimitItem,
    pyrate: pyrate_limiter.Limiter,
    storage: str,
) -> dict[str, Callable[[], int]]:
    """The two peer libraries admitting one call each, named by where they keep their counts."""

    def with_limits() -> int:
        window.hit(item, "bench")
        return work()

    def with_pyrate() -> int:
        pyrate.try_acquire("bench", blocking=False)
        return work()

    return {f"limits (fixed window, {storage})": with_limits, f"pyrate-limiter ({storage})": with_pyrate}


@case("limits.ratelimit", "admitted call through an in-process rate limiter")
def limiter_sync(result: CaseResult, config: Config) -> CaseResult:
    lock = threading.Lock()
    window = limits.strategies.FixedWindowRateLimiter(limits.storage.MemoryStorage())
    item = limits.RateLimitItemPerSecond(HUGE)
    pyrate = pyrate_limiter.Limiter(pyrate_limiter.Rate(HUGE, pyrate_limiter.Duration.SECOND))

    def stdlib() -> int:  # the construct a bucket needs: a lock around its arithmetic
        with lock:
            pass
        return work()

    make = lambda: seawall_attr("seawall.RateLimiter")("r", HUGE, registry=registry())(work)  # noqa: E731
    peer_calls = limiter_peers(window, item, pyrate, "memory")
    peers = tuple(peer_calls)
    subjects = Subjects(work, {"threading.Lock": stdlib, **peer_calls})
    return measure(result, config, subjects, make, stdlib="threading.Lock", peers=peers)


@case("limits.ratelimit.async", "awaited admitted call through an in-process rate limiter")
def limiter_async(result: CaseResult, config: Config) -> CaseResult:
    leaky = aiolimiter.AsyncLimiter(HUGE, 1.0)
    window = limits.aio.strategies.FixedWindowRateLimiter(limits.aio.storage.MemoryStorage())
    item = limits.RateLimitItemPerSecond(HUGE)

    async def with_aiolimiter() -> int:
        async with leaky:
            return await awork()

    async def with_limits() -> int:
        await window.hit(item, "bench")
        return await awork()

    make = lambda: seawall_attr("seawall.RateLimiter")("r", HUGE, registry=registry())(awork)  # noqa: E731
    peers = ("aiolimiter", "limits.aio (fixed window, memory)")
    subjects = Subjects(awork, {peers[0]: with_aiolimiter, peers[1]: with_limits})
    return measure(result, config, subjects, make, peers=peers, asynchronous=True)


# -- rate limiters (Redis) ---------------------------------------------------------------------


@contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway redis-server on a free 127.0.0.1 port (no persistence); its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (scripts/install-system-deps.sh installs it)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10.0
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_process(process)


FLEET_WORKERS, FLEET_RATE, FLEET_BURST, FLEET_BATCH = 4, 200.0, 20, 16


@case(
    "limits.ratelimit.redis",
    "admitted call through a rate limiter shared in Redis (leased tokens; exact: one round trip each)",
)
def limiter_redis(result: CaseResult, config: Config) -> CaseResult:
    import redis

    with redis_server() as url:
        client = redis.Redis.from_url(url)
        shared = limits.strategies.FixedWindowRateLimiter(limits.storage.storage_from_string(url))
        item = limits.RateLimitItemPerSecond(HUGE)
        bucket = pyrate_limiter.RedisBucket.init(
            [pyrate_limiter.Rate(HUGE, pyrate_limiter.Duration.SECOND)], client, "bench"
        )
        pyrate = pyrate_limiter.Limiter(bucket)

        def ping() -> int:  # the round trip itself, for scale
            client.ping()
            return work()

        def seawall_redis(**options: Any) -> Any:
            backend = seawall_attr("seawall.RedisBackend")(url, timeout=1.0, **options)
            limiter = seawall_attr("seawall.RateLimiter")("r", HUGE, backend=backend, registry=registry())
            return limiter(work)

        peer_calls = limiter_peers(shared, item, pyrate, "redis")
        peers = tuple(peer_calls)
        subjects = Subjects(work, {"redis PING": ping, **peer_calls})
        subjects.build("seawall, exact (one round trip)", lambda: seawall_redis(exact=True))
        measure(result, config, subjects, seawall_redis, peers=peers)
        client.close()
        busiest = fleet_busiest_second(url, 1.2 if config.quick else 2.5)
    subject = f"fleet: busiest second, {FLEET_WORKERS} workers at {FLEET_RATE:.0f}/s (calls)"
    result.measurements.append(Measurement(subject, float(busiest), "calls"))
    bound = FLEET_BURST + FLEET_RATE + FLEET_WORKERS * FLEET_BATCH
    result.absolute_target(
        "fleet-wide admitted per second <= burst + rate + workers x max_batch", subject, bound, "calls"
    )
    return result


def fleet_busiest_second(url: str, seconds: float) -> int:
    """Workers (threads, each with its own backend and so its own lease) call a binding shared
    limit as fast as they can; the most calls the fleet admitted in any one-second window."""
    admitted: list[float] = []
    lock = threading.Lock()
    end = time.monotonic() + seconds
    key = f"fleet-{time.monotonic_ns()}"

    def worker() -> None:
        backend = seawall_attr("seawall.RedisBackend")(url, timeout=1.0, max_batch=FLEET_BATCH)
        limiter = seawall_attr("seawall.RateLimiter")(
            key, FLEET_RATE, burst=FLEET_BURST, backend=backend, registry=registry()
        )
        mine: list[float] = []
        while time.monotonic() < end:
            try:
                limiter.acquire()
                mine.append(time.monotonic())
            except seawall_attr("seawall.RateLimitedError"):
                time.sleep(0.0005)
        backend.close()
        with lock:
            admitted.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(FLEET_WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 30)
    admitted.sort()
    right, busiest = 0, 0
    for left, start in enumerate(admitted):
        while right < len(admitted) and admitted[right] < start + 1.0:
            right += 1
        busiest = max(busiest, right - left)
    return busiest


# -- with Prometheus on ------------------------------------------------------------------------


@case("limits.prometheus", "each primitive's admitted path with seawall.prometheus.instrument() on / off")
def with_prometheus(result: CaseResult, config: Config) -> CaseResult:
    subjects = Subjects(work)
    kinds = {
        "timeout": lambda reg: seawall_attr("seawall.Timeout")("t", 1.0, registry=reg),
        "bulkhead": lambda reg: seawall_attr("seawall.Bulkhead")("b", 8, registry=reg),
        "rate limiter": lambda reg: seawall_attr("seawall.RateLimiter")("r", HUGE, registry=reg),
    }
    closers: list[Any] = []

    def instrumented(make: Callable[[Any], Any]) -> Any:
        from prometheus_client import CollectorRegistry

        reg = registry()
        closers.append(
            seawall_attr("seawall.prometheus.instrument")(CollectorRegistry(), seawall_registry=reg)
        )
        return make(reg)(work)

    for kind, make in kinds.items():
        subjects.build(kind, lambda make=make: make(registry())(work))
        subjects.build(f"{kind} + prometheus", lambda make=make: instrumented(make))
    try:
        result.measurements = subjects.overhead(config)
    finally:
        for closer in closers:
            closer.close()
    for kind in kinds:
        result.ratio_target(f"{kind}: with prometheus / without", f"{kind} + prometheus", kind, 2.0)
    return result
