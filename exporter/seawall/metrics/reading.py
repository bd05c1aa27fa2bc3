"""One reading of the contract: every family's series, read from the snapshots of a registry.

The Prometheus collector, the multiprocess writer and the OpenTelemetry callbacks all call
`Reading.read()` and only translate its result into their own types, so the three cannot differ in
what they count, how names past the label cap fold into `_other` or how series combine.
Reading never changes a primitive's state or publishes an event.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from seawall.core.kinds import Kind
from seawall.core.labels import LabelGuard, warn_overflow
from seawall.core.registry import Registry
from seawall.core.snapshots import HistogramSnapshot
from seawall.metrics.contract import CONTRACT, MetricSpec

__all__ = ["FamilyValues", "Reading"]

_FOLDS: dict[str, Callable[[list[float]], float]] = {"sum": sum, "min": min, "max": max}
_KINDS = frozenset(kind.value for kind in Kind)  # sources whose items are primitives' snapshots


@dataclass(slots=True)
class FamilyValues:
    """The series of one family: plain values, or (for histograms) the merged histogram and the
    names of the primitives folded into each series (for exemplars)."""

    spec: MetricSpec
    rows: list[tuple[tuple[str, ...], float]] = field(default_factory=list)
    histograms: list[tuple[tuple[str, ...], HistogramSnapshot, list[str]]] = field(default_factory=list)


class Reading:
    """Reads the contract for one registry; keeps the label guards and the overflow counts of the
    exporter that owns it (one per exporter, so each counts its own collapses)."""

    def __init__(self, registry: Registry, max_label_values: int, version: str) -> None:
        self.registry = registry
        self.max_label_values = max_label_values
        self.version = version
        self.component = "metrics"
        self._guards: dict[tuple[str, str], LabelGuard] = {}
        self.overflow: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    # -- labels ---------------------------------------------------------------------------------
    def admit(self, metric: str, label: str, value: str) -> str:
        guard = self._guards.get((metric, label))
        if guard is None:
            with self._lock:
                guard = self._guards.setdefault(
                    (metric, label), LabelGuard(metric, label, self.max_label_values, self._count_overflow)
                )
        return guard.admit(value)

    def _count_overflow(self, metric: str, label: str) -> None:
        key = (metric, label)
        first = key not in self.overflow
        self.overflow[key] = self.overflow.get(key, 0) + 1
        if first:
            warn_overflow(self.max_label_values, metric, label)

    # -- sources --------------------------------------------------------------------------------
    def _items(self, source: str) -> list[Any]:
        registry = self.registry
        if source in _KINDS:
            snapshots = []
            for item in registry.items(source):
                try:
                    snapshots.append(item.snapshot())
                except Exception as exc:  # a broken primitive must not break the others' series
                    registry.bus.report_error(self.component, exc)
            return snapshots
        if source == "errors":
            summed: dict[tuple[str, str, str], int] = {}
            for aggregator in registry.aggregators():
                for (src, error_type, category), count in aggregator.totals().items():
                    key = (src, error_type, category.value)
                    summed[key] = summed.get(key, 0) + count
            return [(key, float(count)) for key, count in summed.items()]
        if source == "instrumentation":
            return list(registry.bus.instrumentation_errors().items())
        if source == "build":
            return [self.version]
        if source == "overflow":
            return list(self.overflow.items())
        raise ValueError(f"unknown metric source {source!r}")

    # -- reading --------------------------------------------------------------------------------
    def read(self, specs: Iterable[MetricSpec] = CONTRACT) -> list[FamilyValues]:
        """Every family of `specs`, in order; sources are read once per call."""
        items: dict[str, list[Any]] = {}
        out = []
        for spec in specs:
            source = items.get(spec.source)
            if source is None or spec.source == "overflow":
                source = items[spec.source] = self._items(spec.source)
            try:
                out.append(self._family(spec, source))
            except Exception as exc:  # a broken row must not break the scrape
                self.registry.bus.report_error(self.component, exc)
                out.append(FamilyValues(spec))
        return out

    def _family(self, spec: MetricSpec, items: list[Any]) -> FamilyValues:
        metric = spec.sample_name
        capped = [index for index, label in enumerate(spec.labels) if label.capped]
        named = spec.source in _KINDS
        grouped: dict[tuple[str, ...], list[Any]] = {}
        sources: dict[tuple[str, ...], list[str]] = {}
        for item in items:
            if named:  # every family of a kind admits every name, rows or not: one `_other` set
                self.admit(metric, spec.labels[0].name, item.name)
            for labels, value in spec.read(item):
                key = tuple(
                    self.admit(metric, spec.labels[i].name, v) if i in capped else v
                    for i, v in enumerate(labels)
                )
                grouped.setdefault(key, []).append(value)
                if spec.type == "histogram":
                    sources.setdefault(key, []).append(labels[0])
        family = FamilyValues(spec)
        if spec.type == "histogram":
            for key, hists in grouped.items():
                merged = hists[0]
                for other in hists[1:]:
                    merged = merged.merged(other)
                family.histograms.append((key, merged, sources[key]))
        elif spec.fold == "worst":
            family.rows.extend(_worst(spec, grouped))
        else:
            fold = _FOLDS[spec.fold]
            family.rows.extend((key, float(fold(values))) for key, values in grouped.items())
        return family


def _worst(
    spec: MetricSpec, grouped: dict[tuple[str, ...], list[Any]]
) -> list[tuple[tuple[str, ...], float]]:
    """One-hot state series: per prefix, the first state of `worst_first` any folded item is in."""
    states: dict[tuple[str, ...], list[str]] = {}
    for key in grouped:
        states.setdefault(key[:-1], []).append(key[-1])
    order = spec.worst_first
    values = spec.labels[-1].values or ()
    rows: list[tuple[tuple[str, ...], float]] = []
    for prefix, present in states.items():
        shown = min(present, key=lambda state: order.index(state) if state in order else len(order))
        rows.extend(((*prefix, value), 1.0 if value == shown else 0.0) for value in values)
    return rows
