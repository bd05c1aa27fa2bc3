"""The scrape-time collector: the metric contract read from the primitives' own counts.

prometheus_client's advice for values owned elsewhere is a custom collector that yields metric
families at scrape time; Resilience4j's Micrometer binders do the same over `cb.getMetrics()`.
The primitives already count everything for their snapshots, so a call does no metric work: at
each scrape this collector reads `snapshot()` of every primitive in the registry (which never
changes state or publishes), folds names past the label cap into `_other` truthfully (counters
and histograms sum, a state series takes the worst state folded into it) and yields `Family`s.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Any

from seawall.core.registry import Registry
from seawall.metrics.reading import Reading

from ._exposition import ExemplarIds, Family

__all__ = ["ExemplarRecorder", "SnapshotCollector"]


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


class SnapshotCollector:
    """Yields seawall's families for one registry, read at scrape time from the contract."""

    def __init__(self, registry: Registry, max_label_values: int, version: str) -> None:
        self.registry = registry
        self.reading = Reading(registry, max_label_values, version)
        self.reading.component = "prometheus"
        self.exemplars: ExemplarRecorder | None = None
        self.before_collect: Callable[[], None] | None = None  # the instrumentation's tracing check

    def describe(self) -> list[Any]:
        return []  # names are fixed by the contract; nothing to check at register time

    def collect(self) -> Iterator[Family]:
        if self.before_collect is not None:
            self.before_collect()
        recorded = self.exemplars.by_series if self.exemplars is not None else {}
        families = []
        for values in self.reading.read():
            spec = values.spec
            family = Family(spec.prometheus_name, spec.help, spec.type, spec.label_names)
            family.rows = values.rows
            for labels, hist, names in values.histograms:
                exemplars: dict[int, ExemplarIds] = {}
                if recorded and spec.source == "breaker":
                    for name in names:
                        exemplars.update(recorded.get((name, labels[1]), {}))
                family.histograms.append((labels, hist, exemplars or None))
            families.append(family)
        return iter(families)
