"""Lock-free counting stays exact: counters and histograms under threads, with readers in between."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator

import pytest
from prometheus_client import CollectorRegistry

import seawall.prometheus as sp
from seawall import CircuitBreaker, Registry, Retry
from seawall.prometheus._store import _FOLD_AT, CountChild, HistogramChild, ValueChild

THREADS = 4
PER_THREAD = 5_000


@pytest.fixture(autouse=True)
def fast_switching() -> Iterator[None]:
    """Switch threads often, so a non-atomic increment would lose counts within the test."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def hammer(work: Callable[[], None], read: Callable[[], object]) -> list[object]:
    """Run `work` PER_THREAD times in THREADS threads while one more thread keeps calling `read`."""
    done = threading.Event()
    seen: list[object] = []

    def writer() -> None:
        for _ in range(PER_THREAD):
            work()

    def reader() -> None:
        while not done.is_set():
            seen.append(read())

    watcher = threading.Thread(target=reader)
    writers = [threading.Thread(target=writer) for _ in range(THREADS)]
    watcher.start()
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join(timeout=60)
    done.set()
    watcher.join(timeout=60)
    assert not any(thread.is_alive() for thread in (*writers, watcher))
    return seen


def test_count_child_is_exact_with_concurrent_reads() -> None:
    child = CountChild()
    seen = hammer(child.inc, lambda: child.value)
    assert child.value == THREADS * PER_THREAD
    assert seen == sorted(seen)  # a read never goes back
    child.inc(2.5)
    assert child.value == THREADS * PER_THREAD + 2.5


def test_histogram_child_is_exact_with_concurrent_reads() -> None:
    child = HistogramChild((0.25, 1.0))
    amounts = iter([0.125, 0.5, 2.0] * (THREADS * PER_THREAD))
    lock = threading.Lock()

    def observe() -> None:
        with lock:
            amount = next(amounts)
        child.observe(amount)

    seen = hammer(observe, child.read)
    counts, total, _ = child.read()
    per_bucket = THREADS * PER_THREAD / 3
    assert sum(counts) == THREADS * PER_THREAD
    assert counts == [pytest.approx(per_bucket, abs=1)] * 3
    # Binary fractions add exactly, so the sum is exact whatever the order.
    expected = sum([0.125, 0.5, 2.0][i % 3] for i in range(THREADS * PER_THREAD))
    assert total == expected
    assert len(child.pending) == 0  # a read folds everything
    totals = [sum(item[0]) for item in seen]  # type: ignore[index]
    assert totals == sorted(totals)


def test_pending_amounts_are_bounded_without_reads() -> None:
    child = HistogramChild((1.0,))
    for _ in range(_FOLD_AT * 10 + 3):
        child.observe(0.5)
    assert len(child.pending) < _FOLD_AT
    assert child.read()[:2] == ([_FOLD_AT * 10 + 3, 0], 0.5 * (_FOLD_AT * 10 + 3))


def test_gauge_child_set_and_inc() -> None:
    child = ValueChild()
    child.set(3)
    child.inc(0.5)
    assert child.value == 3.5


def test_breaker_and_retry_metrics_exact_under_threads() -> None:
    registry, prometheus = Registry(), CollectorRegistry()
    instrumentation = sp.instrument(prometheus, seawall_registry=registry)
    try:
        breaker = CircuitBreaker("threads", registry=registry)
        policy = Retry("threads", registry=registry)
        call = policy(breaker(lambda: None))
        hammer(call, lambda: sp.generate_latest(prometheus))
        total = THREADS * PER_THREAD
        labels = {"breaker": "threads", "outcome": "success"}
        assert prometheus.get_sample_value("seawall_circuit_breaker_calls_total", labels) == total
        assert (
            prometheus.get_sample_value("seawall_circuit_breaker_call_duration_seconds_count", labels)
            == total
        )
        retry_labels = {"retry": "threads", "outcome": "success_without_retry"}
        assert prometheus.get_sample_value("seawall_retry_calls_total", retry_labels) == total
        assert breaker.snapshot().calls["success"] == total
        assert policy.snapshot().calls["success_without_retry"] == total
    finally:
        instrumentation.close()
