"""A hedge's settings: one frozen, validated object (`HedgeSettings`), as every kind's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from seawall.core.settings import Settings, number, seconds

__all__ = ["HEDGE_OUTCOMES", "MIN_SAMPLES", "HedgeSettings"]

# What becomes of extra attempts (the snapshot's `hedges` keys, the metric's `outcome` values).
HEDGE_OUTCOMES = ("sent", "won", "cancelled", "throttled")

MIN_SAMPLES = 20  # latencies known before a percentile replaces the fixed delay
MAX_HEDGES = 10  # extra attempts per call: past a few, a hedge is a load test of the upstream
MAX_WINDOW = 100_000  # latencies kept for the percentile (a sort of them every 16 successes)


@dataclass(frozen=True)
class HedgeSettings(Settings):
    """When to send another attempt (`delay` seconds, or the `percentile` of the last `window`
    successful latencies once 20 are known) and how much extra load is allowed: `max_hedges` per
    call, and `budget` hedges earned per call into a bucket of at most `burst`."""

    kind_name: ClassVar[str] = "hedge"

    delay: float = seconds(0.5, zero=True)
    percentile: float | None = number(None, 0.0, 1.0, low_open=True, optional=True)
    max_hedges: int = number(1, 1, MAX_HEDGES, integer=True)
    budget: float = number(0.1, 0.0, 1.0, low_open=True)
    burst: float = number(10.0, 1.0, 1_000_000.0)
    window: int = number(128, MIN_SAMPLES, MAX_WINDOW, integer=True)
