"""Breakers shared by a fleet through a real redis-server the tests start and stop: worker
processes (fork) and, for the cheap cases, several registries of one process acting as workers.

The bound every test holds the fleet to: another worker rejects within `sync_interval` plus two
round trips, each bounded by the backend's `timeout` (docs/architecture.md, "Shared breakers")."""

from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from redis_server import REDIS_SERVER, RedisServer, worker_processes
from seawall import BreakerState, CircuitBreaker, CircuitOpenError, RedisBackend, Registry

pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server not installed")

INTERVAL = 0.05
TIMEOUT = 0.1
BOUND = INTERVAL + 2 * TIMEOUT  # the documented worst case; on loopback it is about INTERVAL


def _boom() -> None:
    raise ConnectionError("dependency down")


def _fail(breaker: CircuitBreaker) -> None:
    with pytest.raises((ConnectionError, CircuitOpenError)):
        breaker.call(_boom)


def _until(predicate: Callable[[], bool], seconds: float = 3.0) -> float:
    """Seconds it took for `predicate` to hold (polled every ms); fails past `seconds`."""
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < seconds, "condition not reached in time"
        time.sleep(0.001)
    return time.monotonic() - start


class Fleet:
    """`n` breakers of one name in separate registries and backends: workers within one process."""

    def __init__(self, url: str, n: int, **settings: Any) -> None:
        self.backends = [RedisBackend(url, timeout=TIMEOUT, sync_interval=INTERVAL) for _ in range(n)]
        self.breakers = [
            CircuitBreaker("dep", registry=Registry(), shared=backend, **settings)
            for backend in self.backends
        ]

    def states(self) -> set[BreakerState]:
        return {breaker.state for breaker in self.breakers}

    def close(self) -> None:
        for backend in self.backends:
            backend.close()


@pytest.fixture
def fleet_of(redis_server: RedisServer) -> Iterator[Callable[..., Fleet]]:
    made: list[Fleet] = []

    def make(n: int = 3, **settings: Any) -> Fleet:
        made.append(Fleet(redis_server.url, n, **settings))
        return made[-1]

    yield make
    for fleet in made:
        fleet.close()


def test_failures_of_all_workers_add_up_to_the_threshold(fleet_of: Callable[..., Fleet]) -> None:
    fleet = fleet_of(3, failure_threshold=3, reset_timeout=30.0)
    for breaker in fleet.breakers:  # one failure each: no worker reaches 3 alone
        _fail(breaker)
        assert breaker.state is BreakerState.CLOSED
    _until(lambda: fleet.states() == {BreakerState.OPEN})
    with pytest.raises(CircuitOpenError) as caught:
        fleet.breakers[0].call(lambda: None)
    assert caught.value.retry_after > 29.0  # the fleet's reset timer
    snap = fleet.breakers[1].snapshot()
    assert (snap.shared, snap.shared_up, snap.shared_errors) == ("redis", True, 0)
    assert snap.transitions == {(BreakerState.CLOSED, BreakerState.OPEN): 1}


def test_a_success_ends_only_its_own_workers_streak(fleet_of: Callable[..., Fleet]) -> None:
    fleet = fleet_of(2, failure_threshold=3, reset_timeout=30.0)
    one, two = fleet.breakers
    _fail(one)
    _fail(one)
    one.call(lambda: None)  # one's streak is 0 again
    _fail(two)
    time.sleep(4 * INTERVAL)
    assert fleet.states() == {BreakerState.CLOSED}  # 0 + 1 < 3
    _fail(two)
    _fail(one)
    _until(lambda: fleet.states() == {BreakerState.OPEN})  # 1 + 2 >= 3


def test_manual_force_open_disable_and_reset_apply_fleet_wide(fleet_of: Callable[..., Fleet]) -> None:
    fleet = fleet_of(3, failure_threshold=2, reset_timeout=30.0)
    one, two, three = fleet.breakers
    one.force_open()
    _until(lambda: fleet.states() == {BreakerState.FORCED_OPEN})
    two.disable()
    _until(lambda: fleet.states() == {BreakerState.DISABLED})
    three.reset()
    _until(lambda: fleet.states() == {BreakerState.CLOSED})
    _fail(one)
    _fail(one)  # trips: open everywhere
    _until(lambda: fleet.states() == {BreakerState.OPEN})
    two.reset()
    _until(lambda: fleet.states() == {BreakerState.CLOSED})


def test_an_unshared_breaker_decides_alone_again(fleet_of: Callable[..., Fleet]) -> None:
    fleet = fleet_of(2, failure_threshold=2, reset_timeout=30.0)
    one, two = fleet.breakers
    two.unshare()
    assert two.snapshot().shared is None  # a local breaker's snapshot again
    one.force_open()
    _until(lambda: one.state is BreakerState.FORCED_OPEN)
    time.sleep(4 * INTERVAL)  # several syncs: the fleet's move does not reach it
    assert two.state is BreakerState.CLOSED
    _fail(two)
    _fail(two)  # its own threshold, its own decision, published nowhere
    assert two.state is BreakerState.OPEN
    one.reset()
    time.sleep(4 * INTERVAL)
    assert (one.state, two.state) == (BreakerState.CLOSED, BreakerState.OPEN)


def test_half_open_probes_are_limited_across_the_fleet(fleet_of: Callable[..., Fleet]) -> None:
    fleet = fleet_of(3, failure_threshold=1, reset_timeout=0.3, half_open_max_calls=1)
    _fail(fleet.breakers[0])
    _until(lambda: fleet.states() == {BreakerState.OPEN})
    time.sleep(0.35)
    probes: list[int] = []
    release = False

    def probe(index: int) -> None:
        probes.append(index)
        _until(lambda: release, 5.0)  # in flight until released

    def caller(index: int) -> None:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and not release:
            try:
                fleet.breakers[index].call(probe, index)
                return
            except CircuitOpenError:
                time.sleep(0.005)

    threads = [threading.Thread(target=caller, args=(index,)) for index in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # every worker asked for a slot many times meanwhile
    assert len(probes) == 1, probes  # one probe in flight for the whole fleet
    release = True
    for thread in threads:
        thread.join(timeout=5)
    _until(lambda: fleet.states() == {BreakerState.CLOSED})  # its success closed every worker


def test_unreachable_redis_means_local_breakers_counted_then_shared_again(
    redis_server: RedisServer, fleet_of: Callable[..., Fleet], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="seawall")
    fleet = fleet_of(2, failure_threshold=2, reset_timeout=30.0)
    one, two = fleet.breakers
    for backend in fleet.backends:
        backend.recheck = 0.2
    redis_server.kill()
    _until(lambda: not one.snapshot().shared_up and not two.snapshot().shared_up)
    started = time.monotonic()
    for _ in range(100):
        one.call(lambda: None)  # calls never touch Redis
    # 100 calls each waiting for the dead server's TIMEOUT would take 10 s; local ones take ~0.1 ms
    # (the bound leaves room for a stalled CI machine, not for one round trip per call)
    assert time.monotonic() - started < 100 * TIMEOUT / 10
    _fail(one)
    _fail(one)
    assert one.state is BreakerState.OPEN  # local decision
    time.sleep(0.3)
    assert two.state is BreakerState.CLOSED  # nothing propagates without Redis
    warnings = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(warnings) == 2  # once per breaker, not once per failed sync
    assert one.snapshot().shared_errors >= 2
    redis_server.start()
    _until(lambda: one.snapshot().shared_up and two.snapshot().shared_up, 5.0)
    # the restarted Redis lost the state: the tripped worker publishes it, the other adopts it
    _until(lambda: two.state is BreakerState.OPEN)
    assert any("reachable again" in r.getMessage() for r in caplog.records)


def test_bad_shared_argument_is_a_type_error_naming_it() -> None:
    with pytest.raises(TypeError, match=r"shared must be a seawall\.RedisBackend"):
        CircuitBreaker("x", registry=Registry(), shared="redis://127.0.0.1:6379")
    with pytest.raises(ValueError, match="sync_interval"):
        RedisBackend("redis://127.0.0.1:1/0", sync_interval=0)


# -- worker processes ----------------------------------------------------------------------------


def _trip_or_watch(breaker: CircuitBreaker, *, trip: bool) -> float | None:
    """Trip the breaker (3 failures) and return when; or call until it rejects (at most 5 s) and
    return when (None: it never did). Wall-clock time, comparable across the processes."""
    if trip:
        for _ in range(3):
            with contextlib.suppress(ConnectionError):
                breaker.call(_boom)
        return time.time()
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        try:
            breaker.call(lambda: None)
        except CircuitOpenError:
            return time.time()
        time.sleep(0.001)
    return None


def _worker(url: str, index: int, role: str, barrier: Any, results: Any, stop: Any) -> None:
    backend = RedisBackend(url, timeout=TIMEOUT, sync_interval=INTERVAL)
    breaker = CircuitBreaker(
        "fleet", registry=Registry(), shared=backend, failure_threshold=3, reset_timeout=0.4
    )
    _until(lambda: breaker.snapshot().shared_up and backend.fleet is not None)
    time.sleep(3 * INTERVAL)  # synced once at least
    barrier.wait(timeout=30)
    if role == "trip":
        time.sleep(0.2)
        results.put((index, "tripped", _trip_or_watch(breaker, trip=True)))
    else:
        results.put((index, "rejected", _trip_or_watch(breaker, trip=False)))
    # then: keep calling a dependency that stays down; count the probes that reach it
    probes: list[float] = []

    def probe() -> None:
        probes.append(time.time())
        raise ConnectionError("still down")

    slowest = 0.0
    while not stop.is_set():
        started = time.monotonic()
        with contextlib.suppress(ConnectionError, CircuitOpenError):
            breaker.call(probe)
        slowest = max(slowest, time.monotonic() - started)
        time.sleep(0.002)
    results.put((index, "probes", (probes, slowest, breaker.snapshot().shared_errors)))
    backend.close()


def test_four_worker_processes_one_fault_trips_all_and_probes_are_fleet_wide(
    redis_server: RedisServer,
) -> None:
    context = multiprocessing.get_context("fork")
    barrier, results, stop = context.Barrier(4), context.Queue(), context.Event()
    roles = ["trip", "watch", "watch", "watch"]
    args = [(redis_server.url, i, role, barrier, results, stop) for i, role in enumerate(roles)]
    with worker_processes(_worker, args) as workers:
        try:
            first = [results.get(timeout=30) for _ in workers]
            time.sleep(2.0)  # five reset periods of 0.4 s with the dependency still down
        finally:
            stop.set()
        last = [results.get(timeout=30) for _ in workers]
    tripped = next(at for _, what, at in first if what == "tripped")
    delays = [at - tripped for _, what, at in first if what == "rejected"]
    print(f"\nshared breaker: other workers rejected {[f'{d * 1000:.1f} ms' for d in delays]} after the trip")
    assert len(delays) == 3
    assert all(d is not None for d in delays)
    assert max(delays) <= BOUND
    probe_times = sorted(t for _, _, (probes, _, _) in last for t in probes)
    gaps = [b - a for a, b in itertools.pairwise(probe_times)]
    print(f"probes: {len(probe_times)} in 2 s, gaps {[f'{g:.2f}' for g in gaps]}")
    # one probe per reset period for the whole fleet (4 unshared workers would send 4)
    assert 1 <= len(probe_times) <= 2.0 / 0.4 + 2
    assert all(gap >= 0.4 - 0.05 for gap in gaps)
    assert max(slowest for _, _, (_, slowest, _) in last) < 0.05  # no call waited for Redis
    assert all(errors == 0 for _, _, (_, _, errors) in last)


def _restart_worker(url: str, index: int, barrier: Any, results: Any, phases: Any) -> None:
    _killed, _restarted, trip = phases
    backend = RedisBackend(url, timeout=TIMEOUT, sync_interval=INTERVAL, recheck=0.2)
    breaker = CircuitBreaker(
        "restart", registry=Registry(), shared=backend, failure_threshold=3, reset_timeout=30.0
    )
    _until(lambda: breaker.snapshot().shared_up)
    barrier.wait(timeout=30)
    slowest, saw_local = 0.0, False
    while not trip.is_set():  # calls go on while Redis is killed and restarted
        started = time.monotonic()
        breaker.call(lambda: None)
        slowest = max(slowest, time.monotonic() - started)
        saw_local = saw_local or not breaker.snapshot().shared_up
        time.sleep(0.002)
    shared_again = breaker.snapshot().shared_up
    rejected_at = _trip_or_watch(breaker, trip=index == 0)
    results.put((index, slowest, saw_local, shared_again, rejected_at, breaker.snapshot().shared_errors))
    backend.close()


def test_four_workers_through_a_redis_kill_go_local_then_share_again(redis_server: RedisServer) -> None:
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(5), context.Queue()
    killed, restarted, trip = context.Event(), context.Event(), context.Event()
    args = [(redis_server.url, i, barrier, results, (killed, restarted, trip)) for i in range(4)]
    with worker_processes(_restart_worker, args) as workers:
        try:
            barrier.wait(timeout=30)
            time.sleep(0.3)
            assert redis_server.process is not None
            os.kill(redis_server.process.pid, signal.SIGKILL)
            redis_server.process.wait(timeout=10)
            killed.set()
            time.sleep(0.7)
            redis_server.start()  # same port, empty
            restarted.set()
            time.sleep(0.8)  # > recheck + a few sync intervals: every worker resynced
        finally:
            trip.set()
        outcomes = sorted(results.get(timeout=30) for _ in workers)
    print(
        f"\nthrough the restart: slowest call {max(o[1] for o in outcomes) * 1000:.2f} ms, failed syncs "
        f"{[o[5] for o in outcomes]}, rejected after the trip "
        f"{[f'{(o[4] - outcomes[0][4]) * 1000:.1f} ms' for o in outcomes[1:]]}"
    )
    assert all(saw_local for _, _, saw_local, _, _, _ in outcomes)  # every worker went local...
    assert all(errors > 0 for *_, errors in outcomes)
    assert max(slowest for _, slowest, *_ in outcomes) < 0.05  # ...without a call waiting on Redis
    assert all(shared for _, _, _, shared, _, _ in outcomes)  # ...and came back shared
    tripped = outcomes[0][4]
    assert all(o[4] is not None and o[4] - tripped <= BOUND for o in outcomes[1:])


def _preloaded_worker(breaker: CircuitBreaker, failures: int, barrier: Any, results: Any) -> None:
    """A forked worker using the breaker its parent made at import (gunicorn `--preload`)."""
    fleet = breaker._fleet
    assert fleet is not None
    results.put(("worker", fleet.worker, fleet.sync._thread is not None and fleet.sync._thread.is_alive()))
    barrier.wait(timeout=30)
    for _ in range(failures):
        _fail(breaker)
    deadline = time.monotonic() + 5.0  # watch the state: a successful call would end the streak
    while breaker.state is not BreakerState.OPEN and time.monotonic() < deadline:
        time.sleep(0.001)
    results.put(("opened", breaker.state is BreakerState.OPEN))


def test_breakers_made_before_a_fork_are_shared_by_the_forked_workers(redis_server: RedisServer) -> None:
    """Made in the parent, used by forked children: each child syncs from a thread of its own
    under its own worker id, so two failures in each of two workers trip a threshold of 4
    (with the parent's thread and id copied they would never be synced, or one streak)."""
    backend = RedisBackend(redis_server.url, timeout=TIMEOUT, sync_interval=INTERVAL)
    breaker = CircuitBreaker(
        "preloaded", registry=Registry(), shared=backend, failure_threshold=4, reset_timeout=30.0
    )
    try:
        _until(lambda: breaker.snapshot().shared_up)
        context = multiprocessing.get_context("fork")
        barrier, results = context.Barrier(2), context.Queue()
        with worker_processes(_preloaded_worker, [(breaker, 2, barrier, results)] * 2) as workers:
            answers = [results.get(timeout=30) for _ in range(2 * len(workers))]
        assert all(worker.exitcode == 0 for worker in workers)
        ids = {answer[1] for answer in answers if answer[0] == "worker"}
        threads = [answer[2] for answer in answers if answer[0] == "worker"]
        opened = [answer[1] for answer in answers if answer[0] == "opened"]
        assert len(ids) == 2
        assert breaker._fleet is not None
        assert breaker._fleet.worker not in ids
        assert threads == [True, True]
        assert opened == [True, True]  # 2 + 2 failures: open
        _until(lambda: breaker.state is BreakerState.OPEN)  # and the parent, a worker too, sees it
    finally:
        backend.close()
