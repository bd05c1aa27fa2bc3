"""Multiprocess mode: the exporter writes each event through to prometheus_client's metric objects.

Why not read the primitives at scrape time here too: `MultiProcessCollector` reads only the files
that live metric objects write, and the worker that is scraped cannot read another worker's
primitives. Writing through on each event keeps the sums across workers exact at every scrape, and
a worker that dies (OOM, max_requests recycling) has lost nothing; a periodic copy of each worker's
counts would lag and lose the last interval. The cost is prometheus_client's per increment.

`MultiprocessWriter` subscribes to the event types it counts; a dict dispatches on the type.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from seawall.core.enums import BreakerState, CallOutcome, FallbackReason, RetryOutcome
from seawall.core.kinds import Kind
from seawall.core.labels import LabelGuard, warn_overflow
from seawall.core.registry import Registry

from ..events import (
    BreakerCallCompleted,
    BreakerCallRejected,
    BreakerStateChanged,
    ErrorRecorded,
    Event,
    FallbackUsed,
    FeatureToggled,
    InstrumentationFailed,
    PrimitiveRegistered,
    RetryAttemptFinished,
    RetryCompleted,
    handlers,
)
from ._collector import _SEVERITY
from ._families import _MULTIPROCESS_REFRESH_SECONDS, _SUCCESS, _BreakerSeries, _Metrics, _windowless

__all__ = ["MultiprocessWriter"]

log = logging.getLogger("seawall")


class MultiprocessWriter:
    """Events in, prometheus_client children counted; the base of `PrometheusInstrumentation`
    in multiprocess mode. The subclass sets the attributes declared here, then calls
    `_init_listener()` before subscribing itself for the event types of its dispatch table."""

    component: str
    seawall_registry: Registry
    max_label_values: int
    multiprocess: bool
    _metrics: _Metrics
    _lock: threading.RLock

    def _init_listener(self) -> None:
        """The series caches and the dispatch table (once, from the subclass's __init__)."""
        self._guards: dict[tuple[str, str], LabelGuard] = {}
        self._breakers: dict[str, _BreakerSeries] = {}  # by name
        self._breaker_labels: dict[
            str, _BreakerSeries
        ] = {}  # by label value; names past the cap share _other
        self._retries: dict[str, tuple[str, dict[RetryOutcome, Any]]] = {}
        self._features: dict[str, tuple[str, Any, dict[FallbackReason, Any]]] = {}
        self._folded: dict[str, list[str]] = {}  # breaker names per label (several only for _other)
        self._overflow_children: dict[tuple[str, str], Any] = {}
        self._overflow_logged: set[tuple[str, str]] = set()
        self._dispatch = handlers(self)

    def __call__(self, event: Event, /) -> None:
        handler = self._dispatch.get(event.__class__)
        if handler is not None:
            handler(event)

    def _on_breaker_call_completed(self, event: BreakerCallCompleted) -> None:
        series = self._breakers.get(event.breaker) or self._breaker_series(event.breaker)
        outcome = event.outcome
        if outcome is _SUCCESS:
            series.success_calls.inc()
            histogram = series.success_duration
        else:
            series.calls[outcome].inc()
            histogram = series.durations.get(outcome) or self._duration_child(series, outcome)
        histogram.observe(event.duration)
        now = time.monotonic()
        if now - series.refreshed_at >= _MULTIPROCESS_REFRESH_SECONDS:
            series.refreshed_at = now
            self._refresh_breaker(event.breaker)

    def _on_breaker_call_rejected(self, event: BreakerCallRejected) -> None:
        series = self._breakers.get(event.breaker) or self._breaker_series(event.breaker)
        series.calls[CallOutcome.REJECTED].inc()
        self._set_state(series, event.state)

    def _on_breaker_state_changed(self, event: BreakerStateChanged) -> None:
        series = self._breakers.get(event.breaker) or self._breaker_series(event.breaker)
        key = (event.from_state, event.to_state)
        child = series.transitions.get(key)
        if child is None:
            child = self._metrics.breaker_transitions.labels(series.label, key[0].value, key[1].value)
            series.transitions[key] = child
        child.inc()
        self._set_state(series, event.to_state)

    def _on_retry_attempt_finished(self, event: RetryAttemptFinished) -> None:
        if event.will_retry:
            label = self._retry_series(event.retry)[0]
            error_type = self._admit("seawall_retries_total", "error_type", event.error_type or "none")
            self._metrics.retry_attempts.labels(label, error_type).inc()

    def _on_retry_completed(self, event: RetryCompleted) -> None:
        self._retry_series(event.retry)[1][event.outcome].inc()

    def _on_error_recorded(self, event: ErrorRecorded) -> None:
        metric = "seawall_errors_total"
        source = self._admit(metric, "source", event.source)
        error_type = self._admit(metric, "error_type", event.error_type)
        self._metrics.errors.labels(source, error_type, event.category.value).inc()

    def _on_feature_toggled(self, event: FeatureToggled) -> None:
        self._feature_series(event.feature)[1].set(1 if event.enabled else 0)

    def _on_fallback_used(self, event: FallbackUsed) -> None:
        self._feature_series(event.feature)[2][event.reason].inc()

    def _on_instrumentation_failed(self, event: InstrumentationFailed) -> None:
        self._instrumentation_error_child(event.component).inc()

    def _on_primitive_registered(self, event: PrimitiveRegistered) -> None:
        if event.kind == "breaker":
            self._breaker_series(event.name)
            self._refresh_breaker(event.name)
        elif event.kind == "retry":
            self._retry_series(event.name)
        elif event.kind == "feature":
            self._feature_series(event.name)
            self._refresh_feature(event.name)

    # -- cached children ---------------------------------------------------------------------
    def _admit(self, metric: str, label: str, value: str) -> str:
        guard = self._guards.get((metric, label))
        if guard is None:
            with self._lock:
                guard = self._guards.get((metric, label))
                if guard is None:
                    guard = LabelGuard(metric, label, self.max_label_values, self._count_overflow)
                    self._guards[(metric, label)] = guard
        return guard.admit(value)

    def _count_overflow(self, metric: str, label: str) -> None:
        child = self._overflow_children.get((metric, label))
        if child is None:
            child = self._metrics.label_overflow.labels(metric, label)
            self._overflow_children[(metric, label)] = child
        child.inc()
        if (metric, label) not in self._overflow_logged:
            self._overflow_logged.add((metric, label))
            warn_overflow(self.max_label_values, metric, label)

    def _breaker_series(self, name: str) -> _BreakerSeries:
        with self._lock:
            series = self._breakers.get(name)
            if series is None:
                label = name
                for metric in (
                    "seawall_circuit_breaker_state",
                    "seawall_circuit_breaker_calls_total",
                    "seawall_circuit_breaker_call_duration_seconds",
                    "seawall_circuit_breaker_transitions_total",
                    "seawall_circuit_breaker_failure_ratio",
                ):
                    label = self._admit(metric, "breaker", name)
                series = self._breaker_labels.get(label)
                if series is None:
                    series = _BreakerSeries(label, self._metrics)
                    self._breaker_labels[label] = series
                self._breakers[name] = series
                self._folded.setdefault(label, []).append(name)
                if series.state is None:
                    self._set_state(series, BreakerState.CLOSED)
            return series

    def _duration_child(self, series: _BreakerSeries, outcome: CallOutcome) -> Any:
        child = self._metrics.breaker_duration.labels(series.label, outcome.value)
        series.durations[outcome] = child
        return child

    def _retry_series(self, name: str) -> tuple[str, dict[RetryOutcome, Any]]:
        series = self._retries.get(name)
        if series is None:
            with self._lock:
                series = self._retries.get(name)
                if series is None:
                    label = self._admit("seawall_retry_calls_total", "retry", name)
                    self._admit("seawall_retries_total", "retry", name)
                    calls = {o: self._metrics.retry_calls.labels(label, o.value) for o in RetryOutcome}
                    series = (label, calls)
                    self._retries[name] = series
        return series

    def _feature_series(self, name: str) -> tuple[str, Any, dict[FallbackReason, Any]]:
        series = self._features.get(name)
        if series is None:
            with self._lock:
                series = self._features.get(name)
                if series is None:
                    label = self._admit("seawall_feature_enabled", "feature", name)
                    self._admit("seawall_fallbacks_total", "feature", name)
                    enabled = self._metrics.feature_enabled.labels(label)
                    enabled.set(1)
                    fallbacks = {r: self._metrics.fallbacks.labels(label, r.value) for r in FallbackReason}
                    series = (label, enabled, fallbacks)
                    self._features[name] = series
        return series

    def _instrumentation_error_child(self, component: str) -> Any:
        label = self._admit("seawall_instrumentation_errors_total", "component", component)
        return self._metrics.instrumentation_errors.labels(label)

    def _set_state(self, series: _BreakerSeries, state: BreakerState) -> None:
        names = self._folded.get(series.label, ())
        if len(names) > 1:  # `_other` shows the worst state of the breakers folded into it
            states = [state]
            for name in names:
                breaker = self.seawall_registry.get(Kind.BREAKER, name)
                if breaker is not None:
                    states.append(breaker.state)
            state = min(states, key=_SEVERITY.__getitem__)
        previous = series.state
        if previous is state:
            return
        with self._lock:
            for value, child in series.states.items():
                child.set(1 if value is state else 0)
            series.state = state

    # -- one primitive from its snapshot -------------------------------------------------------
    def _refresh_breaker(self, name: str, breaker: Any = None) -> None:
        try:
            if breaker is None:
                breaker = self.seawall_registry.get(Kind.BREAKER, name)
                if breaker is None:
                    return
            series = self._breakers.get(name) or self._breaker_series(name)
            if _windowless(breaker):
                # No window, no failure rate: the state property is enough (and far cheaper than a
                # snapshot); reading it performs the lazy open -> half_open transition just the same.
                self._set_state(series, breaker.state)
                return
            snapshot = breaker.snapshot()
            self._set_state(series, snapshot.state)
            rate = snapshot.failure_rate
            series.failure_rate.set(0.0 if rate is None else rate)
        except Exception as exc:  # a broken primitive must not break the scrape
            self.seawall_registry.bus.report_error(self.component, exc)

    def _refresh_feature(self, name: str, feature: Any = None) -> None:
        try:
            if feature is None:
                feature = self.seawall_registry.get(Kind.FEATURE, name)
                if feature is None:
                    return
            snapshot = feature.snapshot()
            self._feature_series(name)[1].set(1 if snapshot.enabled else 0)
        except Exception as exc:
            self.seawall_registry.bus.report_error(self.component, exc)
