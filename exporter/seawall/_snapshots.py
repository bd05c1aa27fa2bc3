"""Point-in-time views of primitives, for the web layer and exporters.

Plain frozen data with JSON-friendly fields: reading a snapshot never touches a primitive's lock
for longer than a copy, and serializing it needs no knowledge of the primitive.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ._enums import BreakerState


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    name: str
    state: BreakerState
    failure_threshold: int
    reset_timeout: float
    consecutive_failures: int
    failure_rate: float | None  # 0..1 over the sliding window; None when no window is configured
    failure_rate_threshold: float | None
    window_calls: int  # calls inside the sliding window (0 without one)
    retry_after: float | None  # seconds until a probe is allowed, when open
    seconds_in_state: float
    half_open_in_flight: int
    calls: dict[str, int] = field(default_factory=dict)  # totals since creation, by CallOutcome value

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state.value
        return data


@dataclass(frozen=True, slots=True)
class RetrySnapshot:
    name: str
    attempts: int  # the configured maximum
    calls: dict[str, int] = field(default_factory=dict)  # totals by RetryOutcome value
    retries: int = 0  # re-attempts made in total

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class FeatureSnapshot:
    name: str
    enabled: bool  # answering from its primary right now
    manually_disabled: bool
    breaker_state: BreakerState | None
    has_stale_value: bool
    fallbacks: dict[str, int] = field(default_factory=dict)  # totals by FallbackReason value

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["breaker_state"] = None if self.breaker_state is None else self.breaker_state.value
        return data


@dataclass(frozen=True, slots=True)
class RegistrySnapshot:
    breakers: tuple[BreakerSnapshot, ...]
    retries: tuple[RetrySnapshot, ...]
    features: tuple[FeatureSnapshot, ...]
