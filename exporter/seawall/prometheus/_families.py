"""Multiprocess mode's metric objects: the contract as prometheus_client metrics, and the cached
children of one breaker.

In multiprocess mode (gunicorn/uvicorn workers) `MultiProcessCollector` reads only the files that
live prometheus_client metric objects write, so the exporter writes through them on each event
(`_multiprocess`); single-process mode reads the primitives at scrape time instead (`_collector`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from seawall.core.enums import BreakerState, CallOutcome

# Gauge modes in multiprocess mode. Per-state 0/1 gauges take the max over live workers: "open" is 1
# when any worker's breaker is open (the alert should fire), and a dead worker's last state is
# dropped. The failure rate is the worst live worker's. A feature counts as enabled only when it is
# enabled in every live worker (min), so "feature disabled" alerts see any degraded worker.
_GAUGE_MODES = {
    "seawall_circuit_breaker_state": "livemax",
    "seawall_circuit_breaker_failure_ratio": "livemax",
    "seawall_feature_enabled": "livemin",
    "seawall_build_info": "livemax",
}

# In multiprocess mode the worker that is scraped is rarely the one whose breaker changed, so each
# worker refreshes a breaker's state and failure rate from its snapshot at most this often while
# calls go through it.
_MULTIPROCESS_REFRESH_SECONDS = 1.0

_SUCCESS = CallOutcome.SUCCESS
_DURATION_OUTCOMES = (CallOutcome.SUCCESS,)  # pre-created; failure and ignored on first use (fewer lines)


def _multiprocess_enabled() -> bool:
    return "PROMETHEUS_MULTIPROC_DIR" in os.environ or "prometheus_multiproc_dir" in os.environ


def _windowless(breaker: Any) -> bool:
    """True for a breaker configured without a failure-rate or slow-call window."""
    config = getattr(breaker, "config", None)
    if not isinstance(config, Mapping) or "failure_rate_threshold" not in config:
        return False
    return config.get("failure_rate_threshold") is None and config.get("slow_call_rate_threshold") is None


class _BreakerSeries:
    """The cached labelled children of one breaker name."""

    __slots__ = (
        "calls",
        "durations",
        "failure_rate",
        "label",
        "refreshed_at",
        "state",
        "states",
        "success_calls",
        "success_duration",
        "transitions",
    )

    def __init__(self, label: str, metrics: _Metrics) -> None:
        self.label = label
        self.states = {state: metrics.breaker_state.labels(label, state.value) for state in BreakerState}
        self.calls = {outcome: metrics.breaker_calls.labels(label, outcome.value) for outcome in CallOutcome}
        self.durations = {o: metrics.breaker_duration.labels(label, o.value) for o in _DURATION_OUTCOMES}
        self.success_calls = self.calls[_SUCCESS]
        self.success_duration = self.durations[_SUCCESS]
        self.failure_rate = metrics.breaker_failure_rate.labels(label)
        self.transitions: dict[tuple[BreakerState, BreakerState], Any] = {}
        self.state: BreakerState | None = None
        self.refreshed_at = 0.0


class _Metrics:
    """The metric families of one instrumentation, registered in one prometheus registry.

    prometheus_client metrics, which write to the mmap files MultiProcessCollector reads.
    """

    def __init__(self, registry: CollectorRegistry, buckets: tuple[float, ...]) -> None:
        self.collectors: list[Any] = []  # what close() unregisters

        def make(kind: str, name: str, doc: str, labels: Sequence[str]) -> Any:
            made: Any
            if kind == "counter":
                made = Counter(name, doc, labels, registry=registry)
            elif kind == "gauge":
                made = Gauge(name, doc, labels, registry=registry, multiprocess_mode=_GAUGE_MODES[name])  # type: ignore[arg-type]
            else:
                made = Histogram(name, doc, labels, registry=registry, buckets=buckets)
            self.collectors.append(made)
            return made

        self.breaker_state = make(
            "gauge",
            "seawall_circuit_breaker_state",
            "1 for the breaker's current state, 0 for the others",
            ["breaker", "state"],
        )
        self.breaker_calls = make(
            "counter",
            "seawall_circuit_breaker_calls_total",
            "Calls through a breaker by outcome",
            ["breaker", "outcome"],
        )
        self.breaker_duration = make(
            "histogram",
            "seawall_circuit_breaker_call_duration_seconds",
            "Duration of calls a breaker let through",
            ["breaker", "outcome"],
        )
        self.breaker_transitions = make(
            "counter",
            "seawall_circuit_breaker_transitions_total",
            "Breaker state transitions",
            ["breaker", "from_state", "to_state"],
        )
        self.breaker_failure_rate = make(
            "gauge",
            "seawall_circuit_breaker_failure_ratio",
            "Failure rate (0..1) of the breaker's current window",
            ["breaker"],
        )
        self.retry_calls = make(
            "counter", "seawall_retry_calls_total", "Retried operations by outcome", ["retry", "outcome"]
        )
        self.retry_attempts = make(
            "counter",
            "seawall_retries_total",
            "Re-attempts, by the error that caused them",
            ["retry", "error_type"],
        )
        self.errors = make(
            "counter",
            "seawall_errors_total",
            "Errors recorded, by source and class",
            ["source", "error_type", "category"],
        )
        self.feature_enabled = make(
            "gauge", "seawall_feature_enabled", "1 while the feature answers from its primary", ["feature"]
        )
        self.fallbacks = make(
            "counter", "seawall_fallbacks_total", "Fallback answers by reason", ["feature", "reason"]
        )
        self.instrumentation_errors = make(
            "counter",
            "seawall_instrumentation_errors_total",
            "Failures of seawall's own instrumentation",
            ["component"],
        )
        self.build_info = make("gauge", "seawall_build_info", "seawall version", ["version"])
        self.label_overflow = make(
            "counter",
            "seawall_label_overflow_total",
            "Label values collapsed into _other by the cardinality cap",
            ["metric", "label"],
        )
