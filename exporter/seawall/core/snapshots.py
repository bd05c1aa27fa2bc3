"""Point-in-time views of primitives, for the web layer and exporters.

Plain frozen data with JSON-friendly fields: reading a snapshot never touches a primitive's lock
for longer than a copy, and serializing it needs no knowledge of the primitive.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from seawall.core.enums import BreakerState


@dataclass(frozen=True, slots=True)
class HistogramSnapshot:
    """Durations in fixed buckets: `counts[i]` observations were <= `bounds[i]` (and above the bound
    before it); the last count is above every bound (+Inf)."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    sum: float
    count: int
    max: float | None = None  # the largest observation, when the histogram kept it

    def quantile(self, q: float) -> float | None:
        """The q-quantile (0..1) estimated as Prometheus' histogram_quantile does (linear inside the
        bucket, the highest finite bound when it falls in +Inf), but never above the largest
        observation: interpolation alone shows "p99 5 ms" for waits that were all 0. None without
        observations."""
        if not 0 <= q <= 1:
            raise ValueError(f"q must be in [0, 1], got {q!r}")
        if self.count == 0:
            return None
        rank = q * self.count
        seen = 0
        lower = 0.0
        estimate = self.bounds[-1]
        for index, bound in enumerate(self.bounds):
            in_bucket = self.counts[index]
            if in_bucket and seen + in_bucket >= rank:
                estimate = lower + (bound - lower) * ((rank - seen) / in_bucket)
                break
            seen += in_bucket
            lower = bound
        ceiling = self.sum if self.max is None else self.max  # durations are >= 0: max <= sum
        return min(estimate, max(ceiling, 0.0))

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations at or below it) per bucket, `inf` last: the `le` series."""
        running = 0
        out = []
        for bound, count in zip((*self.bounds, math.inf), self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out

    def merged(self, other: HistogramSnapshot) -> HistogramSnapshot:
        """The sum of two histograms with the same bounds (for series folded into `_other`)."""
        if other.bounds != self.bounds:
            raise ValueError(f"cannot merge histograms with bounds {self.bounds!r} and {other.bounds!r}")
        counts = tuple(a + b for a, b in zip(self.counts, other.counts, strict=True))
        sides = [(hist.count, hist.max) for hist in (self, other) if hist.count]
        known = [top for _, top in sides if top is not None]
        top = max(known) if known and len(known) == len(sides) else None  # unknown if either is
        return HistogramSnapshot(self.bounds, counts, self.sum + other.sum, self.count + other.count, top)

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "sum": self.sum,
            "p50": self.quantile(0.5),
            "p99": self.quantile(0.99),
        }


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
    # transitions since creation: (from_state, to_state) -> count
    transitions: dict[tuple[BreakerState, BreakerState], int] = field(default_factory=dict)
    # call durations by outcome (success, failure, ignored), while durations are recorded
    durations: dict[str, HistogramSnapshot] = field(default_factory=dict)
    shared: str | None = None  # "redis" when the state is shared by a fleet (breakers/shared.py)
    shared_up: bool = True  # False while the shared state cannot be reached (deciding locally)
    shared_errors: int = 0  # failed syncs with the shared state since creation

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["state"] = self.state.value
        data["calls"] = dict(self.calls)
        data["transitions"] = self.transitions_json()
        data["durations"] = self.durations_json()
        return data

    def transitions_json(self) -> list[dict[str, Any]]:
        return [
            {"from": frm.value, "to": to.value, "count": count}
            for (frm, to), count in self.transitions.items()
        ]

    def durations_json(self) -> dict[str, dict[str, Any]]:
        return {outcome: hist.to_dict() for outcome, hist in self.durations.items()}


@dataclass(frozen=True, slots=True)
class RetrySnapshot:
    name: str
    attempts: int  # the configured maximum
    calls: dict[str, int] = field(default_factory=dict)  # totals by RetryOutcome value
    retries: int = 0  # re-attempts made in total
    retries_by_error: dict[str, int] = field(default_factory=dict)  # re-attempts by error class name

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
class TimeoutSnapshot:
    name: str
    seconds: float  # the configured budget
    calls: dict[str, int]  # totals: success, failure, timed_out, cancelled
    durations: HistogramSnapshot  # every finished call, timed-out and cancelled ones included

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "seconds": self.seconds,
            "calls": dict(self.calls),
            "durations": self.durations.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class BulkheadSnapshot:
    name: str
    max_concurrent: int
    max_wait: float
    in_flight: int  # calls inside right now
    waiting: int  # calls queued for a slot right now
    calls: dict[str, int]  # totals: admitted, rejected, cancelled (while queued)
    wait: HistogramSnapshot  # seconds each call waited for its slot, or waited before giving up

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["calls"] = dict(self.calls)
        data["wait"] = self.wait.to_dict()
        return data


@dataclass(frozen=True, slots=True)
class RateLimiterSnapshot:
    name: str
    rate: float  # calls admitted per `per` seconds, sustained
    per: float
    burst: int  # calls admitted at once from a full bucket
    backend: str  # "local" or "redis"
    calls: dict[str, int]  # totals: admitted, rejected
    available_tokens: float | None  # local backend only: calls admissible right now
    backend_errors: int  # decisions the backend could not make (Redis unreachable, timed out)
    backend_up: bool  # the last backend decision worked (always True for the local backend)
    failure_policy: str  # what a call gets while the backend is down: "open" admits, "closed" rejects

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class RegistrySnapshot:
    """The snapshots of every primitive of a registry, by kind (every declared kind is a key)."""

    by_kind: Mapping[str, tuple[Any, ...]]

    def of(self, kind: str) -> tuple[Any, ...]:
        """The snapshots of one kind (`Kind.BREAKER` or "breaker"), in the order they joined."""
        return self.by_kind[kind]

    @property
    def breakers(self) -> tuple[BreakerSnapshot, ...]:
        return self.by_kind["breaker"]

    @property
    def retries(self) -> tuple[RetrySnapshot, ...]:
        return self.by_kind["retry"]

    @property
    def features(self) -> tuple[FeatureSnapshot, ...]:
        return self.by_kind["feature"]

    def to_dict(self) -> dict[str, list[dict[str, Any]]]:
        """JSON-ready, keyed by kind."""
        return {str(kind): [snap.to_dict() for snap in snaps] for kind, snaps in self.by_kind.items()}


@dataclass(frozen=True, slots=True)
class TaskSnapshot:
    """A supervised task (`seawall.supervise`). Timestamps are wall-clock epoch seconds, so
    Prometheus can compare them with `time()`; `last_error_message` is redacted and bounded."""

    name: str
    state: str  # a TaskState value: starting, running, backing_off, failed, finished, stopped
    critical: bool  # a permanent failure makes /health/ready unhealthy
    restarts: int
    restarts_by_error: dict[str, int] = field(default_factory=dict)  # by error class name
    permanent_failures: int = 0
    last_started_at: float | None = None
    last_beat_at: float | None = None  # the last beat(), or the last start when beating is expected
    heartbeat_timeout: float | None = None
    next_restart_at: float | None = None  # while backing_off
    last_error_type: str | None = None
    last_error_message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = str(self.state)
        return data
