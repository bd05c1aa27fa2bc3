"""Fixed-bucket duration counts kept by a primitive that already times its calls.

A breaker times a call anyway (for slow-call detection, and to publish durations), so counting the
duration into buckets under the lock it takes is cheaper than building an event per call for an
exporter to count: the exporter reads the buckets at scrape time, and the status page gets
percentiles from the same numbers. Not thread-safe on its own: the owner holds its lock.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence

from ._snapshots import HistogramSnapshot

__all__ = ["DEFAULT_DURATION_BUCKETS", "DurationHistogram", "check_buckets"]

# RPC latencies: 5 ms .. 30 s.
DEFAULT_DURATION_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


def check_buckets(buckets: Sequence[float]) -> tuple[float, ...]:
    """Upper bounds in seconds: positive, finite, strictly increasing (+Inf is implied)."""
    if isinstance(buckets, (str, bytes)) or not isinstance(buckets, Sequence):
        raise TypeError(f"buckets must be a sequence of numbers, got {buckets!r}")
    bounds: list[float] = []
    for value in buckets:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"buckets must hold numbers, got {value!r} in {buckets!r}")
        if math.isinf(value) and value > 0:
            continue  # +Inf is always the last bucket
        if not value > 0 or math.isnan(value):
            raise ValueError(f"buckets must be > 0 and finite, got {value!r} in {buckets!r}")
        if bounds and value <= bounds[-1]:
            raise ValueError(f"buckets must be strictly increasing, got {value!r} after {bounds[-1]!r}")
        bounds.append(float(value))
    if not bounds:
        raise ValueError(f"buckets must hold at least one finite bound, got {buckets!r}")
    return tuple(bounds)


class DurationHistogram:
    """Counts per bucket (the last one is +Inf), the sum and the number of observations."""

    __slots__ = ("bounds", "count", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.total += seconds
        self.count += 1

    def snapshot(self) -> HistogramSnapshot:
        return HistogramSnapshot(self.bounds, tuple(self.counts), self.total, self.count)
