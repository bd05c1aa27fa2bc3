"""Quantiles the status page shows are never beyond what was observed (issue 16)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import seawall
from conftest import FakeClock
from seawall.core.latency import DEFAULT_DURATION_BUCKETS, DurationHistogram


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.floats(min_value=0.0, max_value=100.0), min_size=1, max_size=50),
    q=st.floats(min_value=0.0, max_value=1.0),
)
def test_a_quantile_never_exceeds_the_largest_observation(values: list[float], q: float) -> None:
    histogram = DurationHistogram(DEFAULT_DURATION_BUCKETS)
    for value in values:
        histogram.observe(value)
    snap = histogram.snapshot()
    assert snap.max == max(values)
    estimate = snap.quantile(q)
    assert estimate is not None
    assert 0.0 <= estimate <= max(values)
    merged = snap.merged(snap)
    assert merged.max == max(values)
    assert merged.quantile(q) == pytest.approx(estimate)


def test_a_bulkhead_whose_calls_never_waited_shows_zero_wait() -> None:
    bulkhead = seawall.Bulkhead("pool", 4, registry=seawall.Registry())
    for _ in range(20):
        bulkhead.call(lambda: None)
    wait = bulkhead.snapshot().wait
    assert wait.sum == 0.0
    assert wait.quantile(0.99) == 0.0  # was 5 ms: interpolation inside the first bucket
    assert wait.to_dict()["p99"] == 0.0


def test_a_timeouts_p99_stays_within_what_its_calls_took(fake_clock: FakeClock) -> None:
    timeout = seawall.Timeout("db", 1.0, clock=fake_clock, registry=seawall.Registry())

    def overrun() -> None:
        fake_clock.advance(1.01)

    for _ in range(10):
        with pytest.raises(seawall.CallTimeoutError):
            timeout.call(overrun)
    p99 = timeout.snapshot().durations.quantile(0.99)
    assert p99 == pytest.approx(1.01)  # was 2.49 s: interpolation inside (1, 2.5]


def test_merging_with_an_unknown_maximum_falls_back_to_the_sum() -> None:
    kept = DurationHistogram((1.0, 2.0))
    kept.observe(0.5)
    other = seawall.HistogramSnapshot((1.0, 2.0), (0, 1, 0), 1.2, 1)  # made without a maximum
    merged = kept.snapshot().merged(other)
    assert merged.max is None
    estimate = merged.quantile(1.0)
    assert estimate is not None
    assert estimate <= merged.sum
