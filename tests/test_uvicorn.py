"""One real server: `python -m seawall demo` under uvicorn on 127.0.0.1, started and stopped here."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest

from seawall.demo import BREAKERS
from stacktools.harness import wait_until

pytestmark = pytest.mark.slow


@dataclass
class Server:
    process: subprocess.Popen[str]
    base: str
    output: list[str]


def start_demo(*args: str, keep_env: tuple[str, ...] = ()) -> Server:
    env = {
        key: value
        for key, value in os.environ.items()
        if key in keep_env or not key.startswith(("SEAWALL_", "OTEL_"))
    }
    env["PYTHONUNBUFFERED"] = "1"
    process = subprocess.Popen(
        [sys.executable, "-m", "seawall", "demo", "--host", "127.0.0.1", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    output: list[str] = []
    found = threading.Event()
    base: list[str] = []

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
            if match and not base:
                base.append(match.group(1))
                found.set()

    threading.Thread(target=pump, daemon=True).start()
    if not found.wait(timeout=20):
        process.kill()
        process.wait(timeout=5)
        pytest.fail("demo did not print its URL within 20 s:\n" + "".join(output))
    return Server(process, base[0], output)


def stop(server: Server) -> None:
    if server.process.poll() is None:
        server.process.kill()
        server.process.wait(timeout=10)


@contextmanager
def running_demo(*args: str, keep_env: tuple[str, ...] = ()) -> Iterator[Server]:
    """`start_demo` for the length of a `with` block (a fixture's body): stopped however it ends."""
    server = start_demo(*args, keep_env=keep_env)
    try:
        yield server
    finally:
        stop(server)


@pytest.fixture
def demo() -> Iterator[Server]:
    with running_demo("--traffic-rate", "10", "--log-level", "warning") as server:
        yield server


def test_demo_serves_trips_and_heals(demo: Server) -> None:
    with httpx.Client(base_url=demo.base, timeout=5) as client:
        assert client.get("/health").json() == {"status": "alive"}
        assert "status page" in "".join(demo.output)
        payments, inventory = BREAKERS["payments"], BREAKERS["inventory"]
        open_line = f'seawall_circuit_breaker_state{{breaker="{payments}",state="open"}} 1.0'
        closed_line = f'seawall_circuit_breaker_state{{breaker="{payments}",state="closed"}} 1.0'
        assert client.post("/chaos/payments", json={"outage": True}).status_code == 200
        wait_until(lambda: open_line in client.get("/metrics").text, 10, "payments to open")
        assert client.get("/health/ready").json()["status"] == "degraded"
        assert client.post("/chaos/payments", json={"outage": False}).status_code == 200
        wait_until(lambda: closed_line in client.get("/metrics").text, 20, "payments to close again")
        calls = client.get("/metrics").text
        assert re.search(
            rf'seawall_circuit_breaker_calls_total\{{breaker="{re.escape(inventory)}",'
            r'outcome="success"\} [1-9]',
            calls,
        )


@pytest.mark.parametrize(("sig", "codes"), [(signal.SIGINT, (0,)), (signal.SIGTERM, (0, -signal.SIGTERM))])
def test_open_event_stream_does_not_hold_up_shutdown(demo: Server, sig: int, codes: tuple[int, ...]) -> None:
    with (
        httpx.Client(base_url=demo.base, timeout=5) as client,
        client.stream("GET", "/api/resilience/stream") as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        for line in lines:
            if line.startswith("data: "):
                break
        started = time.monotonic()
        demo.process.send_signal(sig)
        for _line in lines:  # the server ends the stream itself
            pass
        assert demo.process.wait(timeout=10) in codes
    assert time.monotonic() - started < 3  # uvicorn alone would wait out its 5 s grace period
