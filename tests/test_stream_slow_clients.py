"""The SSE stream under a real uvicorn on 127.0.0.1 with raw sockets: a client that stops reading
must not keep its slot past the send timeout or the stream's deadline, and HEAD must answer at once.

Before the fix the stream blocked in `send()` forever once a client's TCP window was full, so
`stream_max_clients` idle readers shut everyone out (503 too_many_streams).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

import seawall
from live_server import LiveServer
from seawall.starlette import SnapshotStream, create_app

pytestmark = pytest.mark.slow


def stream_of(app: Any) -> SnapshotStream:
    for route in app.routes:
        if getattr(route, "name", None) == "seawall_stream":
            endpoint = route.endpoint
            assert isinstance(endpoint, SnapshotStream)
            return endpoint
    raise AssertionError("no stream route")


@pytest.fixture
def serve() -> Iterator[Callable[..., tuple[LiveServer, SnapshotStream]]]:
    servers: list[LiveServer] = []

    def start(**options: Any) -> tuple[LiveServer, SnapshotStream]:
        registry = seawall.Registry()
        for i in range(300):  # ~60 KB per frame, so an unread socket fills within a second or two
            seawall.Retry(f"retry-{i:03d}-" + "x" * 60, registry=registry)
        app = create_app(registry=registry, metrics=False, stream_interval=0.05, **options)
        server = LiveServer(app)
        servers.append(server)
        return server, stream_of(app)

    yield start
    for server in servers:
        server.stop()


def stalled_reader(port: int) -> socket.socket:
    """A client that asks for the stream and never reads a byte (a tiny receive window)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET /api/resilience/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    return sock


def stream_status(base: str) -> int:
    with (
        httpx.Client(base_url=base, timeout=5) as client,
        client.stream("GET", "/api/resilience/stream") as r,
    ):
        return r.status_code


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


@pytest.mark.parametrize(
    "options",
    [
        {"stream_send_timeout": 0.5, "stream_max_seconds": 300},  # the send timeout drops them
        {"stream_send_timeout": 60, "stream_max_seconds": 4.0},  # the stream's deadline does
    ],
    ids=["send_timeout", "deadline"],
)
def test_clients_that_stop_reading_lose_their_slot(
    serve: Callable[..., tuple[LiveServer, SnapshotStream]], options: dict[str, Any]
) -> None:
    server, stream = serve(stream_max_clients=2, **options)
    sockets = [stalled_reader(server.port) for _ in range(2)]
    try:
        wait_until(lambda: stream.open_streams == 2, 5, "both stalled readers to hold a slot")
        assert stream_status(server.base) == 503  # full, as designed
        waited = wait_until(lambda: stream.open_streams == 0, 10, "the stalled readers to be dropped")
        assert stream_status(server.base) == 200
        assert stream.dropped_slow_clients == 2
        print(f"\nstalled readers dropped {waited:.1f} s after they held both slots ({options})")
        assert waited < 8
    finally:
        for sock in sockets:
            sock.close()


def test_head_answers_at_once_and_holds_no_slot(
    serve: Callable[..., tuple[LiveServer, SnapshotStream]],
) -> None:
    server, stream = serve(stream_max_clients=1)
    with socket.create_connection(("127.0.0.1", server.port), timeout=2) as sock:
        sock.sendall(
            f"HEAD /api/resilience/stream HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)  # times out after 2 s if the server holds the answer
            assert chunk, "the server closed the connection without answering"
            head += chunk
        assert head.startswith(b"HTTP/1.1 200")
        assert b"text/event-stream" in head
        assert stream.open_streams == 0
        assert stream_status(server.base) == 200  # the only slot is free
