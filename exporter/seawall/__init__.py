"""seawall: resilience primitives with metrics and traces built in.

The core (breakers, retries, error aggregation, degradation) needs only the standard library;
`seawall.prometheus`, `seawall.otel` and `seawall.starlette` need their extras.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from seawall.breakers.breaker import BreakerSettings, CircuitBreaker, CircuitOpenError, breaker
from seawall.core.enums import BreakerState, CallOutcome, ErrorCategory, FallbackReason, RetryOutcome
from seawall.core.kinds import Kind
from seawall.core.latency import DEFAULT_DURATION_BUCKETS
from seawall.core.redact import redact
from seawall.core.registry import Registry, default_registry
from seawall.core.snapshots import (
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
from seawall.degrade.features import (
    Feature,
    FeatureResult,
    Features,
    FeatureUnavailableError,
    feature,
    safe_call,
    safe_call_async,
)
from seawall.degrade.settings import FeatureSettings
from seawall.errors.aggregator import ErrorAggregator, record_error
from seawall.errors.classify import classify, register_classifier, register_error_type, retry_after_hint
from seawall.errors.settings import AggregatorSettings
from seawall.hedging.hedge import Hedge, HedgeSnapshot, hedge
from seawall.hedging.settings import HedgeSettings
from seawall.limits.bulkhead import Bulkhead, BulkheadFullError, bulkhead
from seawall.limits.policy import Policy, policy
from seawall.limits.ratelimit import RateLimitedError, RateLimiter, rate_limiter
from seawall.limits.redis_backend import RedisBackend
from seawall.limits.settings import BulkheadSettings, RateLimiterSettings, TimeoutSettings
from seawall.limits.timeout import CallTimeoutError, Timeout, remaining, timeout, within
from seawall.retries.retry import Retry, retry
from seawall.retries.settings import RetrySettings
from seawall.tasks.record import TaskState
from seawall.tasks.settings import TaskSettings
from seawall.tasks.supervisor import SupervisedTask, Supervisor, current_task, default_supervisor, supervise

from . import events
from .events import EventBus, Listener

try:
    __version__ = version("seawall")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = [
    "DEFAULT_DURATION_BUCKETS",
    "AggregatorSettings",
    "BreakerSettings",
    "BreakerSnapshot",
    "BreakerState",
    "Bulkhead",
    "BulkheadFullError",
    "BulkheadSettings",
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
    "FeatureSettings",
    "FeatureSnapshot",
    "FeatureUnavailableError",
    "Features",
    "Hedge",
    "HedgeSettings",
    "HedgeSnapshot",
    "HistogramSnapshot",
    "Kind",
    "Listener",
    "Policy",
    "RateLimitedError",
    "RateLimiter",
    "RateLimiterSettings",
    "RateLimiterSnapshot",
    "RedisBackend",
    "Registry",
    "RegistrySnapshot",
    "Retry",
    "RetryOutcome",
    "RetrySettings",
    "RetrySnapshot",
    "SupervisedTask",
    "Supervisor",
    "TaskSettings",
    "TaskSnapshot",
    "TaskState",
    "Timeout",
    "TimeoutSettings",
    "TimeoutSnapshot",
    "__version__",
    "breaker",
    "bulkhead",
    "classify",
    "current_task",
    "default_registry",
    "default_supervisor",
    "events",
    "feature",
    "hedge",
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
