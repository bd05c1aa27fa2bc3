"""Multiprocess mode: each worker writes its own reading of the contract into prometheus_client's
per-process files, which `MultiProcessCollector` merges at scrape time.

`MultiProcessCollector` reads only those files, and the worker that is scraped cannot read another
worker's primitives, so every worker writes what `Reading.read()` gives it (the same numbers the
single-process collector shows) at every scrape of that worker, every `interval` seconds from a
daemon thread, and when the process exits normally. Counters and histogram buckets are written as
cumulative values on top of what the file held when this worker opened it (a reused pid keeps
its predecessor's counts), gauges as set values in a `live*` mode derived from the family's fold,
so a dead worker's gauges go away with `mark_process_dead` and its counters stay. A worker
forked after the writer was made (gunicorn `--preload`) starts its own thread and file
(`core/forks.py`). The calls do no metric work. Why not per-event write-through (the former
design): timeouts, bulkheads, rate limiters and tasks publish no event for a successful call, and
making every call build one to be counted is what the primitives avoid; see docs/architecture.md.
"""

from __future__ import annotations

import atexit
import threading
import weakref
from typing import Any

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


class _Cell:
    """One sample in this process's file; cumulative samples keep the file's value at opening."""

    __slots__ = ("base", "value")

    def __init__(self, value: Any, cumulative: bool) -> None:
        self.value = value
        self.base = float(value.get()) if cumulative else 0.0


class SnapshotWriter:
    """Writes one worker's reading into the multiprocess files; `sync()` is idempotent."""

    def __init__(self, registry: Registry, max_label_values: int, version: str, interval: float) -> None:
        self.reading = Reading(registry, max_label_values, version)
        self.reading.component = "prometheus"
        self.registry = registry
        self.interval = interval
        self._cells: dict[tuple[str, tuple[str, ...], tuple[str, ...]], _Cell] = {}
        self.fork_lock = threading.Lock()  # held through a write: a fork never copies one half done
        self._stop = threading.Event()
        self._start()
        atexit.register(_sync_at_exit, weakref.ref(self))  # a forked child inherits it too
        restart_in_children(self)

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="seawall-multiprocess", daemon=True)
        self._thread.start()

    def after_fork(self) -> None:
        """In a forked worker (gunicorn `--preload`): write this process's own file (the cells
        point at the parent's, whose counts are not ours to add to) from a thread of its own."""
        self._cells = {}
        if not self._stop.is_set():
            self._stop = threading.Event()
            self._start()

    def sync(self) -> None:
        """Write every family's current values (a failure is reported, never raised)."""
        if self._stop.is_set():
            return
        try:
            with self.fork_lock:
                for values in self.reading.read():
                    spec = values.spec
                    for labels, value in values.rows:
                        self._write(spec, spec.sample_name, spec.label_names, labels, value)
                    for labels, hist, _names in values.histograms:
                        self._write_histogram(spec, labels, hist)
        except Exception as exc:
            self.registry.bus.report_error("prometheus", exc)

    def _write_histogram(self, spec: MetricSpec, labels: tuple[str, ...], hist: HistogramSnapshot) -> None:
        base = spec.prometheus_name
        names = (*spec.label_names, "le")
        bounds = [floatToGoString(bound) for bound in hist.bounds] + ["+Inf"]  # type: ignore[no-untyped-call]
        for bound, count in zip(bounds, hist.counts, strict=True):
            self._write(spec, base + "_bucket", names, (*labels, bound), float(count))
        self._write(spec, base + "_sum", spec.label_names, labels, hist.sum)

    def _write(
        self, spec: MetricSpec, sample: str, names: tuple[str, ...], labels: tuple[str, ...], value: float
    ) -> None:
        key = (sample, names, labels)
        cell = self._cells.get(key)
        cumulative = spec.type != "gauge"
        if cell is None:
            mode = GAUGE_MODES[spec.fold] if spec.type == "gauge" else ""
            made = ValueClass(
                spec.type, spec.prometheus_name, sample, names, labels, spec.help, multiprocess_mode=mode
            )
            cell = self._cells[key] = _Cell(made, cumulative)
        cell.value.set(cell.base + value if cumulative else value)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sync()

    def close(self) -> None:
        """Write a last time and stop the thread."""
        self.sync()
        self._stop.set()


def _sync_at_exit(ref: weakref.ref[SnapshotWriter]) -> None:
    writer = ref()
    if writer is not None:
        writer.sync()
