"""OpenTelemetry metrics mirroring seawall's Prometheus contract, for services that export metrics
over OTLP instead of being scraped.

Instrument names are chosen so that OpenTelemetry's Prometheus conventions (counters gain `_total`,
the unit `s` gains `_seconds`) give back exactly the contract's names; attributes are the contract's
labels. Counters and the histogram follow events; the state gauges are observable and read the
registry's snapshots at collection time (which also performs a breaker's lazy open -> half_open).
The SDK's own cardinality limit applies (values past it go to its overflow series).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, NoOpMeterProvider, Observation

from seawall.core.enums import BreakerState
from seawall.core.registry import Registry, default_registry

from ..events import (
    BreakerCallCompleted,
    BreakerCallRejected,
    BreakerStateChanged,
    ErrorRecorded,
    Event,
    FallbackUsed,
    FeatureToggled,
    InstrumentationFailed,
    RetryAttemptFinished,
    RetryCompleted,
    handlers,
)

__all__ = ["OtelMetricsInstrumentation", "instrument_metrics"]


def _is_noop(provider: object) -> bool:
    return isinstance(provider, NoOpMeterProvider) or type(provider).__name__ == "_ProxyMeterProvider"


class OtelMetricsInstrumentation:
    """The listener `instrument_metrics()` returns; `active` is False when nothing was subscribed."""

    component = "otel-metrics"

    def __init__(self, meter_provider: Any, seawall_registry: Registry, active: bool) -> None:
        self.meter_provider = meter_provider
        self.seawall_registry = seawall_registry
        self.active = active
        self._unsubscribe: Any = None
        self._states: dict[str, BreakerState] = {}  # breakers known from events (e.g. adapters)
        self._features: dict[str, bool] = {}
        self._lock = threading.Lock()
        if not active:
            return
        from .. import __version__

        meter = meter_provider.get_meter("seawall", __version__)
        self._calls = meter.create_counter("seawall_circuit_breaker_calls", description="Calls by outcome")
        self._duration = meter.create_histogram(
            "seawall_circuit_breaker_call_duration", unit="s", description="Duration of calls let through"
        )
        self._transitions = meter.create_counter(
            "seawall_circuit_breaker_transitions", description="Breaker state transitions"
        )
        self._retry_calls = meter.create_counter("seawall_retry_calls", description="Retried operations")
        self._retry_attempts = meter.create_counter("seawall_retries", description="Re-attempts")
        self._errors = meter.create_counter("seawall_errors", description="Errors recorded")
        self._fallbacks = meter.create_counter("seawall_fallbacks", description="Fallback answers")
        self._instrumentation_errors = meter.create_counter(
            "seawall_instrumentation_errors", description="Failures of seawall's own instrumentation"
        )
        meter.create_observable_gauge(
            "seawall_circuit_breaker_state", [self._observe_states], description="1 for the current state"
        )
        meter.create_observable_gauge(
            "seawall_circuit_breaker_failure_ratio", [self._observe_rates], description="Window failure rate"
        )
        meter.create_observable_gauge(
            "seawall_feature_enabled", [self._observe_features], description="1 while the primary answers"
        )
        self._dispatch = handlers(self)
        self._unsubscribe = seawall_registry.bus.subscribe(self, events=self._dispatch)

    def __call__(self, event: Event, /) -> None:
        handler = self._dispatch.get(event.__class__)
        if handler is not None:
            handler(event)

    def _on_breaker_call_completed(self, event: BreakerCallCompleted) -> None:
        attributes = {"breaker": event.breaker, "outcome": event.outcome.value}
        self._calls.add(1, attributes)
        self._duration.record(event.duration, attributes)

    def _on_breaker_call_rejected(self, event: BreakerCallRejected) -> None:
        self._calls.add(1, {"breaker": event.breaker, "outcome": "rejected"})
        self._states[event.breaker] = event.state

    def _on_breaker_state_changed(self, event: BreakerStateChanged) -> None:
        attributes = {
            "breaker": event.breaker,
            "from_state": event.from_state.value,
            "to_state": event.to_state.value,
        }
        self._transitions.add(1, attributes)
        self._states[event.breaker] = event.to_state

    def _on_retry_attempt_finished(self, event: RetryAttemptFinished) -> None:
        if event.will_retry:
            self._retry_attempts.add(1, {"retry": event.retry, "error_type": event.error_type or "none"})

    def _on_retry_completed(self, event: RetryCompleted) -> None:
        self._retry_calls.add(1, {"retry": event.retry, "outcome": event.outcome.value})

    def _on_error_recorded(self, event: ErrorRecorded) -> None:
        attributes = {
            "source": event.source,
            "error_type": event.error_type,
            "category": event.category.value,
        }
        self._errors.add(1, attributes)

    def _on_fallback_used(self, event: FallbackUsed) -> None:
        self._fallbacks.add(1, {"feature": event.feature, "reason": event.reason.value})

    def _on_feature_toggled(self, event: FeatureToggled) -> None:
        self._features[event.feature] = event.enabled

    def _on_instrumentation_failed(self, event: InstrumentationFailed) -> None:
        self._instrumentation_errors.add(1, {"component": event.component})

    # -- observable gauges -------------------------------------------------------------------
    def _snapshots(self) -> list[Any]:
        snapshots = []
        for breaker in self.seawall_registry.breakers():
            try:
                snapshots.append(breaker.snapshot())
            except Exception as exc:
                self.seawall_registry.bus.report_error(self.component, exc)
        return snapshots

    def _observe_states(self, options: CallbackOptions) -> Iterable[Observation]:
        states = dict(self._states)
        for snapshot in self._snapshots():
            states[snapshot.name] = snapshot.state
        observations = []
        for name, current in states.items():
            for state in BreakerState:
                value = 1 if state is current else 0
                observations.append(Observation(value, {"breaker": name, "state": state.value}))
        return observations

    def _observe_rates(self, options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(0.0 if s.failure_rate is None else s.failure_rate, {"breaker": s.name})
            for s in self._snapshots()
        ]

    def _observe_features(self, options: CallbackOptions) -> Iterable[Observation]:
        enabled = dict(self._features)
        for feature in self.seawall_registry.features():
            try:
                enabled[feature.name] = feature.snapshot().enabled
            except Exception as exc:
                self.seawall_registry.bus.report_error(self.component, exc)
        return [Observation(1 if on else 0, {"feature": name}) for name, on in enabled.items()]

    def close(self) -> None:
        """Unsubscribe (the observable gauges stay registered with the meter, reporting nothing new)."""
        with self._lock:
            if self._unsubscribe is not None:
                self._unsubscribe()
                self._unsubscribe = None
            self.active = False


def instrument_metrics(
    meter_provider: Any = None, *, seawall_registry: Registry | None = None
) -> OtelMetricsInstrumentation:
    """Mirror the metric contract as OpenTelemetry metrics of `meter_provider` (default: the global).

    With the API's no-op/proxy provider nothing is subscribed (`.active` is False).
    """
    if seawall_registry is None:
        seawall_registry = default_registry()
    elif not isinstance(seawall_registry, Registry):
        raise TypeError(f"seawall_registry must be a seawall.Registry, got {seawall_registry!r}")
    provider = metrics.get_meter_provider() if meter_provider is None else meter_provider
    if not isinstance(provider, metrics.MeterProvider):
        raise TypeError(f"meter_provider must be an opentelemetry MeterProvider, got {meter_provider!r}")
    return OtelMetricsInstrumentation(provider, seawall_registry, active=not _is_noop(provider))
