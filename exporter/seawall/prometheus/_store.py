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
        self._prefix_cache: dict[tuple[str, ...], list[str]] = {}
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
        return FastFamily(self)

    def samples(self) -> list[Sample]:
        """The family's samples, as prometheus_client's own exposition reads them."""
        samples: list[Sample] = []
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
        return samples

    def _prefixes(self, key: tuple[str, ...]) -> list[str]:
        """Each sample line of one child up to its value, rendered once (sorted labels, escaped values)."""
        cached = self._prefix_cache.get(key)
        if cached is None:
            labels = dict(zip(self.labelnames, key, strict=True))
            if self.kind == "histogram":
                cached = [_line_prefix(self.name + "_bucket", {**labels, "le": le}) for le in self._les] + [
                    _line_prefix(self.name + "_count", labels),
                    _line_prefix(self.name + "_sum", labels),
                ]
            else:
                suffix = "_total" if self.kind == "counter" else ""
                cached = [_line_prefix(self.name + suffix, labels)]
            self._prefix_cache[key] = cached
        return cached

    def render(self, out: list[str], openmetrics: bool) -> None:
        """Append this family in the text (0.0.4) or OpenMetrics format, byte for byte as
        prometheus_client renders it, without building Sample objects."""
        if openmetrics:
            doc = self.documentation.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
            header_name = self.name
        else:
            doc = self.documentation.replace("\\", r"\\").replace("\n", r"\n")
            header_name = self.name + "_total" if self.kind == "counter" else self.name
        out.append(f"# HELP {header_name} {doc}\n# TYPE {header_name} {self.kind}\n")
        with self._lock:
            children = list(self._children.items())
        prefixes_of = self._prefixes
        append = out.append
        if self.kind != "histogram":
            for key, child in children:
                append(f"{prefixes_of(key)[0]}{_value(child.value)}\n")
            return
        for key, child in children:
            prefixes = prefixes_of(key)
            counts, total, exemplars = child.read()
            cumulative = 0
            for index, count in enumerate(counts):
                cumulative += count
                exemplar = exemplars[index]
                if openmetrics and exemplar is not None:
                    append(f"{prefixes[index]}{_value(cumulative)}{_exemplar(exemplar)}\n")
                else:
                    append(f"{prefixes[index]}{_value(cumulative)}\n")
            append(f"{prefixes[-2]}{_value(cumulative)}\n{prefixes[-1]}{_value(total)}\n")


def _escape_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _line_prefix(name: str, labels: dict[str, str]) -> str:
    if not labels:
        return name + " "
    inner = ",".join(f'{key}="{_escape_value(value)}"' for key, value in sorted(labels.items()))
    return f"{name}{{{inner}}} "


def _value(value: float) -> str:
    """prometheus_client's floatToGoString, with the common case (0 <= v < 1e6) inline."""
    if 0.0 <= value < 1e6:
        return repr(float(value))
    return str(floatToGoString(value))  # type: ignore[no-untyped-call]


def _exemplar(exemplar: Exemplar) -> str:
    labels = ",".join(f'{key}="{_escape_value(value)}"' for key, value in sorted(exemplar.labels.items()))
    if exemplar.timestamp is not None:
        return f" # {{{labels}}} {_value(exemplar.value)} {exemplar.timestamp}"
    return f" # {{{labels}}} {_value(exemplar.value)}"


class FastFamily(Metric):
    """A family whose samples are built only if prometheus_client's exposition asks for them;
    seawall's own renderer writes the text straight from `source`."""

    def __init__(self, source: FastMetric) -> None:
        self.source = source
        self._samples: list[Sample] | None = None
        super().__init__(source.name, source.documentation, source.kind)

    @property
    def samples(self) -> list[Sample]:
        if self._samples is None:
            self._samples = self.source.samples()
        return self._samples

    @samples.setter
    def samples(self, value: list[Sample]) -> None:
        self._samples = value or None


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
