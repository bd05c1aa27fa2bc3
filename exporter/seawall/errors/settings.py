"""An error aggregator's settings: one frozen, validated object (`AggregatorSettings`), as the breaker's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from seawall.core.settings import Settings, number, seconds

__all__ = ["AggregatorSettings"]

MAX_BUCKETS = 10_000  # the ring is allocated up front; 10**9 buckets would hang the constructor
MAX_KEPT = 100_000  # recent entries, kept keys and message characters: memory, not counts


@dataclass(frozen=True)
class AggregatorSettings(Settings):
    """A `window` of seconds cut into `buckets`; at most `max_keys` distinct types and sources per
    bucket (the rest count as "_other"), `max_recent` recent errors with messages of up to
    `message_limit` characters."""

    kind_name: ClassVar[str] = "error aggregator"

    window: float = seconds(3600.0)
    buckets: int = number(60, 1, MAX_BUCKETS, integer=True)
    max_recent: int = number(100, 0, MAX_KEPT, integer=True)
    message_limit: int = number(500, 0, MAX_KEPT, integer=True)
    max_keys: int = number(200, 1, MAX_KEPT, integer=True)
