"""`Counter`: exact under a thread hammer, in its lock-free form and in the locked fallback that a
free-threaded build (no GIL) gets."""

from __future__ import annotations

import sys
import threading

import pytest

import seawall
from seawall.core import counter as counter_module
from seawall.core.counter import Counter, gil_enabled
from seawall.core.latency import DurationHistogram

THREADS, ADDS = 8, 20_000


@pytest.mark.parametrize("lock_free", [True, False], ids=["lock-free", "locked"])
def test_concurrent_adds_and_reads_are_exact_and_reads_never_go_back(lock_free: bool) -> None:
    counter = Counter(lock_free=lock_free)
    start = threading.Barrier(THREADS + 1)
    seen: list[int] = []
    stop = threading.Event()

    def add() -> None:
        ticks = counter.ticks
        start.wait(timeout=10)
        for _ in range(ADDS):
            next(ticks)

    def read() -> None:
        start.wait(timeout=10)
        while not stop.is_set():
            seen.append(counter.value())

    adders = [threading.Thread(target=add) for _ in range(THREADS)]
    reader = threading.Thread(target=read)
    for thread in [*adders, reader]:
        thread.start()
    for thread in adders:
        thread.join(timeout=60)
    stop.set()
    reader.join(timeout=10)
    assert not any(thread.is_alive() for thread in [*adders, reader])
    assert counter.value() == THREADS * ADDS
    assert counter.value() == THREADS * ADDS  # reading does not count
    assert seen == sorted(seen)
    assert all(0 <= value <= THREADS * ADDS for value in seen)


def test_a_build_without_the_gil_gets_the_locked_counter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "_is_gil_enabled", lambda: False, raising=False)
    assert not gil_enabled()
    counter = Counter()
    assert not counter.lock_free
    counter.add()
    counter.add()
    assert counter.value() == 2
    assert repr(counter) == "Counter(2, lock_free=False)"
    monkeypatch.setattr(sys, "_is_gil_enabled", lambda: True, raising=False)
    assert Counter().lock_free


def test_an_interpreter_without_the_probe_has_the_gil(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(sys, "_is_gil_enabled", raising=False)
    assert counter_module.gil_enabled()
    assert Counter().lock_free


def test_primitives_count_exactly_on_the_locked_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "_is_gil_enabled", lambda: False, raising=False)
    registry = seawall.Registry()
    breaker = seawall.CircuitBreaker("b", registry=registry)
    retry = seawall.Retry("r", registry=registry)
    histogram = DurationHistogram((0.1, 1.0))
    for _ in range(5):
        breaker.call(lambda: None)
        retry.call(lambda: None)
        histogram.observe(0.5)
    assert breaker.snapshot().calls["success"] == 5
    assert retry.snapshot().calls["success_without_retry"] == 5
    assert histogram.snapshot().counts == (0, 5, 0)
    assert not breaker._machine._successes.lock_free
