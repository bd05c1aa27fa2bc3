"""Backoff: schedule, caps, jitter bounds and mean, hints and deadlines."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seawall.retries.backoff import Backoff


def test_exponential_without_jitter() -> None:
    b = Backoff(0.1, 1.0, 2.0, 0.0)
    assert [b.delay(n) for n in range(1, 7)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert b.delay(10_000) == 1.0  # no overflow


@given(
    initial=st.floats(0, 100),
    max_delay=st.floats(0, 100),
    multiplier=st.floats(1, 10),
    jitter=st.floats(0, 1),
    n=st.integers(1, 2000),
    seed=st.integers(0, 2**32),
)
def test_every_delay_within_bounds(
    initial: float, max_delay: float, multiplier: float, jitter: float, n: int, seed: int
) -> None:
    b = Backoff(initial, max_delay, multiplier, jitter, random.Random(seed))
    d = b.delay(n)
    assert 0.0 <= d <= max_delay
    assert d >= b.base(n) * (1 - jitter) - 1e-9


def test_full_jitter_mean_is_about_half() -> None:
    b = Backoff(1.0, 1.0, 2.0, 1.0, random.Random(7))
    samples = [b.delay(1) for _ in range(20_000)]
    assert 0.47 < sum(samples) / len(samples) < 0.53
    assert min(samples) < 0.05
    assert max(samples) > 0.95


def test_partial_jitter_range() -> None:
    b = Backoff(1.0, 10.0, 2.0, 0.25, random.Random(1))
    samples = [b.delay(1) for _ in range(2000)]
    assert min(samples) >= 0.75
    assert max(samples) <= 1.0


def test_seeded_rng_repeats() -> None:
    a = Backoff(rng=random.Random(3))
    b = Backoff(rng=random.Random(3))
    assert [a.delay(n) for n in range(1, 6)] == [b.delay(n) for n in range(1, 6)]


def test_hint_and_deadline() -> None:
    b = Backoff(0.1, 10.0, 2.0, 0.0)
    assert b.next_delay(1) == 0.1
    assert b.next_delay(1, hint=5.0) == 5.0
    assert b.next_delay(1, hint=11.0) is None  # longer than max_delay: give up
    assert b.next_delay(1, hint=5.0, remaining=4.0) is None
    assert b.next_delay(3, remaining=0.3) is None
    assert b.next_delay(3, remaining=0.5) == pytest.approx(0.4)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"initial": -1}, "initial"),
        ({"max_delay": -0.1}, "max_delay"),
        ({"multiplier": 0.5}, "multiplier"),
        ({"jitter": 1.5}, "jitter"),
        ({"jitter": -0.1}, "jitter"),
    ],
)
def test_bad_settings(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Backoff(**kwargs)
    with pytest.raises(TypeError, match="initial"):
        Backoff(initial="1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="rng"):
        Backoff(rng=3)  # type: ignore[arg-type]
