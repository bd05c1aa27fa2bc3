"""The settings of timeouts, bulkheads and rate limiters: frozen, validated objects, as the breaker's."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from seawall.core.settings import MAX_SECONDS, Settings, choice, number, seconds

__all__ = ["BulkheadSettings", "RateLimiterSettings", "TimeoutSettings"]

MAX_CONCURRENT = 1_000_000  # slots of one bulkhead
MAX_RATE = 1_000_000_000.0  # calls per `per`; with `per` >= MIN_PER the interval stays a normal float
MIN_PER = 1e-6  # seconds: a shorter period would make per / rate underflow to 0 (a division by zero)


@dataclass(frozen=True)
class TimeoutSettings(Settings):
    """The budget of each call under the timeout."""

    kind_name: ClassVar[str] = "timeout"

    seconds: float = seconds(None)  # required: there is no sensible default budget


@dataclass(frozen=True)
class BulkheadSettings(Settings):
    """How many calls run at once, and how long a call may wait for a slot (0: refused at once)."""

    kind_name: ClassVar[str] = "bulkhead"

    max_concurrent: int = number(None, 1, MAX_CONCURRENT, integer=True)  # required
    max_wait: float = seconds(0.0, zero=True)


@dataclass(frozen=True)
class RateLimiterSettings(Settings):
    """`rate` calls per `per` seconds sustained, `burst` at once (default: the rate, at least 1)."""

    kind_name: ClassVar[str] = "rate_limiter"

    rate: float = number(None, 0.0, MAX_RATE, low_open=True)  # required
    per: float = number(1.0, MIN_PER, MAX_SECONDS)
    burst: int | None = number(None, 1, integer=True, optional=True)
    max_wait: float = seconds(0.0, zero=True)
    failure_policy: str = choice("open", ("open", "closed"))

    def check(self) -> None:
        if self.burst is None:
            object.__setattr__(self, "burst", max(1, math.floor(self.rate)))
