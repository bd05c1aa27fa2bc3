"""Sliding windows of call outcomes, for failure-rate and slow-call-rate decisions.

Both windows keep running totals, so `record` and `totals` are O(1) (the time window is O(1)
amortized: each second's bucket is cleared once, when time first moves past it). A breaker holds its
own lock around them; the windows themselves are not thread-safe.
"""

from __future__ import annotations

from typing import Protocol

from seawall.breakers.settings import BreakerSettings

__all__ = ["CountWindow", "SlidingWindow", "TimeWindow", "make_window"]

WINDOW_TYPES = ("count", "time")


class SlidingWindow(Protocol):
    """What a breaker needs from a window: add one outcome, read (calls, failures, slow) totals."""

    size: int

    def record(self, failure: bool, slow: bool, now: float) -> None: ...

    def totals(self, now: float) -> tuple[int, int, int]: ...

    def reset(self) -> None: ...


class CountWindow:
    """The last `size` calls, as a ring of outcome codes (bit 0: failure, bit 1: slow)."""

    __slots__ = ("_calls", "_failures", "_pos", "_ring", "_slow", "size")

    def __init__(self, size: int) -> None:
        self.size = _check_size(size)
        self._ring = bytearray(size)
        self._pos = 0
        self._calls = 0
        self._failures = 0
        self._slow = 0

    def record(self, failure: bool, slow: bool, now: float = 0.0) -> None:
        pos = self._pos
        if self._calls == self.size:  # full: the oldest outcome leaves as this one enters
            old = self._ring[pos]
            self._failures -= old & 1
            self._slow -= old >> 1
        else:
            self._calls += 1
        code = (1 if failure else 0) | (2 if slow else 0)
        self._ring[pos] = code
        self._failures += code & 1
        self._slow += code >> 1
        pos += 1
        self._pos = 0 if pos == self.size else pos

    def totals(self, now: float = 0.0) -> tuple[int, int, int]:
        return self._calls, self._failures, self._slow

    def reset(self) -> None:
        self._ring = bytearray(self.size)
        self._pos = self._calls = self._failures = self._slow = 0


class TimeWindow:
    """The calls of the last `size` seconds, as a ring of one-second buckets.

    Bucket `i` holds the calls made during second `floor(now)` with `floor(now) % size == i`; the
    window therefore spans between `size - 1` and `size` seconds, Resilience4j's trade-off too.
    """

    __slots__ = (
        "_bucket_calls",
        "_bucket_failures",
        "_bucket_slow",
        "_calls",
        "_failures",
        "_head",
        "_slow",
        "size",
    )

    def __init__(self, size: int) -> None:
        self.size = _check_size(size)
        self._bucket_calls = [0] * size
        self._bucket_failures = [0] * size
        self._bucket_slow = [0] * size
        self._head: int | None = None  # the newest second seen
        self._calls = self._failures = self._slow = 0

    def _advance(self, now: float) -> int:
        """Move the head to second `floor(now)`, clearing the buckets of seconds that left the window."""
        second = int(now // 1)
        head = self._head
        if head is None or second - head >= self.size:
            if self._calls:
                self.reset()
            self._head = second
            return second
        elif second > head:
            size = self.size
            for passed in range(head + 1, second + 1):
                index = passed % size
                self._calls -= self._bucket_calls[index]
                self._failures -= self._bucket_failures[index]
                self._slow -= self._bucket_slow[index]
                self._bucket_calls[index] = self._bucket_failures[index] = self._bucket_slow[index] = 0
            self._head = second
            return second
        return head  # a clock that steps back lands in the current head bucket

    def record(self, failure: bool, slow: bool, now: float) -> None:
        index = self._advance(now) % self.size
        self._bucket_calls[index] += 1
        self._calls += 1
        if failure:
            self._bucket_failures[index] += 1
            self._failures += 1
        if slow:
            self._bucket_slow[index] += 1
            self._slow += 1

    def totals(self, now: float) -> tuple[int, int, int]:
        self._advance(now)
        return self._calls, self._failures, self._slow

    def reset(self) -> None:
        size = self.size
        self._bucket_calls = [0] * size
        self._bucket_failures = [0] * size
        self._bucket_slow = [0] * size
        self._calls = self._failures = self._slow = 0
        self._head = None


def make_window(window_type: str, size: int) -> CountWindow | TimeWindow:
    """A window by its configured name: "count" (last `size` calls) or "time" (last `size` seconds)."""
    if window_type == "count":
        return CountWindow(size)
    if window_type == "time":
        return TimeWindow(size)
    raise ValueError(f"window_type must be one of {WINDOW_TYPES}, got {window_type!r}")


_SIZE = BreakerSettings.rules()["window_size"]  # one rule for the setting and a window made directly


def _check_size(size: int) -> int:
    return int(_SIZE.check("window_size", size))
