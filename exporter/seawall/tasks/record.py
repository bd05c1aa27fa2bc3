"""A supervised task's state and counts: what `seawall.supervise` runs and reports.

`SupervisedTask` is the single source of truth for its counts (restarts by error type, permanent
failures, start and heartbeat times); exporters and the web layer read `snapshot()`. The restart
loop itself lives in `supervisor.py`, the settings in `settings.py`; this module only records
what happened, under one lock.
"""

from __future__ import annotations

import enum
import threading
import time
from collections import deque
from collections.abc import Callable

from seawall.core.labels import count_error_type
from seawall.core.logsafe import log_value
from seawall.core.snapshots import TaskSnapshot
from seawall.tasks.settings import TaskSettings

MESSAGE_LIMIT = 200  # characters of the last error's (redacted) message that are kept


class TaskState(str, enum.Enum):
    """Where a supervised task is in its life."""

    STARTING = "starting"  # created, its coroutine not yet running
    RUNNING = "running"
    BACKING_OFF = "backing_off"  # it raised; waiting to restart
    FAILED = "failed"  # permanently: the restart budget is spent, or the error is not restartable
    FINISHED = "finished"  # its coroutine returned normally
    STOPPED = "stopped"  # cancelled by shutdown or stop()

    def __str__(self) -> str:
        return self.value


DONE = frozenset({TaskState.FAILED, TaskState.FINISHED, TaskState.STOPPED})


def safe_message(exc: BaseException) -> str:
    """The exception's message redacted, escaped and bounded (`_logsafe`): safe to keep, show, log."""
    return log_value(exc, MESSAGE_LIMIT)


class TaskRecord:
    """The task's state and counters, changed only through the methods below (under the lock)."""

    def __init__(
        self,
        name: str,
        policy: TaskSettings,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.policy = policy
        self._clock = clock
        self._wall = wall_clock
        self._lock = threading.Lock()
        self.state = TaskState.STARTING
        self.restarts = 0
        self.restarts_by_error: dict[str, int] = {}
        self.permanent_failures = 0
        self.last_started_at: float | None = None
        self.last_beat_at: float | None = None
        self.next_restart_at: float | None = None
        self.last_error_type: str | None = None
        self.last_error_message: str | None = None
        self._restart_times: deque[float] = deque()  # monotonic times of restarts inside the window

    def move(self, to: TaskState) -> TaskState:
        """Set the state; returns the previous one."""
        with self._lock:
            previous, self.state = self.state, to
            if to is not TaskState.BACKING_OFF:
                self.next_restart_at = None
            if to is TaskState.RUNNING:
                now = self._wall()
                self.last_started_at = now
                if self.policy.heartbeat_timeout is not None:
                    self.last_beat_at = now  # a start counts as a beat: a task that never beats goes stale
        return previous

    def beat(self) -> None:
        self.last_beat_at = self._wall()  # one attribute store: atomic, no lock needed

    def failed(self, exc: BaseException) -> None:
        message = safe_message(exc)
        with self._lock:
            self.last_error_type = type(exc).__name__
            self.last_error_message = message

    def recent_restarts(self) -> int:
        """Restarts inside the window, the oldest forgotten first."""
        horizon = self._clock() - self.policy.window
        with self._lock:
            times = self._restart_times
            while times and times[0] <= horizon:
                times.popleft()
            return len(times)

    def backing_off(self, delay: float) -> TaskState:
        with self._lock:
            previous, self.state = self.state, TaskState.BACKING_OFF
            self.next_restart_at = self._wall() + delay
        return previous

    def restarted(self, error_type: str) -> None:
        with self._lock:
            self._restart_times.append(self._clock())
            self.restarts += 1
            count_error_type(self.restarts_by_error, error_type)

    def gave_up(self) -> TaskState:
        with self._lock:
            previous, self.state = self.state, TaskState.FAILED
            self.permanent_failures += 1
            self.next_restart_at = None
        return previous

    def snapshot(self) -> TaskSnapshot:
        with self._lock:
            return TaskSnapshot(
                name=self.name,
                state=self.state,
                critical=self.policy.critical,
                restarts=self.restarts,
                restarts_by_error=dict(self.restarts_by_error),
                permanent_failures=self.permanent_failures,
                last_started_at=self.last_started_at,
                last_beat_at=self.last_beat_at,
                heartbeat_timeout=self.policy.heartbeat_timeout,
                next_restart_at=self.next_restart_at,
                last_error_type=self.last_error_type,
                last_error_message=self.last_error_message,
            )


def heartbeat_stale(snapshot: TaskSnapshot, now: float | None = None) -> bool:
    """True when a running task that is expected to beat has not beaten within its timeout."""
    if snapshot.heartbeat_timeout is None or snapshot.last_beat_at is None:
        return False
    if snapshot.state != TaskState.RUNNING:
        return False
    current = time.time() if now is None else now
    return current - snapshot.last_beat_at > snapshot.heartbeat_timeout
