"""OTLP shutdown and flush are bounded: a collector that hangs or refuses cannot hold up an exit."""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Iterator

import pytest

import seawall
from http_upstream import Listener
from seawall import otel
from seawall.otel._otlp import DEFAULT_SHUTDOWN_TIMEOUT
from test_uvicorn import Server, running_demo

BOUND = 1.0
SLACK = 1.5  # thread start-up and a loaded 2-core machine


class SilentListener(Listener):
    """A TCP port that accepts connections and never answers (a hung collector)."""

    def __init__(self) -> None:
        self.accepted: list[socket.socket] = []
        super().__init__()

    def handle(self, conn: socket.socket) -> None:
        self.accepted.append(conn)

    def stop(self) -> None:
        super().stop()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def silent() -> Iterator[SilentListener]:
    listener = SilentListener()
    try:
        yield listener
    finally:
        listener.stop()


def refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def endpoints(silent: SilentListener) -> dict[str, str]:
    return {"hanging": f"http://127.0.0.1:{silent.port}", "refused": f"http://127.0.0.1:{refused_port()}"}


@pytest.mark.parametrize("kind", ["hanging", "refused"])
def test_force_flush_and_shutdown_return_within_the_bound(
    silent: SilentListener, registry: seawall.Registry, kind: str
) -> None:
    # The exporter's own per-request timeout (10 s) is far longer than the bound: the bound wins.
    provider = otel.configure_otlp(
        endpoints(silent)[kind], seawall_registry=registry, timeout=10, shutdown_timeout=BOUND
    )
    tracer = provider.get_tracer("t")
    for index in range(600):  # more than one batch (512)
        tracer.start_span(f"s{index}").end()
    started = time.monotonic()
    assert provider.force_flush(5_000) is False  # not sent: never claims success
    flushed = time.monotonic() - started
    started = time.monotonic()
    provider.shutdown()
    shut = time.monotonic() - started
    assert flushed < BOUND + SLACK, flushed
    assert shut < BOUND + SLACK, shut
    provider.shutdown()  # again (atexit does it too): returns at once


def test_force_flush_keeps_the_callers_shorter_timeout(
    silent: SilentListener, registry: seawall.Registry
) -> None:
    provider = otel.configure_otlp(
        endpoints(silent)["hanging"], seawall_registry=registry, timeout=10, shutdown_timeout=2
    )
    provider.get_tracer("t").start_span("one").end()
    started = time.monotonic()
    assert provider.force_flush(300) is False
    assert time.monotonic() - started < 0.3 + SLACK
    provider.shutdown()


@pytest.mark.parametrize("value", [0, -1, 301, True, "3", float("nan")])
def test_shutdown_timeout_is_validated(value: object) -> None:
    with pytest.raises(ValueError, match="shutdown_timeout"):
        otel.configure_otlp("http://127.0.0.1:1", shutdown_timeout=value)  # type: ignore[arg-type]


@pytest.fixture(params=["hanging", "refused"])
def demo_collector_down(
    request: pytest.FixtureRequest, silent: SilentListener, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Server]:
    """A real demo process exporting spans to a collector that hangs or refuses; stopped after."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoints(silent)[request.param])
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "200")  # export soon, so the exporter is stuck
    keep = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_BSP_SCHEDULE_DELAY")
    with running_demo("--traffic-rate", "20", "--log-level", "warning", keep_env=keep) as server:
        yield server


@pytest.mark.slow
def test_demo_exits_within_the_bound_with_the_collector_down(demo_collector_down: Server) -> None:
    time.sleep(1.0)  # traffic makes spans; the exporter is now hanging or failing
    started = time.monotonic()
    demo_collector_down.process.send_signal(signal.SIGTERM)
    code = demo_collector_down.process.wait(timeout=30)
    took = time.monotonic() - started
    assert code in (0, -signal.SIGTERM)
    # The demo uses the default bound (3 s); before it there was none: 14-19 s here.
    assert took < DEFAULT_SHUTDOWN_TIMEOUT + 2.5, took


def test_flushes_do_not_pile_up_threads_behind_a_stuck_one(
    silent: SilentListener, registry: seawall.Registry
) -> None:
    provider = otel.configure_otlp(
        endpoints(silent)["hanging"], seawall_registry=registry, timeout=10, shutdown_timeout=BOUND
    )
    provider.get_tracer("t").start_span("one").end()
    assert provider.force_flush(200) is False  # now stuck in a request for up to 10 s
    before = threading.active_count()
    started = time.monotonic()
    for _ in range(20):
        assert provider.force_flush(200) is False
    assert time.monotonic() - started < 1.0  # answered at once, not 20 x 200 ms
    assert threading.active_count() <= before
    provider.shutdown()
