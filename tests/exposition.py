"""The metric contract, and a Prometheus exposition read back with prometheus_client's own parser."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

# The metric families seawall exports (DESIGN.md's contract, docs/exporter.md), written out by hand so
# that rules, dashboards and the exporter are all checked against one independent list.
METRIC_CONTRACT = frozenset(
    {
        "seawall_circuit_breaker_state",
        "seawall_circuit_breaker_calls_total",
        "seawall_circuit_breaker_call_duration_seconds",
        "seawall_circuit_breaker_transitions_total",
        "seawall_circuit_breaker_failure_ratio",
        "seawall_retry_calls_total",
        "seawall_retries_total",
        "seawall_errors_total",
        "seawall_feature_enabled",
        "seawall_fallbacks_total",
        "seawall_instrumentation_errors_total",
        "seawall_build_info",
        "seawall_label_overflow_total",
        "seawall_admin_actions_total",
    }
)

# Timeouts, bulkheads and rate limiters (issue 10): their rules and dashboard read these names, which
# the exporter maps from TimeoutSnapshot, BulkheadSnapshot and RateLimiterSnapshot.
LIMITS_METRICS = frozenset(
    {
        "seawall_timeout_calls_total",
        "seawall_timeout_call_duration_seconds",
        "seawall_bulkhead_in_flight",
        "seawall_bulkhead_capacity",
        "seawall_bulkhead_calls_total",
        "seawall_bulkhead_wait_seconds",
        "seawall_rate_limiter_calls_total",
        "seawall_rate_limiter_available_tokens",
        "seawall_rate_limiter_backend_errors_total",
        "seawall_rate_limiter_backend_up",
    }
)
# Breakers shared by a fleet through Redis (issue 18): exported only for shared breakers.
SHARED_BREAKER_METRICS = frozenset(
    {"seawall_circuit_breaker_shared_up", "seawall_circuit_breaker_shared_errors_total"}
)
METRIC_CONTRACT = METRIC_CONTRACT | LIMITS_METRICS | SHARED_BREAKER_METRICS

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(prom: CollectorRegistry) -> Samples:
    """The text exposition of `prom` as {(sample name, sorted labels): value}."""
    text = generate_latest(prom).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def get(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, tuple(sorted(labels.items()))))


def transitions(found: Samples, breaker: str, from_state: str, to_state: str) -> float | None:
    """The breaker's transitions_total sample from one state to another (None: no such series)."""
    return get(
        found,
        "seawall_circuit_breaker_transitions_total",
        breaker=breaker,
        from_state=from_state,
        to_state=to_state,
    )
