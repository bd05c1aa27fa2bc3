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


class Expiry:
    """One async call's deadline (loop time): cancels its task at `at` unless it is `done` first."""

    __slots__ = ("at", "done", "fired", "task")

    def __init__(self, task: asyncio.Task[Any], at: float) -> None:
        self.task = task
        self.at = at
        self.done = False
        self.fired = False

    def __call__(self) -> None:
        if not self.done:
            self.fired = True
            self.task.cancel()


class ExpiryWheel:
    """The running calls of one timeout on one loop, in deadline order, and one timer for the first."""

    __slots__ = ("_entries", "_handle", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._entries: deque[Expiry] = deque()
        self._handle: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, expiry: Expiry) -> None:
        """Track a call whose deadline is no earlier than any tracked one's."""
        entries = self._entries
        while entries and entries[0].done:  # finished calls leave from the front as new ones come
            entries.popleft()
        entries.append(expiry)
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
