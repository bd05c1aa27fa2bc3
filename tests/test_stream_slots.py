"""Live-page slots under a real uvicorn on loopback: idle and greedy clients cannot lock a page out.

Before issue 17 a client that never read kept its slot for `stream_max_seconds` (kernel buffers
absorbed the small frames, so no send ever blocked), and there was no per-address limit: 100 idle
or 100 reading clients filled `stream_max_clients` and a normal page got 503. Now an unacknowledged
stream is dropped after `stream_idle_timeout`, and one address holds at most
`stream_max_clients_per_address` streams. Loopback has a whole /8, so the crowds come from
127.0.0.2 and 127.0.0.3 and the normal page from 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import seawall
from seawall.starlette import SnapshotStream, create_app
from stacktools.harness import wait_until
from test_stream_slow_clients import LiveServer, stream_of

pytestmark = pytest.mark.slow

IDLE_TIMEOUT = 1.5
CROWD = 100
_ID = re.compile(rb'"stream":"([0-9a-f]{32})"')


@pytest.fixture
def live() -> Iterator[tuple[LiveServer, SnapshotStream]]:
    registry = seawall.Registry()
    seawall.CircuitBreaker("payments", registry=registry)
    app = create_app(
        registry=registry,
        metrics=False,
        stream_interval=0.2,
        stream_idle_timeout=IDLE_TIMEOUT,
        stream_max_clients=100,
        stream_max_clients_per_address=10,
    )
    server = LiveServer(app)
    try:
        yield server, stream_of(app)
    finally:
        server.stop()


REQUEST = b"GET /api/resilience/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"


async def idle_client(port: int) -> asyncio.StreamWriter:
    """Asks for the stream from 127.0.0.2 and never reads nor acknowledges."""
    _, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.2", 0))
    writer.write(REQUEST)
    await writer.drain()
    return writer


async def reading_client(port: int, stop: asyncio.Event, base: str) -> None:
    """Reads everything from 127.0.0.3 and acknowledges like the page does."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.3", 0))
    writer.write(REQUEST)
    await writer.drain()
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.3")
    async with httpx.AsyncClient(base_url=base, transport=transport, timeout=5) as acks:
        stream_id, acked = None, 0.0
        try:
            while not stop.is_set():
                try:
                    chunk = await asyncio.wait_for(reader.read(65536), timeout=0.2)
                except asyncio.TimeoutError:
                    chunk = b""
                if stream_id is None and (found := _ID.search(chunk)):
                    stream_id = found.group(1).decode()
                if chunk == b"" and reader.at_eof():
                    return  # refused (503) or ended
                if stream_id and time.monotonic() - acked > IDLE_TIMEOUT / 3:
                    acked = time.monotonic()
                    await acks.get("/api/resilience/stream/ack", params={"stream": stream_id})
        finally:
            writer.close()


def normal_page_gets_a_snapshot(base: str) -> dict[str, Any]:
    with (
        httpx.Client(base_url=base, timeout=5) as client,
        client.stream("GET", "/api/resilience/stream") as response,
    ):
        assert response.status_code == 200, response.read()[:200]
        event = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "snapshot":
                return dict(json.loads(line[6:]))
    raise AssertionError("no snapshot")


@pytest.mark.timeout(60)
def test_idle_and_reading_crowds_leave_a_normal_page_served(live: tuple[LiveServer, SnapshotStream]) -> None:
    server, stream = live

    async def scenario() -> tuple[dict[str, Any], int, int]:
        stop = asyncio.Event()
        idle = [await idle_client(server.port) for _ in range(CROWD)]
        readers = [asyncio.create_task(reading_client(server.port, stop, server.base)) for _ in range(CROWD)]
        await asyncio.sleep(1.0)  # both crowds have taken what they can
        open_with_crowds = stream.open_streams
        snapshot = await asyncio.to_thread(normal_page_gets_a_snapshot, server.base)
        await asyncio.to_thread(
            wait_until, lambda: stream.dropped_idle_clients >= 10, IDLE_TIMEOUT + 5, "idle streams dropped"
        )
        stop.set()
        await asyncio.gather(*readers)
        for writer in idle:
            writer.close()
        return snapshot, open_with_crowds, stream.dropped_idle_clients

    snapshot, open_with_crowds, dropped = asyncio.run(asyncio.wait_for(scenario(), timeout=45))
    assert [b["name"] for b in snapshot["breakers"]] == ["payments"]
    assert open_with_crowds <= 20  # ten per crowd's address, whatever the crowds' size
    assert dropped >= 10  # the idle crowd's admitted streams, each within its idle timeout


def test_an_acknowledged_stream_stays_and_an_unknown_id_is_404(
    live: tuple[LiveServer, SnapshotStream],
) -> None:
    server, stream = live
    with httpx.Client(base_url=server.base, timeout=5) as client:
        assert client.get("/api/resilience/stream/ack", params={"stream": "0" * 32}).status_code == 404
        with client.stream("GET", "/api/resilience/stream") as response:
            lines = response.iter_lines()
            hello = next(line for line in lines if line.startswith("data: "))
            stream_id = json.loads(hello[6:])["stream"]
            start = time.monotonic()
            for line in lines:  # read on, acknowledging, past twice the idle timeout
                if time.monotonic() - start > 2 * IDLE_TIMEOUT:
                    break
                ack = client.get("/api/resilience/stream/ack", params={"stream": stream_id})
                assert ack.status_code == 204, line
    assert stream.dropped_idle_clients == 0
