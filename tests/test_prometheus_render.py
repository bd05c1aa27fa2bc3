"""seawall.prometheus.render: one exposition path, byte for byte prometheus_client's encoders of the same
families, checked by the real `promtool check metrics`, negotiated leniently, gzip when asked."""

from __future__ import annotations

import contextlib
import gzip
import shutil
import subprocess
from collections.abc import Iterator

import prometheus_client
import pytest
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

import seawall
from seawall import otel
from seawall import prometheus as sp

AWKWARD = 'quo"te\nnew\\line ✓'


@pytest.fixture
def scenario() -> Iterator[CollectorRegistry]:
    prom = CollectorRegistry()
    before = Counter("app_requests_total", 'Requests "served"\nby the app', ["path"], registry=prom)
    before.labels('/a"b\\c').inc(3)
    registry = seawall.Registry()
    instrumentation = sp.instrument(prom, seawall_registry=registry, max_label_values=3)
    Gauge("app_temperature", "after seawall", registry=prom).set(1e7)
    provider = TracerProvider()
    tracing = otel.instrument(provider, seawall_registry=registry)
    sp.generate_latest(prom)  # a scrape notices tracing: exemplars from now on
    breakers = [
        seawall.CircuitBreaker(name, failure_threshold=2, registry=registry)
        for name in ("db", AWKWARD, "c", "d", "e")
    ]
    with provider.get_tracer("t").start_as_current_span("op"):
        breakers[0].call(lambda: 1)
    for _ in range(3):
        with contextlib.suppress(Exception):
            breakers[0].call(lambda: 1 / 0)
    breakers[1].call(lambda: 1)
    breakers[4].force_open()
    retry = seawall.Retry("r", attempts=2, sleep=lambda s: None, registry=registry, errors=registry.errors)
    with contextlib.suppress(OSError):
        retry.call(lambda: (_ for _ in ()).throw(OSError("x")))
    yield prom
    tracing.close()
    provider.shutdown()
    instrumentation.close()


def test_text_is_byte_identical(scenario: CollectorRegistry) -> None:
    ours = sp.generate_latest(scenario)
    assert ours == prometheus_client.generate_latest(scenario)
    assert b'breaker="_other"' in ours
    assert b"app_requests_total" in ours
    assert b"app_temperature 1e+07" in ours


def test_openmetrics_is_byte_identical(scenario: CollectorRegistry) -> None:
    ours = sp.generate_openmetrics(scenario)
    assert ours == openmetrics_latest(scenario)
    assert ours.endswith(b"# EOF\n")
    assert ours.count(b"# EOF") == 1
    assert b"trace_id=" in ours


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is installed by make setup")
@pytest.mark.parametrize("openmetrics", [False, True])
def test_promtool_accepts_both_formats(scenario: CollectorRegistry, openmetrics: bool) -> None:
    body = sp.generate_openmetrics(scenario) if openmetrics else sp.generate_latest(scenario)
    checked = subprocess.run(
        ["promtool", "check", "metrics"], input=body, capture_output=True, timeout=30, check=False
    )
    # promtool exits 1 for lint warnings too; seawall's own families must draw none
    problems = [line for line in checked.stderr.decode().splitlines() if "seawall_" in line]
    assert problems == []
    assert b"error parsing" not in checked.stderr


@pytest.mark.parametrize(
    ("accept", "openmetrics"),
    [
        ("application/openmetrics-text; version=1.0.0; charset=utf-8,text/plain;version=0.0.4;q=0.5", True),
        ("application/openmetrics-text;version=0.0.1;q=0.75,text/plain;q=0.5,*/*;q=0.1", True),
        ("text/plain;q=1,application/openmetrics-text;q=0.5", False),
        ("application/openmetrics-text; version=abc", False),
        ("application/openmetrics-text; q=zero", False),
        ("application/openmetrics-text; q=0", False),
        (";;;,,=,", False),
        ("", False),
        (None, False),
    ],
)
def test_render_negotiates_leniently(
    scenario: CollectorRegistry, accept: str | None, openmetrics: bool
) -> None:
    body, headers = sp.render(scenario, accept)
    assert headers["Content-Type"].startswith("application/openmetrics-text" if openmetrics else "text/plain")
    assert body.endswith(b"# EOF\n") is openmetrics
    assert "Content-Encoding" not in headers


def test_render_gzips_when_asked(scenario: CollectorRegistry) -> None:
    body, headers = sp.render(scenario, "application/openmetrics-text; version=1.0.0", "gzip, deflate")
    assert headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(body) == sp.generate_openmetrics(scenario)
    assert "Content-Encoding" not in sp.render(scenario, None, "gzip;q=0")[1]
    assert "Content-Encoding" not in sp.render(scenario, None, "br")[1]


def test_prometheus_client_still_reads_the_families(scenario: CollectorRegistry) -> None:
    value = scenario.get_sample_value(
        "seawall_circuit_breaker_calls_total", {"breaker": "db", "outcome": "rejected"}
    )
    assert value == 1
    assert scenario.get_sample_value("seawall_retries_total", {"retry": "r", "error_type": "OSError"}) == 1
