"""`Counter`: a count that hot paths add to without taking a lock.

Why: a breaker's success path, a retry's first-attempt success and a histogram's `observe` run on
every call and take no lock; a lock there costs more than the rest of the bookkeeping. `next()` on
an `itertools.count` is one C call, atomic under the GIL, so it is the increment: hot paths keep
the counter's `ticks` and call `next(ticks)` (a builtin call: cheaper than any method). Reading a
count takes its next value too, so a reader (one at a time, under the counter's own lock: reads
happen at scrape time) subtracts the reads before it.

Without the GIL (a free-threaded build, `sys._is_gil_enabled()` False) `itertools.count` promises
no atomic increment, so `ticks` is a small iterator adding one to an int under a lock: exact,
slower, and the same `next(ticks)` for the callers.
"""

from __future__ import annotations

import itertools
import sys
import threading
from collections.abc import Callable, Iterator

__all__ = ["Counter", "gil_enabled"]


def gil_enabled() -> bool:
    """True unless this interpreter runs without the GIL (Python 3.13+ free-threaded builds)."""
    probe: Callable[[], bool] | None = getattr(sys, "_is_gil_enabled", None)
    return True if probe is None else bool(probe())


class _LockedTicks:
    """The fallback increment: `next()` adds one under a lock."""

    __slots__ = ("lock", "value")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.value = 0

    def __iter__(self) -> Iterator[int]:
        return self

    def __next__(self) -> int:
        with self.lock:
            value = self.value
            self.value = value + 1
        return value


class Counter:
    """`next(counter.ticks)` counts one, from any thread (no lock on a GIL build); `value()` reads."""

    __slots__ = ("_lock", "_locked", "_reads", "lock_free", "ticks")

    def __init__(self, *, lock_free: bool | None = None) -> None:
        self.lock_free = gil_enabled() if lock_free is None else lock_free
        self._lock = threading.Lock()
        self._reads = 0
        self._locked = None if self.lock_free else _LockedTicks()
        self.ticks: Iterator[int] = itertools.count() if self._locked is None else self._locked

    def add(self) -> None:
        """Count one (off the hot paths; those call `next(ticks)` on a kept `ticks`)."""
        next(self.ticks)

    def value(self) -> int:
        """The number of counts that finished before this read."""
        if self._locked is not None:
            return self._locked.value
        with self._lock:
            reads = self._reads
            self._reads = reads + 1
            return next(self.ticks) - reads

    def __repr__(self) -> str:
        return f"Counter({self.value()}, lock_free={self.lock_free})"
