"""A retry's settings: one frozen, validated object (`RetrySettings`), as the breaker's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from seawall.core.settings import MAX_SECONDS, Settings, number, seconds

__all__ = ["MAX_ATTEMPTS", "RetrySettings"]

MAX_ATTEMPTS = 1_000  # attempts of one call; past this a "retry" is a loop that should be a task


@dataclass(frozen=True)
class RetrySettings(Settings):
    """How often and how patiently a call is re-attempted. `retry_on` is None (transient, rate-limit
    and unknown errors), a collection of `ErrorCategory`, or a predicate `(exc) -> bool`."""

    kind_name: ClassVar[str] = "retry"

    attempts: int = number(3, 1, MAX_ATTEMPTS, integer=True)
    initial: float = number(0.1, 0.0, MAX_SECONDS)  # seconds before the first re-attempt
    max_delay: float = number(10.0, 0.0, MAX_SECONDS)
    multiplier: float = number(2.0, 1.0, 1_000.0)
    jitter: float = number(1.0, 0.0, 1.0)  # 1 = full jitter, 0 = none
    deadline: float | None = seconds(None, optional=True)  # the whole call, attempts and sleeps
    retry_on: object = None
