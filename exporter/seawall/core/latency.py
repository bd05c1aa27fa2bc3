"""Fixed-bucket duration counts kept by a primitive that already times its calls.

A breaker that is exported times its calls, and counting each duration into a bucket is far
cheaper than building an event per call for an exporter to count: the exporter reads the buckets
at scrape time, and the status page gets percentiles from the same numbers.

`observe` takes no lock, so a breaker's lock-free success path stays lock-free: a bucket is a
`Counter` (`core/counter.py`) and durations wait in a deque (`append` is atomic) until they are
added to the sum, every `FOLD_AT` observations or at read time, under the histogram's own lock. A
snapshot taken while another thread is between its two steps may count a call whose duration is
not in the sum yet; the next snapshot has it.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from seawall.core.counter import Counter
from seawall.core.snapshots import HistogramSnapshot

__all__ = ["DEFAULT_DURATION_BUCKETS", "FOLD_AT", "DurationHistogram", "check_buckets", "outcome_snapshots"]

FOLD_AT = 256  # durations queued before they are added to the sum

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

    __slots__ = ("_counts", "_lock", "_max", "_pending", "_sum", "_ticks", "bounds")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self._counts = [Counter() for _ in range(len(bounds) + 1)]
        self._ticks = [counter.ticks for counter in self._counts]
        self._pending: deque[float] = deque()
        self._sum = 0.0
        self._max: float | None = None  # the largest folded duration (kept at fold time: no per-call cost)
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        next(self._ticks[bisect_left(self.bounds, seconds)])
        pending = self._pending
        pending.append(seconds)
        if len(pending) >= FOLD_AT:
            with self._lock:
                self._fold()

    def _fold(self) -> None:
        """Add the queued durations to the sum (lock held); `popleft` is atomic, so a duration
        appended meanwhile waits for the next fold."""
        pending, total, top = self._pending, self._sum, self._max
        while pending:
            try:
                value = pending.popleft()
            except IndexError:
                break
            total += value
            if top is None or value > top:
                top = value
        self._sum, self._max = total, top

    def snapshot(self) -> HistogramSnapshot:
        with self._lock:
            self._fold()
            counts = tuple(counter.value() for counter in self._counts)
            return HistogramSnapshot(self.bounds, counts, self._sum, sum(counts), self._max)


def outcome_snapshots(
    durations: Mapping[Any, DurationHistogram], skip_empty: tuple[bool, bool] = (False, False)
) -> dict[str, HistogramSnapshot]:
    """Histograms by call outcome for a snapshot: success always (its series exist from the start),
    failure and ignored once they happened. Keys are the outcomes' values (`"success"`, ...).
    `skip_empty` (failure, ignored): the caller already knows those never happened, so their
    histograms need not be read."""
    out: dict[str, HistogramSnapshot] = {}
    skip = {"failure": skip_empty[0], "ignored": skip_empty[1]}
    for outcome, hist in durations.items():
        name = str(getattr(outcome, "value", outcome))
        if skip.get(name, False):
            continue
        snap = hist.snapshot()
        if snap.count or name == "success":
            out[name] = snap
    return out
