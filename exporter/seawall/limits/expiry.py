"""When async calls under a timeout must be cancelled: one timer per timeout and loop, not per call.

A call under `Timeout(name, seconds)` on a loop is due `seconds` after it started, so the calls of
one timeout on one loop fall due in the order they started. `ExpiryWheel` keeps them in that order
and arms a single loop timer for the earliest one still running: a call costs an append and a flag,
instead of scheduling and cancelling a timer handle (a heap push and a cancelled entry left in the
loop's heap). Calls whose budget an outer deadline cut short are not in order and get their own
timer (`Expiry` is callable for that). Only the loop's own thread touches a wheel.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, cast

__all__ = ["Expiry", "ExpiryWheel", "uncancel"]

EARLY = 1e-6  # seconds: a loop may run a timer this much before its time; not yet due
COMPACT_FLOOR = 64  # entries a wheel may hold before it drops finished ones behind a running call


class Expiry:
    """One async call's deadline (loop time): cancels its task at `at` unless it is `done` first."""

    __slots__ = ("at", "done", "fired", "task")

    def __init__(self, task: asyncio.Task[Any], at: float) -> None:
        self.task: asyncio.Task[Any] | None = task
        self.at = at
        self.done = False
        self.fired = False

    def finish(self) -> None:
        """The call ended: drop the task at once. An entry may wait in a wheel behind a longer
        call, and a task keeps its coroutine's frame and result alive (20k calls of 10 KB behind
        one slow call held 210 MB)."""
        self.done = True
        self.task = None

    def __call__(self) -> None:
        task = self.task
        if not self.done and task is not None:
            self.fired = True
            task.cancel()


class ExpiryWheel:
    """The running calls of one timeout on one loop, in deadline order, and one timer for the first."""

    __slots__ = ("_compact_at", "_entries", "_handle", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._entries: deque[Expiry] = deque()
        self._handle: asyncio.TimerHandle | None = None
        self._compact_at = COMPACT_FLOOR

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, expiry: Expiry) -> None:
        """Track a call whose deadline is no earlier than any tracked one's."""
        entries = self._entries
        while entries and entries[0].done:  # finished calls leave from the front as new ones come
            entries.popleft()
        entries.append(expiry)
        if len(entries) > self._compact_at:
            # Finished calls behind a running one cannot leave from the front: drop them all when
            # the wheel has doubled since the last time (amortized O(1) per call).
            self._entries = entries = deque(entry for entry in entries if not entry.done)
            self._compact_at = max(COMPACT_FLOOR, 2 * len(entries))
        if self._handle is None:
            self._handle = self.loop.call_at(entries[0].at, self._tick)

    def _tick(self) -> None:
        """Cancel every call that is due, then wait for the next running one."""
        self._handle = None
        now = self.loop.time()
        entries = self._entries
        while entries:
            head = entries[0]
            if head.done:
                entries.popleft()
            elif head.at - now > EARLY:
                self._handle = self.loop.call_at(head.at, self._tick)
                return
            else:
                entries.popleft()
                head()


def uncancel(task: asyncio.Task[Any]) -> int:
    """Withdraw our cancellation request (Python 3.11+); the count of requests left."""
    withdraw = getattr(task, "uncancel", None)
    return 0 if withdraw is None else cast(int, withdraw())
