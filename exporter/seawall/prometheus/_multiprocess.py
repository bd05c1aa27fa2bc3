"""Multiprocess mode: each worker writes its own reading of the contract into prometheus_client's
per-process files, which `MultiProcessCollector` merges at scrape time.

`MultiProcessCollector` reads only those files, and the worker that is scraped cannot read another
worker's primitives, so every worker writes what `Reading.read()` gives it (the same numbers the
single-process collector shows) at every scrape of that worker, every `interval` seconds from a
daemon thread, and when the process exits normally. Counters and histogram buckets are written as
cumulative values on top of what the file held when this worker opened it (a reused pid keeps its
predecessor's counts; a forked worker's counts start at the fork), gauges as set values in a `live*`
mode derived from the family's fold, so a dead worker's gauges go away with `mark_process_dead` and
its counters stay. A worker forked after the writer was made (gunicorn `--preload`) starts its own
thread and file (`core/forks.py`). The calls do no metric work. Why not per-event write-through (the
former design): timeouts, bulkheads, rate limiters and tasks publish no event for a successful call,
and making every call build one to be counted is what the primitives avoid; see
docs/architecture.md.
"""

from __future__ import annotations

import atexit
import os
import threading
import weakref
from collections.abc import Iterator
from typing import Any

from prometheus_client.multiprocess import mark_process_dead
from prometheus_client.utils import floatToGoString
from prometheus_client.values import ValueClass

from seawall.core.forks import restart_in_children
from seawall.core.registry import Registry
from seawall.core.snapshots import HistogramSnapshot
from seawall.metrics.contract import MetricSpec
from seawall.metrics.reading import Reading

__all__ = ["GAUGE_MODES", "SnapshotWriter"]

# prometheus_client's multiprocess gauge mode per fold: `live` so a dead worker's value is dropped
# (a state shows 1 when any live worker is in it; the worst state across workers is the max).
GAUGE_MODES = {"sum": "livesum", "min": "livemin", "max": "livemax", "worst": "livemax"}


_Key = tuple[str, tuple[str, ...], tuple[str, ...]]  # (sample name, label names, label values)


class _Cell:
    """One sample in this process's file, and what to add to the reading before writing it (a
    counter's value at opening less what the process inherited at a fork; 0 for a gauge)."""

    __slots__ = ("base", "gauge", "value")

    def __init__(self, value: Any, base: float, gauge: bool) -> None:
        self.value = value
        self.base = base
        self.gauge = gauge


class SnapshotWriter:
    """Writes one worker's reading into the multiprocess files; `sync()` is idempotent."""

    def __init__(self, registry: Registry, max_label_values: int, version: str, interval: float) -> None:
        self.reading = Reading(registry, max_label_values, version)
        self.reading.component = "prometheus"
        self.registry = registry
        self.interval = interval
        self._cells: dict[_Key, _Cell] = {}
        self._inherited: dict[_Key, float] = {}  # counts a forked worker's primitives came with
        self.fork_lock = threading.Lock()  # held through a write: a fork never copies one half done
        self.supervising = False  # a parent of workers, serving no calls: counters only
        self._stop = threading.Event()
        self._start()
        atexit.register(_sync_at_exit, weakref.ref(self))  # a forked child inherits it too
        restart_in_children(self)

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="seawall-multiprocess", daemon=True)
        self._thread.start()

    def before_fork(self) -> dict[_Key, float]:
        """The cumulative values at the fork: the parent's calls, which its file already holds."""
        try:
            return {key: value for spec, key, value in self._samples() if spec.type != "gauge"}
        except Exception as exc:
            self.registry.bus.report_error("prometheus", exc)
            return {}

    def after_fork(self, at_fork: object) -> None:
        """In a forked worker (gunicorn `--preload`): write this process's own file (the cells
        point at the parent's), without the parent's counts its primitives came with (the parent
        reports those), from a thread of its own."""
        self._cells = {}
        self._inherited = at_fork if isinstance(at_fork, dict) else {}
        self.supervising = False  # a worker, whatever its parent is
        if not self._stop.is_set():
            self._stop = threading.Event()
            self._start()

    def mark_supervisor(self) -> None:
        """This process supervises workers and serves no calls (gunicorn's arbiter under
        `--preload`): its gauges leave the sums (a preloaded bulkhead's capacity would count it as
        one more worker, so the utilization of a saturated fleet could never reach 1); its
        counters stay (calls it made before forking are its own)."""
        with self.fork_lock:
            self.supervising = True
            self._cells = {key: cell for key, cell in self._cells.items() if not cell.gauge}
            mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]  # this pid's live gauges

    def sync(self) -> None:
        """Write every family's current values (a failure is reported, never raised)."""
        if self._stop.is_set():
            return
        try:
            with self.fork_lock:
                for spec, key, value in self._samples():
                    self._write(spec, key, value)
        except Exception as exc:
            self.registry.bus.report_error("prometheus", exc)

    def _samples(self) -> Iterator[tuple[MetricSpec, _Key, float]]:
        """Every sample of this worker's reading, histograms as their buckets and sum."""
        for values in self.reading.read():
            spec = values.spec
            for labels, value in values.rows:
                yield spec, (spec.sample_name, spec.label_names, labels), value
            for labels, hist, _names in values.histograms:
                yield from _histogram_samples(spec, labels, hist)

    def _write(self, spec: MetricSpec, key: _Key, value: float) -> None:
        cell = self._cells.get(key)
        if cell is None:
            gauge = spec.type == "gauge"
            if gauge and self.supervising:
                return
            sample, names, labels = key
            made = ValueClass(
                spec.type,
                spec.prometheus_name,
                sample,
                names,
                labels,
                spec.help,
                multiprocess_mode=GAUGE_MODES[spec.fold] if gauge else "",
            )
            base = 0.0 if gauge else float(made.get()) - self._inherited.get(key, 0.0)
            cell = self._cells[key] = _Cell(made, base, gauge)
        cell.value.set(cell.base + value)  # a gauge's base is 0: set as read

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sync()

    def close(self) -> None:
        """Write a last time and stop the thread."""
        self.sync()
        self._stop.set()


def _histogram_samples(
    spec: MetricSpec, labels: tuple[str, ...], hist: HistogramSnapshot
) -> Iterator[tuple[MetricSpec, _Key, float]]:
    base = spec.prometheus_name
    names = (*spec.label_names, "le")
    bounds = [floatToGoString(bound) for bound in hist.bounds] + ["+Inf"]  # type: ignore[no-untyped-call]
    for bound, count in zip(bounds, hist.counts, strict=True):
        yield spec, (base + "_bucket", names, (*labels, bound)), float(count)
    yield spec, (base + "_sum", spec.label_names, labels), hist.sum


def _sync_at_exit(ref: weakref.ref[SnapshotWriter]) -> None:
    writer = ref()
    if writer is not None:
        writer.sync()
