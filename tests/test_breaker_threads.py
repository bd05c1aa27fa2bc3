"""Threads: the breaker's lock is never held while the user's function runs."""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor

from conftest import FakeClock
from seawall import BreakerState, CircuitBreaker, CircuitOpenError, Registry

THREADS = 16


def test_sixteen_threads_are_inside_the_breaker_together(fake_clock: FakeClock) -> None:
    cb = CircuitBreaker("threads", clock=fake_clock, registry=Registry(), failure_threshold=1000)
    barrier = threading.Barrier(THREADS, timeout=10)

    @cb
    def meet(i: int) -> int:
        barrier.wait()  # raises BrokenBarrierError if the lock kept the others out
        return i

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(meet, range(THREADS), timeout=20))
    assert results == list(range(THREADS))
    assert cb.snapshot().calls["success"] == THREADS


def test_context_manager_blocks_are_per_thread(fake_clock: FakeClock) -> None:
    cb = CircuitBreaker("blocks", clock=fake_clock, registry=Registry(), failure_threshold=1000)
    barrier = threading.Barrier(THREADS, timeout=10)

    def worker(i: int) -> None:
        with cb:
            barrier.wait()
            if i % 2:
                raise ValueError(str(i))

    with ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(worker, i) for i in range(THREADS)]
        errors = [f.exception(timeout=20) for f in futures]
    assert sum(isinstance(e, ValueError) for e in errors) == THREADS // 2
    assert cb.snapshot().calls == {"success": 8, "failure": 8, "rejected": 0, "ignored": 0, "cancelled": 0}


def test_concurrent_probes_never_exceed_limit(fake_clock: FakeClock) -> None:
    cb = CircuitBreaker(
        "probes",
        clock=fake_clock,
        registry=Registry(),
        failure_threshold=1,
        half_open_max_calls=3,
        success_threshold=100,
    )
    with contextlib.suppress(ValueError):
        cb.call(_boom)
    fake_clock.advance(60.0)
    gate = threading.Event()
    lock = threading.Lock()
    inside = 0
    peak = 0

    def probe() -> None:
        nonlocal inside, peak
        with lock:
            inside += 1
            peak = max(peak, inside)
        gate.wait(10)
        with lock:
            inside -= 1

    rejected = 0
    all_rejected = threading.Event()

    def attempt() -> str:
        nonlocal rejected
        try:
            cb.call(probe)
        except CircuitOpenError:
            with lock:
                rejected += 1
                if rejected == THREADS - 3:
                    all_rejected.set()
            return "rejected"
        return "probed"

    with ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(attempt) for _ in range(THREADS)]
        # The 13 rejections happen while 3 probes wait on the gate.
        assert all_rejected.wait(10)
        gate.set()
        outcomes = sorted(f.result(timeout=20) for f in futures)
    assert outcomes.count("probed") == 3
    assert peak == 3
    assert cb.state is BreakerState.HALF_OPEN
    assert cb.snapshot().calls["rejected"] == THREADS - 3


def _boom() -> None:
    raise ValueError("x")


def test_counts_add_up_under_contention(fake_clock: FakeClock) -> None:
    cb = CircuitBreaker("count", clock=fake_clock, registry=Registry(), failure_threshold=10**9)

    def hammer(i: int) -> None:
        for n in range(500):
            with contextlib.suppress(ValueError):
                cb.call(_boom if (n + i) % 3 == 0 else int)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(hammer, range(8), timeout=60))
    calls = cb.snapshot().calls
    assert sum(calls.values()) == 8 * 500
    assert calls["failure"] == sum(1 for i in range(8) for n in range(500) if (n + i) % 3 == 0)


def test_lock_free_counts_exact_with_snapshots_in_between(fake_clock: FakeClock) -> None:
    cb = CircuitBreaker("counts", clock=fake_clock, registry=Registry(), reset_timeout=60.0)
    ok = cb(lambda: None)
    done = threading.Event()
    seen: list[tuple[int, int]] = []

    def reader() -> None:
        while not done.is_set():
            calls = cb.snapshot().calls
            seen.append((calls["success"], calls["rejected"]))

    def succeed() -> None:
        for _ in range(2_000):
            ok()

    watcher = threading.Thread(target=reader)
    watcher.start()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: succeed(), range(4), timeout=60))
    cb.force_open()
    cb.reset()
    for _ in range(5):
        ok()
    # Open it (5 failures) and count rejections from several threads.
    for _ in range(5):
        with contextlib.suppress(ValueError):
            cb.call(_fail)

    def rejected() -> None:
        for _ in range(1_000):
            with contextlib.suppress(CircuitOpenError):
                ok()

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: rejected(), range(4), timeout=60))
    done.set()
    watcher.join(timeout=60)
    assert not watcher.is_alive()
    calls = cb.snapshot().calls
    assert calls["success"] == 8_005
    assert calls["rejected"] == 4_000
    assert calls["failure"] == 5
    assert seen == sorted(seen)


def _fail() -> None:
    raise ValueError("boom")
