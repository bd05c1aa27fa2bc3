"""Read a Prometheus exposition back with prometheus_client's own parser, for exact assertions."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(prom: CollectorRegistry) -> Samples:
    """The text exposition of `prom` as {(sample name, sorted labels): value}."""
    text = generate_latest(prom).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def get(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, tuple(sorted(labels.items()))))
