"""The small closed vocabularies shared by primitives, events and exporters.

They are str-valued so they serialize as themselves (JSON, label values) and compare to plain strings.
"""

from __future__ import annotations

import enum


class StrValue(str, enum.Enum):
    """The base of seawall's vocabularies: `str()` and f-strings give the bare value."""

    def __str__(self) -> str:
        return str.__str__(self)


class BreakerState(StrValue):
    """States of a circuit breaker; `forced_open` and `disabled` are set only by hand."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"
    DISABLED = "disabled"


class CallOutcome(StrValue):
    """How one call through a breaker ended, as counted in `seawall_circuit_breaker_calls_total`."""

    SUCCESS = "success"
    FAILURE = "failure"
    REJECTED = "rejected"
    IGNORED = "ignored"
    CANCELLED = "cancelled"  # ended by a BaseException (asyncio cancellation, KeyboardInterrupt)


class RetryOutcome(StrValue):
    """How one retried operation ended, as counted in `seawall_retry_calls_total`."""

    SUCCESS_WITHOUT_RETRY = "success_without_retry"
    SUCCESS_WITH_RETRY = "success_with_retry"
    FAILED_WITHOUT_RETRY = "failed_without_retry"
    FAILED_WITH_RETRY = "failed_with_retry"


class ErrorCategory(StrValue):
    """What kind of failure an exception is; decides whether retrying can help."""

    TRANSIENT = "transient"
    PERMANENT = "permanent"
    RATE_LIMIT = "rate_limit"
    AUTH = "auth"
    VALIDATION = "validation"
    UNKNOWN = "unknown"


class FallbackReason(StrValue):
    """Why a feature answered with its fallback, as the `reason` label of `seawall_fallbacks_total`."""

    DISABLED = "disabled"  # switched off by hand
    CIRCUIT_OPEN = "circuit_open"  # switched off by its breaker after repeated failures
    ERROR = "error"  # the primary raised
    STALE = "stale"  # served the last good value instead of failing
