"""Shared test fixtures: a fake clock so no test ever sleeps for real."""

from __future__ import annotations

import pytest


class FakeClock:
    """A monotonic clock the test moves by hand: `clock()` returns `now`, `advance(s)` moves it on."""

    __slots__ = ("now",)

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError(f"seconds must be >= 0, got {seconds!r}")
        self.now += seconds
        return self.now

    async def sleep(self, seconds: float) -> None:
        """An async sleep that only advances the clock (for code that takes an injected sleep)."""
        self.advance(max(0.0, seconds))


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()
