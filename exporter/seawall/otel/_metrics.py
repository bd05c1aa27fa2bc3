"""OpenTelemetry metrics that read the same truth as Prometheus: one observable instrument per
family of the contract, whose callback reads the registry's snapshots at collection time.

No event subscription and no per-call work: a call costs what it costs without metrics, and
primitives created before `instrument_metrics()` report their counts since creation, as Prometheus
does. Names, units and attributes come from `seawall.metrics.contract` (dotted names with UCUM
units; OpenTelemetry's standard Prometheus mapping gives back the Prometheus names). Counters are
observable counters, additive gauges (in-flight, capacity) observable up-down counters, the
others observable gauges. The OpenTelemetry API has no asynchronous histogram, so a histogram
family is reported as three observable counters read from the primitive's own buckets:
`<name>.count`, `<name>.sum` and `<name>.bucket` (cumulative per `le`, a float attribute, `inf` last,
as in Prometheus).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, NoOpMeterProvider, Observation

from seawall.core.labels import DEFAULT_MAX_LABEL_VALUES, check_max_label_values
from seawall.core.latency import DEFAULT_DURATION_BUCKETS
from seawall.core.registry import Registry, default_registry
from seawall.metrics.contract import CONTRACT, MetricSpec
from seawall.metrics.reading import FamilyValues, Reading

__all__ = ["OtelMetricsInstrumentation", "instrument_metrics"]

# A histogram family's instruments (`.sum` in the family's unit, the others count observations).
_HISTOGRAM_PARTS = (".count", ".sum", ".bucket")
_OBSERVATIONS = "{observation}"


def _is_noop(provider: object) -> bool:
    return isinstance(provider, NoOpMeterProvider) or type(provider).__name__ == "_ProxyMeterProvider"


class OtelMetricsInstrumentation:
    """What `instrument_metrics()` returns; `active` is False when nothing was registered."""

    component = "otel-metrics"

    def __init__(
        self, meter_provider: Any, seawall_registry: Registry, active: bool, max_label_values: int
    ) -> None:
        from .. import __version__

        self.meter_provider = meter_provider
        self.seawall_registry = seawall_registry
        self.active = active
        self.reading = Reading(seawall_registry, max_label_values, __version__)
        self.reading.component = self.component
        self._lock = threading.Lock()
        self._cache: dict[str, FamilyValues] = {}
        self._served: set[str] = set()
        if not active:
            return
        if seawall_registry.duration_buckets is None:
            seawall_registry.record_durations(DEFAULT_DURATION_BUCKETS)
        meter = meter_provider.get_meter("seawall", __version__)
        for spec in CONTRACT:
            self._create(meter, spec)

    def _create(self, meter: Any, spec: MetricSpec) -> None:
        if spec.type == "histogram":
            for part in _HISTOGRAM_PARTS:
                unit = spec.unit if part == ".sum" else _OBSERVATIONS
                callback = self._callback(spec, spec.name + part)
                meter.create_observable_counter(
                    spec.name + part, [callback], unit=unit, description=spec.help
                )
            return
        if spec.type == "counter":
            make = meter.create_observable_counter
        elif spec.fold == "sum":  # additive: in-flight calls, capacity
            make = meter.create_observable_up_down_counter
        else:
            make = meter.create_observable_gauge
        make(spec.name, [self._callback(spec, spec.name)], unit=spec.unit, description=spec.help)

    def _callback(
        self, spec: MetricSpec, instrument: str
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            try:
                return self._observe(spec, instrument)
            except Exception as exc:  # never into the SDK's collection
                self.seawall_registry.bus.report_error(self.component, exc)
                return []

        return observe

    def _family(self, spec: MetricSpec, instrument: str) -> FamilyValues:
        """This collection's reading: read again when an instrument is asked a second time (a new
        collection), so one collection sees one consistent reading of every family."""
        with self._lock:
            if instrument in self._served or spec.name not in self._cache:
                self._cache = {values.spec.name: values for values in self.reading.read()}
                self._served = set()
            self._served.add(instrument)
            return self._cache[spec.name]

    def _observe(self, spec: MetricSpec, instrument: str) -> list[Observation]:
        if not self.active:
            return []
        values = self._family(spec, instrument)
        names = spec.label_names
        if spec.type != "histogram":
            return [
                Observation(value, dict(zip(names, labels, strict=True))) for labels, value in values.rows
            ]
        out = []
        for labels, hist, _sources in values.histograms:
            attributes = dict(zip(names, labels, strict=True))
            if instrument.endswith(".count"):
                out.append(Observation(hist.count, attributes))
            elif instrument.endswith(".sum"):
                out.append(Observation(hist.sum, attributes))
            else:
                for bound, count in hist.cumulative():
                    out.append(Observation(count, {**attributes, "le": bound}))
        return out

    def close(self) -> None:
        """Stop reporting (the API cannot unregister instruments: they report nothing from now on)."""
        with self._lock:
            self.active = False


def instrument_metrics(
    meter_provider: Any = None,
    *,
    seawall_registry: Registry | None = None,
    max_label_values: int = DEFAULT_MAX_LABEL_VALUES,
) -> OtelMetricsInstrumentation:
    """Report the metric contract as OpenTelemetry metrics of `meter_provider` (default: the global),
    read from the primitives' snapshots at each collection.

    With the API's no-op/proxy provider nothing is registered (`.active` is False). Durations are
    recorded in the registry's buckets (Prometheus' when it was instrumented first, else the default).
    """
    if seawall_registry is None:
        seawall_registry = default_registry()
    elif not isinstance(seawall_registry, Registry):
        raise TypeError(f"seawall_registry must be a seawall.Registry, got {seawall_registry!r}")
    limit = check_max_label_values(max_label_values)
    provider = metrics.get_meter_provider() if meter_provider is None else meter_provider
    if not isinstance(provider, metrics.MeterProvider):
        raise TypeError(f"meter_provider must be an opentelemetry MeterProvider, got {meter_provider!r}")
    return OtelMetricsInstrumentation(provider, seawall_registry, not _is_noop(provider), limit)
