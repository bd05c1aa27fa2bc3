"""A supervised task's settings: one frozen, validated object (`TaskSettings`), as the breaker's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from seawall.core.settings import MAX_COUNT, Settings, flag, number, seconds

__all__ = ["TaskSettings"]


@dataclass(frozen=True)
class TaskSettings(Settings):
    """How a task is restarted: at most `max_restarts` restarts within `window` seconds, after
    delays from `initial` growing by `multiplier` up to `max_delay` (jittered by the fraction
    `jitter`); `restart_on` (as a retry's `retry_on`, None: every Exception) picks the errors worth a
    restart. With `heartbeat_timeout` a running task that does not `beat()` that often is stale;
    a `critical` task that failed for good makes `/health/ready` unhealthy."""

    kind_name: ClassVar[str] = "task"

    max_restarts: int = number(5, 0, MAX_COUNT, integer=True)
    window: float = seconds(300.0)
    initial: float = seconds(1.0)  # > 0: a task restarted at once, for ever, would spin
    max_delay: float = seconds(60.0, zero=True)
    multiplier: float = number(2.0, 1.0, 1_000.0)
    jitter: float = number(1.0, 0.0, 1.0)  # 1 = full jitter, 0 = none
    heartbeat_timeout: float | None = seconds(None, optional=True)
    critical: bool = flag(True)
    restart_on: object = None
