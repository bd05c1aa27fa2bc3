"""The scrape-time collector: the metric contract read from the primitives' own counts.

prometheus_client's advice for values owned elsewhere is a custom collector that yields metric
families at scrape time; Resilience4j's Micrometer binders do the same over `cb.getMetrics()`.
The primitives already count everything for their snapshots, so a call does no metric work: at
each scrape this collector reads `snapshot()` of every primitive in the registry (which never
changes state or publishes), folds names past the label cap into `_other` truthfully (counters
and histograms sum, a state series takes the worst state folded into it) and yields `Family`s.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from seawall.core.enums import BreakerState, CallOutcome
from seawall.core.kinds import declared
from seawall.core.labels import LabelGuard, warn_overflow
from seawall.core.registry import Registry
from seawall.core.snapshots import BreakerSnapshot

from ._exposition import ExemplarIds, Family
from ._kinds import LimitAndTaskFamilies, merge_all

__all__ = ["ExemplarRecorder", "SnapshotCollector"]

# Which state an `_other` series shows when breakers in different states are folded into it:
# the one an operator must see first.
WORST_FIRST = (
    BreakerState.OPEN,
    BreakerState.HALF_OPEN,
    BreakerState.FORCED_OPEN,
    BreakerState.CLOSED,
    BreakerState.DISABLED,
)
_SEVERITY = {state: rank for rank, state in enumerate(WORST_FIRST)}
_STATES = tuple(BreakerState)
_OUTCOMES = tuple(CallOutcome)


class ExemplarRecorder:
    """Remembers, per breaker, outcome and bucket, the trace of the last sampled call.

    The only per-call work of the Prometheus exporter, and only while tracing is on: it listens to
    `BreakerCallCompleted` alone, so without it no breaker call builds an event.
    """

    component = "prometheus"

    def __init__(self, bounds: tuple[float, ...], current: Callable[[], tuple[str, str] | None]) -> None:
        self._bounds = bounds
        self._current = current
        self.by_series: dict[tuple[str, str], dict[int, ExemplarIds]] = {}

    def __call__(self, event: Any, /) -> None:
        ids = self._current()
        if ids is None:
            return
        key = (event.breaker, event.outcome.value)
        buckets = self.by_series.get(key)
        if buckets is None:
            buckets = self.by_series.setdefault(key, {})
        buckets[bisect_left(self._bounds, event.duration)] = (ids[0], ids[1], event.duration)


class SnapshotCollector(LimitAndTaskFamilies):
    """Yields seawall's families for one registry, read at scrape time."""

    def __init__(self, registry: Registry, max_label_values: int, version: str) -> None:
        self.registry = registry
        self.max_label_values = max_label_values
        self.version = version
        self.exemplars: ExemplarRecorder | None = None
        self.before_collect: Callable[[], None] | None = None  # the instrumentation's tracing check
        self._guards: dict[tuple[str, str], LabelGuard] = {}
        self._overflow: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def describe(self) -> list[Any]:
        return []  # names are fixed by the contract; nothing to check at register time

    # -- labels ---------------------------------------------------------------------------------
    def _admit(self, metric: str, label: str, value: str) -> str:
        guard = self._guards.get((metric, label))
        if guard is None:
            with self._lock:
                guard = self._guards.setdefault(
                    (metric, label), LabelGuard(metric, label, self.max_label_values, self._count_overflow)
                )
        return guard.admit(value)

    def _count_overflow(self, metric: str, label: str) -> None:
        key = (metric, label)
        first = key not in self._overflow
        self._overflow[key] = self._overflow.get(key, 0) + 1
        if first:
            warn_overflow(self.max_label_values, metric, label)

    # -- collection -----------------------------------------------------------------------------
    def collect(self) -> Iterator[Family]:
        registry = self.registry
        families: list[Family] = []
        if self.before_collect is not None:
            self.before_collect()
        try:
            for spec in declared():  # each kind's families: the method named after its plural
                snapshots = [item.snapshot() for item in registry.items(spec.kind)]
                families.extend(getattr(self, f"_{spec.kind.plural}")(snapshots))
            families.append(self._errors())
        except Exception as exc:  # a broken primitive must not break the scrape
            registry.bus.report_error("prometheus", exc)
        families.append(self._instrumentation_errors())
        build = Family("seawall_build_info", "seawall version", "gauge", ("version",))
        build.rows.append(((self.version,), 1.0))
        families.append(build)
        overflow = Family(
            "seawall_label_overflow",
            "Label values collapsed into _other by the cardinality cap",
            "counter",
            ("metric", "label"),
        )
        overflow.rows.extend(((metric, label), count) for (metric, label), count in self._overflow.items())
        families.append(overflow)
        return iter(families)

    def _breakers(self, snapshots: list[BreakerSnapshot]) -> Iterable[Family]:
        state = Family(
            "seawall_circuit_breaker_state",
            "1 for the breaker's current state, 0 for the others",
            "gauge",
            ("breaker", "state"),
        )
        calls = Family(
            "seawall_circuit_breaker_calls",
            "Calls through the breaker by outcome",
            "counter",
            ("breaker", "outcome"),
        )
        durations = Family(
            "seawall_circuit_breaker_call_duration_seconds",
            "Duration of calls the breaker let through",
            "histogram",
            ("breaker", "outcome"),
        )
        transitions = Family(
            "seawall_circuit_breaker_transitions",
            "Breaker state transitions",
            "counter",
            ("breaker", "from_state", "to_state"),
        )
        ratio = Family(
            "seawall_circuit_breaker_failure_ratio",
            "Failure ratio (0..1) of the breaker's current window",
            "gauge",
            ("breaker",),
        )
        grouped: dict[str, list[BreakerSnapshot]] = {}
        for snap in snapshots:
            label = snap.name
            for metric in ("seawall_circuit_breaker_state", "seawall_circuit_breaker_calls_total"):
                label = self._admit(metric, "breaker", snap.name)
            grouped.setdefault(label, []).append(snap)
        recorded = self.exemplars.by_series if self.exemplars is not None else {}
        for label, group in grouped.items():
            worst = min((snap.state for snap in group), key=_SEVERITY.__getitem__)
            state.rows.extend(
                ((label, value.value), 1.0 if value is worst else 0.0) for value in BreakerState
            )
            for outcome in _OUTCOMES:
                calls.rows.append(
                    ((label, outcome.value), sum(snap.calls.get(outcome.value, 0) for snap in group))
                )
            moved: dict[tuple[BreakerState, BreakerState], int] = {}
            for snap in group:
                for key, count in snap.transitions.items():
                    moved[key] = moved.get(key, 0) + count
            transitions.rows.extend(
                ((label, frm.value, to.value), count) for (frm, to), count in moved.items()
            )
            ratio.rows.append(((label,), max(snap.failure_rate or 0.0 for snap in group)))
            for outcome_name in ("success", "failure", "ignored"):
                hists = [snap.durations[outcome_name] for snap in group if outcome_name in snap.durations]
                if not hists:
                    continue
                merged = merge_all(hists)
                exemplars: dict[int, ExemplarIds] = {}
                for snap in group:
                    exemplars.update(recorded.get((snap.name, outcome_name), {}))
                durations.histograms.append(((label, outcome_name), merged, exemplars or None))
        return (state, calls, durations, transitions, ratio, *self._shared_breakers(snapshots))

    def _shared_breakers(self, snapshots: list[BreakerSnapshot]) -> tuple[Family, ...]:
        """Health of the fleet sync of breakers shared through Redis (none: no families)."""
        shared = [snap for snap in snapshots if snap.shared is not None]
        if not shared:
            return ()
        metric = "seawall_circuit_breaker_calls_total"  # the cap that admitted the breaker labels
        up = Family(
            "seawall_circuit_breaker_shared_up",
            "1 while a shared breaker reaches the fleet state, 0 while it decides locally",
            "gauge",
            ("breaker",),
        )
        self._per_name(up, metric, "breaker", [(s.name, 1.0 if s.shared_up else 0.0) for s in shared], min)
        errors = Family(
            "seawall_circuit_breaker_shared_errors",
            "Failed syncs of a shared breaker with the fleet state",
            "counter",
            ("breaker",),
        )
        self._per_name(errors, metric, "breaker", [(s.name, s.shared_errors) for s in shared], sum)
        return (up, errors)

    def _retries(self, snapshots: list[Any]) -> Iterable[Family]:
        calls = Family(
            "seawall_retry_calls", "Retried operations by outcome", "counter", ("retry", "outcome")
        )
        retries = Family(
            "seawall_retries",
            "Re-attempts, by the error that caused them",
            "counter",
            ("retry", "error_type"),
        )
        self._counts(calls, "seawall_retry_calls_total", "retry", snapshots, "calls")
        retried: dict[tuple[str, str], int] = {}
        for snap in snapshots:
            label = self._admit("seawall_retries_total", "retry", snap.name)
            for error_type, count in snap.retries_by_error.items():
                key = (label, self._admit("seawall_retries_total", "error_type", error_type))
                retried[key] = retried.get(key, 0) + count
        retries.rows.extend(retried.items())
        return (calls, retries)

    def _features(self, snapshots: list[Any]) -> Iterable[Family]:
        enabled = Family(
            "seawall_feature_enabled", "1 while the feature answers from its primary", "gauge", ("feature",)
        )
        fallbacks = Family(
            "seawall_fallbacks", "Fallback answers by reason", "counter", ("feature", "reason")
        )
        rows = [(snap.name, 1.0 if snap.enabled else 0.0) for snap in snapshots]
        self._per_name(enabled, "seawall_feature_enabled", "feature", rows, min)
        self._counts(fallbacks, "seawall_fallbacks_total", "feature", snapshots, "fallbacks")
        return (enabled, fallbacks)

    def _errors(self) -> Family:
        errors = Family(
            "seawall_errors",
            "Errors recorded, by source and class",
            "counter",
            ("source", "error_type", "category"),
        )
        summed: dict[tuple[str, str, str], int] = {}
        for aggregator in self.registry.aggregators():
            for (source, error_type, category), count in aggregator.totals().items():
                key = (
                    self._admit("seawall_errors_total", "source", source),
                    self._admit("seawall_errors_total", "error_type", error_type),
                    category.value,
                )
                summed[key] = summed.get(key, 0) + count
        errors.rows.extend(summed.items())
        return errors

    def _instrumentation_errors(self) -> Family:
        family = Family(
            "seawall_instrumentation_errors",
            "Failures of seawall's own instrumentation",
            "counter",
            ("component",),
        )
        counts = list(self.registry.bus.instrumentation_errors().items())
        self._per_name(family, "seawall_instrumentation_errors_total", "component", counts, sum)
        return family
