"""Shared test fixtures: a fake clock so no test ever sleeps for real, a fresh seawall registry
(so names never collide in the default one), a fresh Prometheus registry and its instrumentation,
and a collector of the events a registry publishes."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

import seawall
from http_upstream import Upstream
from redis_server import RedisServer
from seawall import otel
from seawall import prometheus as sp
from seawall.events import Event
from stacktools.harness import FAST, Receivers, Stack
from stacktools.receivers import FakePagerDuty, FakeSlack


def run_command(
    args: Sequence[str], *, timeout: float = 60, **options: Any
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion within `timeout` seconds, its output captured as text; the
    caller asserts on the return code (never raises for a failing command)."""
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False, **options)


def load_module(name: str, path: Path) -> ModuleType:
    """Import the file at `path` as the module `name` (scripts outside the packages)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def run_threads(count: int, worker: Callable[[], object]) -> None:
    """Start `count` threads on `worker` together and wait (bounded) for all of them."""
    start = threading.Barrier(count)

    def body() -> None:
        start.wait(timeout=10)
        worker()

    threads = [threading.Thread(target=body) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)


def decorated_store(decorator: Callable[[Callable[..., Any]], Any]) -> Any:
    """A class whose sync method `get` (with a docstring) and async method `aget` go through
    `decorator`, the way users decorate methods."""

    class Store:
        @decorator
        def get(self, key: str) -> str:
            """Get a key."""
            return key.upper()

        @decorator
        async def aget(self, key: str) -> str:
            return key

    return Store


class FakeClock:
    """A monotonic clock the test moves by hand: `clock()` returns `now`, `advance(s)` moves it on.
    Its sleeps (sync `sleep_sync`, async `sleep`) only advance it, and are recorded in `slept`."""

    __slots__ = ("now", "slept")

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError(f"seconds must be >= 0, got {seconds!r}")
        self.now += seconds
        return self.now

    def sleep_sync(self, seconds: float) -> None:
        """A sync sleep that only advances the clock (for code that takes an injected sleep)."""
        self.slept.append(seconds)
        self.advance(max(0.0, seconds))

    async def sleep(self, seconds: float) -> None:
        """An async sleep that only advances the clock."""
        self.sleep_sync(seconds)


@pytest.fixture(autouse=True)
def trust_the_test_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """Starlette's TestClient sends `Host: testserver`; state-changing requests must name a
    trusted host (seawall.starlette.hosts), so the tests trust it next to the loopback names."""
    monkeypatch.setenv("SEAWALL_TRUSTED_HOSTS", "localhost,127.0.0.1,::1,testserver")


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry() -> seawall.Registry:
    return seawall.Registry()


@pytest.fixture
def events(registry: seawall.Registry) -> Iterator[list[Event]]:
    seen: list[Event] = []
    unsubscribe = registry.bus.subscribe(seen.append)
    yield seen
    unsubscribe()


@pytest.fixture
def tracing(registry: seawall.Registry) -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """An SDK tracer provider keeping spans in memory, with `registry` instrumented to it."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentation = otel.instrument(provider, seawall_registry=registry)
    yield provider, exporter
    instrumentation.close()
    provider.shutdown()


@pytest.fixture
def prom() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def inst(prom: CollectorRegistry, registry: seawall.Registry) -> Iterator[sp.PrometheusInstrumentation]:
    instrumentation = sp.instrument(prom, seawall_registry=registry)
    yield instrumentation
    instrumentation.close()


@pytest.fixture
def receivers() -> Iterator[tuple[FakeSlack, FakePagerDuty]]:
    """Fake Slack and PagerDuty on 127.0.0.1 for the stack tests, stopped afterwards."""
    with FakeSlack() as slack, FakePagerDuty() as pagerduty:
        yield slack, pagerduty


def fast_stack(
    root: Path, receivers: tuple[FakeSlack, FakePagerDuty], routing_key: str, **options: Any
) -> Stack:
    """The stack tests' stack: the shipped configs with the fast test timings, 10 demo calls a
    second, and Alertmanager wired to the fake Slack and PagerDuty (`receivers`)."""
    slack, pagerduty = receivers
    return Stack(root, Receivers(slack.url, pagerduty.url, routing_key), FAST, traffic_rate=10.0, **options)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server on 127.0.0.1, stopped after the test (tests/redis_server.py)."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    """A real HTTP upstream with scripted faults on 127.0.0.1 (tests/http_upstream.py), stopped after."""
    server = Upstream()
    yield server
    server.stop()
