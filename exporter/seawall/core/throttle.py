"""Repeated failures logged without flooding the log: the first few in full, then a summary line.

A broken listener, classifier or hint reader fails on every call it sees: 2,000 errors used to
write 18,000 lines of tracebacks. Per key, the first `first` failures are logged in full (with
their traceback), then one line per `interval` says how many more there were. Every failure is
still counted by its owner; only the logging is throttled.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from seawall.core.logsafe import exception_text, log_value

__all__ = ["FailureLog"]


class _State:
    __slots__ = ("last_summary", "logged", "unreported")

    def __init__(self) -> None:
        self.logged = 0
        self.unreported = 0
        self.last_summary = 0.0


class FailureLog:
    """Logs failures by key (`what` names the failing part, `key` adds its identity): the first
    `first` in full, later ones as one summary line per `interval` seconds."""

    def __init__(
        self,
        logger: logging.Logger,
        first: int = 5,
        interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.first = first
        self.interval = interval
        self.clock = clock
        self._lock = threading.Lock()
        self._states: dict[str, _State] = {}

    def decide(self, key: str) -> tuple[bool, int]:
        """(log this one in full?, how many to report in a summary line now, 0 for none)."""
        with self._lock:
            state = self._states.get(key)
            if state is None:
                if len(self._states) >= 1000:  # keys come from code, but bound them anyway
                    self._states.clear()
                state = self._states[key] = _State()
            if state.logged < self.first:
                state.logged += 1
                return True, 0
            state.unreported += 1
            now = self.clock()
            if now - state.last_summary >= self.interval:
                summary, state.unreported, state.last_summary = state.unreported, 0, now
                return False, summary
            return False, 0

    def is_last_full(self, key: str) -> bool:
        """Whether the failure just logged in full was the last one logged so."""
        with self._lock:
            state = self._states.get(key)
            return state is not None and state.logged == self.first and state.unreported == 0

    def failed(self, what: str, key: str, exc: BaseException) -> None:
        """Log a failure of `what` (keyed by `key`) as the throttle allows."""
        full, summary = self.decide(key)
        if full:
            self.logger.error("%s failed (%s):\n%s", log_value(what), type(exc).__name__, exception_text(exc))
            if self.is_last_full(key):
                self.logger.error(
                    "%s: further failures are logged once per %.0fs", log_value(what), self.interval
                )
        elif summary:
            self.logger.error(
                "%s failed %d more times (latest: %s)", log_value(what), summary, type(exc).__name__
            )
