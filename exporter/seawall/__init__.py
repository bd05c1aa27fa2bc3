"""seawall: resilience primitives with metrics and traces built in.

The core (breakers, retries, error aggregation, degradation) needs only the standard library;
`seawall.prometheus`, `seawall.otel` and `seawall.starlette` need their extras.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from . import events
from ._aggregator import ErrorAggregator, record_error
from ._breaker import BreakerSettings, CircuitBreaker, CircuitOpenError, breaker
from ._bulkhead import Bulkhead, BulkheadFullError, bulkhead
from ._classify import classify, register_classifier, register_error_type, retry_after_hint
from ._degrade import Feature, FeatureResult, Features, FeatureUnavailableError, safe_call, safe_call_async
from ._enums import BreakerState, CallOutcome, ErrorCategory, FallbackReason, RetryOutcome
from ._latency import DEFAULT_DURATION_BUCKETS
from ._policy import Policy, policy
from ._ratelimit import RateLimitedError, RateLimiter, rate_limiter
from ._redact import redact
from ._redis_limiter import RedisBackend
from ._registry import Registry, default_registry
from ._retry import Retry, retry
from ._snapshots import (
    BreakerSnapshot,
    BulkheadSnapshot,
    FeatureSnapshot,
    HistogramSnapshot,
    RateLimiterSnapshot,
    RegistrySnapshot,
    RetrySnapshot,
    TaskSnapshot,
    TimeoutSnapshot,
)
from ._supervisor import SupervisedTask, Supervisor, current_task, default_supervisor, supervise
from ._task import TaskState
from ._timeout import CallTimeoutError, Timeout, remaining, timeout, within
from .events import EventBus, Listener

try:
    __version__ = version("seawall")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = [
    "DEFAULT_DURATION_BUCKETS",
    "BreakerSettings",
    "BreakerSnapshot",
    "BreakerState",
    "Bulkhead",
    "BulkheadFullError",
    "BulkheadSnapshot",
    "CallOutcome",
    "CallTimeoutError",
    "CircuitBreaker",
    "CircuitOpenError",
    "ErrorAggregator",
    "ErrorCategory",
    "EventBus",
    "FallbackReason",
    "Feature",
    "FeatureResult",
    "FeatureSnapshot",
    "FeatureUnavailableError",
    "Features",
    "HistogramSnapshot",
    "Listener",
    "Policy",
    "RateLimitedError",
    "RateLimiter",
    "RateLimiterSnapshot",
    "RedisBackend",
    "Registry",
    "RegistrySnapshot",
    "Retry",
    "RetryOutcome",
    "RetrySnapshot",
    "SupervisedTask",
    "Supervisor",
    "TaskSnapshot",
    "TaskState",
    "Timeout",
    "TimeoutSnapshot",
    "__version__",
    "breaker",
    "bulkhead",
    "classify",
    "current_task",
    "default_registry",
    "default_supervisor",
    "events",
    "policy",
    "rate_limiter",
    "record_error",
    "redact",
    "register_classifier",
    "register_error_type",
    "remaining",
    "retry",
    "retry_after_hint",
    "safe_call",
    "safe_call_async",
    "supervise",
    "timeout",
    "within",
]
