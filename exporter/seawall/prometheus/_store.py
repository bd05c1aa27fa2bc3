"""Fast in-process metric storage for single-process mode, exposed through one custom collector.

prometheus_client's metric objects cost ~0.5 us per counter increment and ~1 us per histogram
observation (Python-level checks, a lock per value, a linear bucket scan): more than the breaker
itself. Here a child is a slotted object with a lock and plain floats; the histogram finds its
bucket with `bisect`. The child interface (`inc`, `set`, `observe(amount, exemplar)`) matches
prometheus_client's, so the exporter uses either. Multiprocess mode cannot use this (custom
collectors are not read by MultiProcessCollector) and uses prometheus_client's metrics instead.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar, Sample
from prometheus_client.utils import floatToGoString

# Sample fields after (name, labels, value, timestamp, exemplar), at their defaults (native_histogram).
_PAD = tuple(Sample._field_defaults.get(field) for field in Sample._fields[5:])


class ValueChild:
    """A counter or gauge value. (`acquire`/`release` are cheaper than `with lock` on the hot path.)"""

    __slots__ = ("_acquire", "_release", "value")

    def __init__(self) -> None:
        self.value = 0.0
        lock = threading.Lock()
        self._acquire = lock.acquire
        self._release = lock.release

    def inc(self, amount: float = 1.0) -> None:
        self._acquire()
        try:
            self.value += amount
        finally:
            self._release()

    def set(self, value: float) -> None:
        self.value = float(value)


class HistogramChild:
    """Per-bucket (not cumulative) counts; the last slot is +Inf. One exemplar per bucket, latest wins."""

    __slots__ = ("_acquire", "_bounds", "_release", "counts", "exemplars", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.exemplars: list[Exemplar | None] = [None] * (len(bounds) + 1)
        self.sum = 0.0
        lock = threading.Lock()
        self._acquire = lock.acquire
        self._release = lock.release

    def observe(self, amount: float, exemplar: dict[str, str] | None = None) -> None:
        index = bisect_left(self._bounds, amount)
        self._acquire()
        try:
            self.counts[index] += 1
            self.sum += amount
            if exemplar is not None:
                self.exemplars[index] = Exemplar(exemplar, amount, time.time())
        finally:
            self._release()

    def observe_counting(self, amount: float, counter: ValueChild, exemplar: dict[str, str] | None) -> None:
        """Observe and increment `counter` under one lock (the caller's only writer of that counter)."""
        bounds = self._bounds
        index = 0 if amount <= bounds[0] else bisect_left(bounds, amount)
        self._acquire()
        try:
            self.counts[index] += 1
            self.sum += amount
            counter.value += 1.0
            if exemplar is not None:
                self.exemplars[index] = Exemplar(exemplar, amount, time.time())
        finally:
            self._release()

    def read(self) -> tuple[list[int], float, list[Exemplar | None]]:
        self._acquire()
        try:
            return list(self.counts), self.sum, list(self.exemplars)
        finally:
            self._release()


class FastMetric:
    """One metric family: children by label values, rendered by `FastCollector`."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        kind: str,
        buckets: tuple[float, ...] = (),
    ) -> None:
        if kind not in ("counter", "gauge", "histogram"):
            raise ValueError(f"kind must be counter, gauge or histogram, got {kind!r}")
        self.kind = kind
        # prometheus_client names a counter family without `_total` and adds it to the sample.
        self.name = name[: -len("_total")] if kind == "counter" and name.endswith("_total") else name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.buckets = buckets
        self._les = [floatToGoString(b) for b in buckets] + ["+Inf"]  # type: ignore[no-untyped-call]
        self._children: dict[tuple[str, ...], Any] = {}
        self._label_cache: dict[tuple[str, ...], tuple[dict[str, str], list[dict[str, str]]]] = {}
        self._lock = threading.Lock()

    def labels(self, *values: str) -> Any:
        key = tuple(str(v) for v in values)
        child = self._children.get(key)
        if child is None:
            if len(key) != len(self.labelnames):
                raise ValueError(f"{self.name} takes labels {self.labelnames}, got {key!r}")
            with self._lock:
                child = self._children.get(key)
                if child is None:
                    child = HistogramChild(self.buckets) if self.kind == "histogram" else ValueChild()
                    self._children[key] = child
        return child

    def describe(self) -> Metric:
        return Metric(self.name, self.documentation, self.kind)

    def _labels_of(self, key: tuple[str, ...]) -> tuple[dict[str, str], list[dict[str, str]]]:
        """The sample label dicts of one child, built once (the exposition only reads them)."""
        cached = self._label_cache.get(key)
        if cached is None:
            labels = dict(zip(self.labelnames, key, strict=True))
            buckets = [{**labels, "le": le} for le in self._les] if self.kind == "histogram" else []
            cached = (labels, buckets)
            self._label_cache[key] = cached
        return cached

    def collect(self) -> Metric:
        family = Metric(self.name, self.documentation, self.kind)
        samples = family.samples
        append = samples.append
        make = tuple.__new__  # Sample's generated __new__ costs more than the tuple itself
        with self._lock:
            children = list(self._children.items())
        labels_of = self._labels_of
        if self.kind in ("counter", "gauge"):
            sample_name = self.name + "_total" if self.kind == "counter" else self.name
            for key, child in children:
                append(make(Sample, (sample_name, labels_of(key)[0], child.value, None, None, *_PAD)))
        else:
            bucket_name, count_name, sum_name = (
                self.name + "_bucket",
                self.name + "_count",
                self.name + "_sum",
            )
            for key, child in children:
                labels, bucket_labels = labels_of(key)
                counts, total, exemplars = child.read()
                cumulative = 0
                for le_labels, count, exemplar in zip(bucket_labels, counts, exemplars, strict=True):
                    cumulative += count
                    append(make(Sample, (bucket_name, le_labels, cumulative, None, exemplar, *_PAD)))
                append(make(Sample, (count_name, labels, cumulative, None, None, *_PAD)))
                append(make(Sample, (sum_name, labels, total, None, None, *_PAD)))
        return family


class FastCollector(Collector):
    """Renders a list of FastMetric; registered once per instrumentation."""

    def __init__(self, metrics: list[FastMetric]) -> None:
        self.metrics = metrics

    def describe(self) -> Iterator[Metric]:
        for metric in self.metrics:
            yield metric.describe()

    def collect(self) -> Iterator[Metric]:
        for metric in self.metrics:
            yield metric.collect()
