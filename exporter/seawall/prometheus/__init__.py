"""Prometheus metrics for seawall: the metric contract read from the primitives.

`instrument()` exposes the series dashboards and alerts are built on (see docs/exporter.md) for
the primitives of a seawall registry. Single-process mode registers one collector that reads every
primitive's snapshot at scrape time (`_collector`); calls do no metric work, and the only per-call
listener is the exemplar recorder, subscribed while tracing is on. `render()` (`_exposition`) is
the one exposition path: text or OpenMetrics as negotiated, gzip when asked.

Multiprocess mode (PROMETHEUS_MULTIPROC_DIR set) writes the same reading of the contract into
prometheus_client's per-process files at every scrape, every `sync_interval` seconds and at exit;
`MultiProcessCollector` merges them across workers (`_multiprocess`).
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.registry import Collector

from seawall.core.labels import DEFAULT_MAX_LABEL_VALUES, check_max_label_values
from seawall.core.latency import DEFAULT_DURATION_BUCKETS, check_buckets
from seawall.core.registry import Registry, default_registry

from ..events import BreakerCallCompleted
from ._collector import ExemplarRecorder, SnapshotCollector
from ._exposition import generate_latest, generate_openmetrics, negotiate, render
from ._multiprocess import SnapshotWriter

DEFAULT_BUCKETS = DEFAULT_DURATION_BUCKETS
DEFAULT_SYNC_INTERVAL = 1.0  # seconds between a worker's writes of its counts in multiprocess mode

__all__ = [
    "DEFAULT_BUCKETS",
    "PrometheusInstrumentation",
    "generate_latest",
    "generate_openmetrics",
    "instrument",
    "mark_supervisor",
    "negotiate",
    "refresh_all",
    "render",
]


class _Refresher(Collector):
    """Multiprocess mode: registered before the metrics, so each scrape of this worker first brings
    its gauges up to date from snapshots."""

    def __init__(self, instrumentation: PrometheusInstrumentation) -> None:
        self._instrumentation = weakref.ref(instrumentation)

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> list[Any]:
        instrumentation = self._instrumentation()
        if instrumentation is not None:
            instrumentation.refresh()
        return []


class PrometheusInstrumentation:
    """What `instrument()` returns; `close()` unregisters its metrics (and unsubscribes)."""

    component = "prometheus"

    def __init__(
        self,
        registry: CollectorRegistry,
        seawall_registry: Registry,
        buckets: tuple[float, ...],
        max_label_values: int,
        exemplars: bool = True,
        sync_interval: float = DEFAULT_SYNC_INTERVAL,
    ) -> None:
        from .. import __version__

        self.registry = registry
        self.seawall_registry = seawall_registry
        self.buckets = buckets
        self.max_label_values = max_label_values
        self.multiprocess = _multiprocess_enabled()
        self.exemplars = exemplars
        self.sync_interval = sync_interval
        self._lock = threading.RLock()
        self._closed = False
        self._unsubscribers: list[Callable[[], None]] = []
        self._collectors: list[Any] = []
        self.collector: SnapshotCollector | None = None
        self.writer: SnapshotWriter | None = None
        seawall_registry.record_durations(buckets)
        if self.multiprocess:
            self.writer = SnapshotWriter(seawall_registry, max_label_values, __version__, sync_interval)
            refresher = _Refresher(self)
            registry.register(refresher)
            self._collectors.append(refresher)
        else:
            self._trace = _import_trace() if exemplars else None
            self.collector = SnapshotCollector(seawall_registry, max_label_values, __version__)
            self.collector.before_collect = self._watch_tracing
            registry.register(self.collector)
            self._collectors.append(self.collector)
        self.refresh()

    # -- scrape time ---------------------------------------------------------------------------
    def refresh(self) -> None:
        """Single-process: start recording exemplars once tracing is active (checked at every
        scrape). Multiprocess: write this worker's current counts into its files (call it, or
        `refresh_all()`, from the /metrics handler before collecting, so the serving worker is
        current too)."""
        if self._closed:
            return
        if self.writer is not None:
            self.writer.sync()
        else:
            self._watch_tracing()

    def _watch_tracing(self) -> None:
        collector = self.collector
        if collector is None or collector.exemplars is not None or self._trace is None:
            return
        if not _tracing_active(self._trace, self.seawall_registry):
            return
        recorder = ExemplarRecorder(self.buckets, _sampled_ids(self._trace))
        collector.exemplars = recorder
        unsubscribe = self.seawall_registry.bus.subscribe(recorder, events=(BreakerCallCompleted,))
        self._unsubscribers.append(unsubscribe)

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        """Unsubscribe from the bus and unregister every metric; idempotent."""
        with _instances_lock:
            if self._closed:
                return
            if self.writer is not None:
                self.writer.close()
            self._closed = True
            for unsubscribe in self._unsubscribers:
                unsubscribe()
            for collector in self._collectors:
                with contextlib.suppress(KeyError):
                    self.registry.unregister(collector)
            if _instances.get(self.registry) is self:
                del _instances[self.registry]

    @property
    def closed(self) -> bool:
        return self._closed


def _multiprocess_enabled() -> bool:
    return "PROMETHEUS_MULTIPROC_DIR" in os.environ or "prometheus_multiproc_dir" in os.environ


def check_sync_interval(value: object) -> float:
    """Validate `sync_interval`: seconds, finite and > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"sync_interval must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"sync_interval must be finite and > 0 seconds, got {value!r}")
    return float(value)


def _import_trace() -> Any:
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    return trace


def _tracing_active(trace: Any, registry: Registry) -> bool:
    """True once spans can be sampled: an SDK global provider, or seawall.otel traces this registry."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
        return True
    return any(getattr(listener, "component", None) == "otel" for listener in registry.bus.listeners)


def _sampled_ids(trace: Any) -> Callable[[], tuple[str, str] | None]:
    """Trace and span ids of the current span when it is sampled, else None."""
    get_current_span = trace.get_current_span

    def current() -> tuple[str, str] | None:
        context = get_current_span().get_span_context()
        if context.trace_flags.sampled:
            return format(context.trace_id, "032x"), format(context.span_id, "016x")
        return None

    return current


_instances: weakref.WeakKeyDictionary[CollectorRegistry, PrometheusInstrumentation] = (
    weakref.WeakKeyDictionary()
)
_instances_lock = threading.Lock()


def instrument(
    registry: CollectorRegistry = REGISTRY,
    *,
    seawall_registry: Registry | None = None,
    buckets: Sequence[float] = DEFAULT_BUCKETS,
    max_label_values: int = DEFAULT_MAX_LABEL_VALUES,
    exemplars: bool = True,
    sync_interval: float = DEFAULT_SYNC_INTERVAL,
) -> PrometheusInstrumentation:
    """Expose the seawall metric contract in `registry` for the primitives of `seawall_registry`.

    Idempotent: a second call for the same prometheus registry with the same arguments returns the
    first instrumentation; with different ones it raises ValueError (one registry cannot hold two
    sets of the same metric names). `sync_interval` is how often a worker writes its counts in
    multiprocess mode (it also writes at every scrape of itself and at a normal exit).
    """
    if not isinstance(registry, CollectorRegistry):
        raise TypeError(f"registry must be a prometheus_client CollectorRegistry, got {registry!r}")
    if seawall_registry is None:
        seawall_registry = default_registry()
    elif not isinstance(seawall_registry, Registry):
        raise TypeError(f"seawall_registry must be a seawall.Registry, got {seawall_registry!r}")
    checked_buckets = check_buckets(buckets)
    limit = check_max_label_values(max_label_values)
    interval = check_sync_interval(sync_interval)
    with _instances_lock:
        existing = _instances.get(registry)
        if existing is not None:
            wanted = (seawall_registry, checked_buckets, limit, bool(exemplars))
            have = (
                existing.seawall_registry,
                existing.buckets,
                existing.max_label_values,
                existing.exemplars,
            )
            if wanted != have:
                raise ValueError(
                    "this prometheus registry is already instrumented with other arguments "
                    f"(seawall_registry, buckets, max_label_values, exemplars) = {have!r}; "
                    "close() it first or use "
                    "another CollectorRegistry"
                )
            return existing
        created = PrometheusInstrumentation(
            registry, seawall_registry, checked_buckets, limit, bool(exemplars), interval
        )
        _instances[registry] = created
        return created


def mark_supervisor() -> None:
    """Declare this process a supervisor of multiprocess workers that serves no calls itself
    (gunicorn's arbiter under `--preload`: call it from the `when_ready` hook): its gauges leave
    the cross-worker sums, its counters stay. Workers it forks later are workers again. A no-op
    outside multiprocess mode."""
    with _instances_lock:
        instrumentations = list(_instances.values())
    for instrumentation in instrumentations:
        if instrumentation.writer is not None:
            instrumentation.writer.mark_supervisor()


def refresh_all() -> None:
    """Refresh every open instrumentation of this process from snapshots.

    For a multiprocess /metrics handler: its collection registry holds only MultiProcessCollector,
    so nothing else would bring the serving worker's lazy breaker transitions up to date.
    """
    with _instances_lock:
        instrumentations = list(_instances.values())
    for instrumentation in instrumentations:
        instrumentation.refresh()
