"""Prometheus metrics for seawall: a listener on the registry's event bus that keeps the metric contract.

`instrument()` subscribes to a seawall registry and exposes the series dashboards and alerts are
built on (see docs/exporter.md). The labelled children are cached per name, because `.labels()`
costs more than the increment; events are dispatched on their type through a dict (`_listener`).
State gauges are kept from events and refreshed from snapshots at scrape time, because the
breaker's open -> half_open transition happens lazily on the next call or state read.

Multiprocess mode (PROMETHEUS_MULTIPROC_DIR set) works: only standard metric objects are used
(custom collectors are not read by `MultiProcessCollector`), counters and histograms sum across
workers, and each gauge has a multiprocess mode chosen for what it means (see `_GAUGE_MODES`).
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Sequence
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.registry import Collector

from .._labels import DEFAULT_MAX_LABEL_VALUES, check_max_label_values
from .._registry import Registry, default_registry
from ._families import (
    DEFAULT_BUCKETS,
    _check_buckets,
    _exemplar_function,
    _Metrics,
    _multiprocess_enabled,
    _tracing_active,
)
from ._listener import EventListener
from ._render import generate_latest, generate_openmetrics, render

__all__ = [
    "DEFAULT_BUCKETS",
    "PrometheusInstrumentation",
    "generate_latest",
    "generate_openmetrics",
    "instrument",
    "refresh_all",
    "render",
]


class _Refresher(Collector):
    """Registered before the metrics, so each scrape first brings state from snapshots up to date."""

    def __init__(self, instrumentation: PrometheusInstrumentation) -> None:
        self._instrumentation = weakref.ref(instrumentation)

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> list[Any]:
        instrumentation = self._instrumentation()
        if instrumentation is not None:
            instrumentation.refresh()
        return []


class PrometheusInstrumentation(EventListener):
    """The listener `instrument()` returns; `close()` unsubscribes and unregisters its metrics."""

    component = "prometheus"

    def __init__(
        self,
        registry: CollectorRegistry,
        seawall_registry: Registry,
        buckets: tuple[float, ...],
        max_label_values: int,
        exemplars: bool = True,
    ) -> None:
        self.registry = registry
        self.seawall_registry = seawall_registry
        self.buckets = buckets
        self.max_label_values = max_label_values
        self.multiprocess = _multiprocess_enabled()
        self._lock = threading.RLock()
        self._closed = False
        self._refresher = _Refresher(self)
        registry.register(self._refresher)
        self._metrics = m = _Metrics(registry, buckets, self.multiprocess)
        # Exemplars: only in single-process mode (the multiprocess files hold none), and looked up
        # only once tracing is active, so an untraced service pays one attribute check per call.
        self.exemplars = exemplars
        self._trace: Any = None
        if exemplars and not self.multiprocess:
            try:
                from opentelemetry import trace

                self._trace = trace
            except ImportError:
                self._trace = None
        self._exemplar = None
        self._update_exemplars()
        self._init_listener()
        from .. import __version__

        m.build_info.labels(__version__).set(1)
        for component, count in seawall_registry.bus.instrumentation_errors().items():
            self._instrumentation_error_child(component).inc(count)
        self.listener = self._make_listener()
        self._unsubscribe = seawall_registry.bus.subscribe(self.listener)
        self.refresh()

    # -- snapshots ---------------------------------------------------------------------------
    def refresh(self) -> None:
        """Bring breaker states, failure rates and feature states up to date from snapshots.

        Runs at every scrape of the registry this instrumentation lives in. Reading a snapshot
        also performs a breaker's lazy open -> half_open transition. In multiprocess mode call it
        from the /metrics handler before collecting, so the serving worker is current too.
        """
        if self._closed:
            return
        self._update_exemplars()
        registry = self.seawall_registry
        for breaker in registry.breakers():
            self._refresh_breaker(breaker.name, breaker)
        for retry in registry.retries():
            self._retry_series(retry.name)
        for feature in registry.features():
            self._refresh_feature(feature.name, feature)

    def _update_exemplars(self) -> None:
        if self._exemplar is None and self._trace is not None and _tracing_active(self._trace):
            self._exemplar = _exemplar_function(self._trace)

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        """Unsubscribe from the bus and unregister every metric; idempotent."""
        with _instances_lock:
            if self._closed:
                return
            self._closed = True
            self._unsubscribe()
            for collector in (self._refresher, *self._metrics.collectors):
                with contextlib.suppress(KeyError):
                    self.registry.unregister(collector)
            if _instances.get(self.registry) is self:
                del _instances[self.registry]

    @property
    def closed(self) -> bool:
        return self._closed


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
) -> PrometheusInstrumentation:
    """Expose the seawall metric contract in `registry` for the primitives of `seawall_registry`.

    Idempotent: a second call for the same prometheus registry with the same arguments returns the
    first instrumentation; with different ones it raises ValueError (one registry cannot hold two
    sets of the same metric names).
    """
    if not isinstance(registry, CollectorRegistry):
        raise TypeError(f"registry must be a prometheus_client CollectorRegistry, got {registry!r}")
    if seawall_registry is None:
        seawall_registry = default_registry()
    elif not isinstance(seawall_registry, Registry):
        raise TypeError(f"seawall_registry must be a seawall.Registry, got {seawall_registry!r}")
    checked_buckets = _check_buckets(buckets)
    limit = check_max_label_values(max_label_values)
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
            registry, seawall_registry, checked_buckets, limit, bool(exemplars)
        )
        _instances[registry] = created
        return created


def refresh_all() -> None:
    """Refresh every open instrumentation of this process from snapshots.

    For a multiprocess /metrics handler: its collection registry holds only MultiProcessCollector,
    so nothing else would bring the serving worker's lazy breaker transitions up to date.
    """
    with _instances_lock:
        instrumentations = list(_instances.values())
    for instrumentation in instrumentations:
        instrumentation.refresh()
