"""The metric contract, and a Prometheus exposition read back with prometheus_client's own parser."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from seawall.metrics.contract import CONTRACT

# The metric families seawall exports: the contract's sample names (histograms by their base name),
# plus the web layer's admin counter; rules and dashboards are checked against them.
METRIC_CONTRACT = frozenset(spec.sample_name for spec in CONTRACT) | {"seawall_admin_actions_total"}


def prometheus_name(name: str, unit: str, gauge: bool) -> str:
    """OpenTelemetry's standard Prometheus translation of a metric name (without `_total`)."""
    base = name.replace(".", "_")
    suffix = "seconds" if unit == "s" else ("ratio" if unit == "1" and gauge else None)
    if suffix is not None and not base.endswith("_" + suffix):
        base = f"{base}_{suffix}"
    return base


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(prom: CollectorRegistry) -> Samples:
    """The text exposition of `prom` as {(sample name, sorted labels): value}."""
    return parse(generate_latest(prom).decode())


def parse(text: str) -> Samples:
    """A text exposition as {(sample name, sorted labels): value}, by prometheus_client's parser."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def get(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, tuple(sorted(labels.items()))))


def transitions(found: Samples, breaker: str, from_state: str, to_state: str) -> float | None:
    """The breaker's transitions_total sample from one state to another (None: no such series)."""
    return get(
        found,
        "seawall_circuit_breaker_transitions_total",
        breaker=breaker,
        from_state=from_state,
        to_state=to_state,
    )
