"""Sliding windows: running totals stay equal to a recount, buckets expire with time."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seawall.breakers.window import CountWindow, TimeWindow, make_window


def test_count_window_keeps_last_n() -> None:
    window = CountWindow(3)
    assert window.totals() == (0, 0, 0)
    window.record(True, False)
    window.record(False, True)
    assert window.totals() == (2, 1, 1)
    window.record(True, True)
    window.record(False, False)  # the first failure leaves
    assert window.totals() == (3, 1, 2)
    window.reset()
    assert window.totals() == (0, 0, 0)


@given(st.integers(1, 20), st.lists(st.tuples(st.booleans(), st.booleans()), max_size=80))
def test_count_window_matches_recount(size: int, outcomes: list[tuple[bool, bool]]) -> None:
    window = CountWindow(size)
    for failure, slow in outcomes:
        window.record(failure, slow)
    last = outcomes[-size:] if outcomes else []
    assert window.totals() == (len(last), sum(f for f, _ in last), sum(s for _, s in last))


def test_time_window_expires_buckets() -> None:
    window = TimeWindow(3)
    window.record(True, False, 100.2)
    window.record(False, True, 101.9)
    assert window.totals(102.5) == (2, 1, 1)
    assert window.totals(103.0) == (1, 0, 1)  # second 100 left the window
    assert window.totals(104.99) == (0, 0, 0)
    window.record(True, False, 500.0)  # a long gap clears everything at once
    assert window.totals(500.0) == (1, 1, 0)
    assert window.totals(1000.0) == (0, 0, 0)


def test_time_window_clock_stepping_back_counts_in_current_bucket() -> None:
    window = TimeWindow(2)
    window.record(True, False, 10.5)
    window.record(True, False, 9.0)
    assert window.totals(10.9) == (2, 2, 0)


@given(
    st.integers(1, 10),
    st.lists(st.tuples(st.floats(0, 3.0), st.booleans(), st.booleans()), max_size=60),
)
def test_time_window_matches_recount(size: int, steps: list[tuple[float, bool, bool]]) -> None:
    window = TimeWindow(size)
    now = 50.0
    seen: list[tuple[int, bool, bool]] = []
    for gap, failure, slow in steps:
        now += gap
        window.record(failure, slow, now)
        seen.append((int(now), failure, slow))
    live = [item for item in seen if item[0] > int(now) - size]
    assert window.totals(now) == (len(live), sum(f for _, f, _ in live), sum(s for _, _, s in live))


def test_make_window_and_bad_sizes() -> None:
    assert isinstance(make_window("count", 5), CountWindow)
    assert isinstance(make_window("time", 5), TimeWindow)
    with pytest.raises(ValueError, match=r"window_type.*'sliding'"):
        make_window("sliding", 5)
    with pytest.raises(ValueError, match=r"window_size must be in \[1, 100_000\], got 0"):
        CountWindow(0)
    with pytest.raises(TypeError, match=r"window_size must be an int, got 2\.5"):
        TimeWindow(2.5)  # type: ignore[arg-type]
