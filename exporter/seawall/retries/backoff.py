"""Delay schedules for retries: capped exponential growth with jitter, and server hints.

Pure arithmetic, no I/O and no clock: the retry owns time, this only answers "how long next?".
Jitter spreads clients apart so a recovering dependency is not hit by a synchronized wave.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from seawall.retries.settings import RetrySettings
    from seawall.tasks.settings import TaskSettings


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    return float(value)


class Backoff:
    """`initial * multiplier**(n-1)` capped at `max_delay`, then jittered by the fraction `jitter`."""

    __slots__ = ("initial", "jitter", "max_delay", "multiplier", "rng")

    def __init__(
        self,
        initial: float = 0.1,
        max_delay: float = 10.0,
        multiplier: float = 2.0,
        jitter: float = 1.0,
        rng: random.Random | None = None,
    ) -> None:
        self.initial = _number("initial", initial)
        self.max_delay = _number("max_delay", max_delay)
        self.multiplier = _number("multiplier", multiplier)
        self.jitter = _number("jitter", jitter)
        if self.initial < 0:
            raise ValueError(f"initial must be >= 0, got {initial!r}")
        if self.max_delay < 0:
            raise ValueError(f"max_delay must be >= 0, got {max_delay!r}")
        if self.multiplier < 1:
            raise ValueError(f"multiplier must be >= 1, got {multiplier!r}")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"jitter must be within [0, 1], got {jitter!r}")
        if rng is not None and not isinstance(rng, random.Random):
            raise TypeError(f"rng must be a random.Random, got {rng!r}")
        self.rng = rng if rng is not None else random.Random()

    @classmethod
    def of(cls, settings: RetrySettings | TaskSettings, rng: random.Random | None = None) -> Backoff:
        """The schedule a retry's or a task's (validated) settings describe."""
        return cls(settings.initial, settings.max_delay, settings.multiplier, settings.jitter, rng)

    def base(self, retry_number: int) -> float:
        """The un-jittered delay before re-attempt `retry_number` (1 = the first retry)."""
        if retry_number < 1:
            raise ValueError(f"retry_number must be >= 1, got {retry_number!r}")
        try:
            delay = self.initial * self.multiplier ** (retry_number - 1)
        except OverflowError:
            return self.max_delay
        return min(delay, self.max_delay)

    def delay(self, retry_number: int) -> float:
        """The jittered delay: `d*(1-j) + uniform(0, d*j)`, always within [0, max_delay]."""
        d = self.base(retry_number)
        j = self.jitter
        if j == 0.0 or d == 0.0:
            return d
        return min(self.max_delay, d * (1.0 - j) + self.rng.uniform(0.0, d * j))

    def next_delay(
        self, retry_number: int, hint: float | None = None, remaining: float | None = None
    ) -> float | None:
        """The delay to sleep, or None to give up.

        A server hint (Retry-After) replaces the computed delay, but a hint longer than `max_delay`
        means giving up rather than waiting that long. Nothing may sleep past `remaining`.
        """
        if hint is not None:
            if hint > self.max_delay:
                return None
            delay = max(0.0, hint)
        else:
            delay = self.delay(retry_number)
        if remaining is not None and delay >= remaining:
            return None
        return delay
