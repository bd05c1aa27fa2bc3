"""Fast in-process metric storage for single-process mode, exposed through one custom collector.

prometheus_client's metric objects cost ~0.5 us per counter increment and ~1 us per histogram
observation (Python-level checks, a lock per value, a linear bucket scan): more than the breaker
itself. Here a child is a slotted object with a lock and plain floats; the histogram finds its
bucket with `bisect`. The child interface (`inc`, `set`, `observe(amount, exemplar)`) matches
prometheus_client's, so the exporter uses either. Multiprocess mode cannot use this (custom
collectors are not read by MultiProcessCollector) and uses prometheus_client's metrics instead.
"""

from __future__ import annotations

import itertools
import threading
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar, Sample
from prometheus_client.utils import floatToGoString

# Sample fields after (name, labels, value, timestamp, exemplar), at their defaults (native_histogram).
_PAD = tuple(Sample._field_defaults.get(field) for field in Sample._fields[5:])

# Pending histogram amounts folded into the sum by the writer that brings them to this many.
_FOLD_AT = 256


# Hot-path counts are `itertools.count`s: next() is one C call, atomic under the GIL, so counting
# needs no lock (a lock costs more than the rest of an increment). Reading one takes a value too,
# so readers, always under the child's lock, subtract the reads made before theirs (`_reads`).


class ValueChild:
    """A gauge value (or a counter's, moved by other amounts than one)."""

    __slots__ = ("_lock", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self._lock = threading.Lock()

    def inc(self, amount: float = 1.0) -> None:
        with self._lock:
            self.value += amount

    def set(self, value: float) -> None:
        self.value = float(value)


class CountChild:
    """A counter value: `inc()` by one ticks `ticks` without a lock; other amounts go to `_base`
    under the lock. `value` reads both."""

    __slots__ = ("_base", "_lock", "_reads", "ticks")

    def __init__(self) -> None:
        self.ticks = itertools.count()
        self._base = 0.0
        self._reads = 0
        self._lock = threading.Lock()

    def inc(self, amount: float = 1.0) -> None:
        if amount == 1.0:
            next(self.ticks)
            return
        with self._lock:
            self._base += amount

    @property
    def value(self) -> float:
        with self._lock:
            reads = self._reads
            self._reads = reads + 1
            return self._base + (next(self.ticks) - reads)


class HistogramChild:
    """Per-bucket (not cumulative) counts; the last slot is +Inf. One exemplar per bucket, latest wins.

    `observe` ticks its bucket's count and appends the amount to `pending` (both atomic), folding
    `pending` into the sum once it holds `_FOLD_AT` amounts; readers fold what is left. A reader
    may see a call's bucket before its amount reaches the sum, as prometheus_client's own
    histogram may (it locks the sum and each bucket separately); no observation is ever lost.
    """

    __slots__ = ("_bounds", "_lock", "_reads", "_sum", "exemplars", "pending", "ticks")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.ticks = tuple(itertools.count() for _ in range(len(bounds) + 1))
        self.pending: deque[float] = deque()
        self.exemplars: list[Exemplar | None] = [None] * (len(bounds) + 1)
        self._sum = 0.0
        self._reads = 0
        self._lock = threading.Lock()

    def observe(self, amount: float, exemplar: dict[str, str] | None = None) -> None:
        index = bisect_left(self._bounds, amount)
        next(self.ticks[index])
        pending = self.pending
        pending.append(amount)
        if len(pending) >= _FOLD_AT:
            self.fold()
        if exemplar is not None:
            with self._lock:
                self.exemplars[index] = Exemplar(exemplar, amount, time.time())

    def observe_counting(self, amount: float, counter: CountChild, exemplar: dict[str, str] | None) -> None:
        """Observe and count one call in `counter`."""
        next(counter.ticks)
        self.observe(amount, exemplar)

    def fold(self) -> None:
        """Move the pending amounts into the sum (exactly those present now: bounded under load)."""
        with self._lock:
            self._fold()

    def _fold(self) -> None:
        pending, total = self.pending, self._sum
        for _ in range(len(pending)):
            total += pending.popleft()
        self._sum = total

    def read(self) -> tuple[list[int], float, list[Exemplar | None]]:
        with self._lock:
            self._fold()
            reads = self._reads
            self._reads = reads + 1
            counts = [next(ticks) - reads for ticks in self.ticks]
            return counts, self._sum, list(self.exemplars)

    @property
    def sum(self) -> float:
        return self.read()[1]


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
                    if self.kind == "histogram":
                        child = HistogramChild(self.buckets)
                    else:
                        child = CountChild() if self.kind == "counter" else ValueChild()
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
