"""The SSE endpoint at the ASGI level: frames, shared snapshots, client disconnect, server close."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

import seawall
from seawall import CircuitBreaker
from seawall.starlette import SnapshotStream, close_all_streams

SCOPE = {"type": "http", "method": "GET", "path": "/api/resilience/stream", "headers": []}


class Client:
    """Plays the server side of ASGI: records what the app sends, disconnects on demand."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.frames = asyncio.Queue[str]()
        self._disconnect = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        await self._disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.messages.append(message)
        if message["type"] == "http.response.body" and message.get("body"):
            await self.frames.put(message["body"].decode())

    def disconnect(self) -> None:
        self._disconnect.set()

    async def next_snapshot(self) -> dict[str, Any]:
        while True:
            frame = await asyncio.wait_for(self.frames.get(), timeout=5)
            if frame.startswith("event: snapshot"):
                return dict(json.loads(frame.split("data: ", 1)[1]))


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout=20))


def test_frames_follow_state_and_end_on_disconnect() -> None:
    registry = seawall.Registry()
    breaker = CircuitBreaker("payments", registry=registry)
    stream = SnapshotStream(registry, interval=0.05)

    async def scenario() -> list[dict[str, Any]]:
        client = Client()
        task = asyncio.create_task(stream(SCOPE, client.receive, client.send))
        first = await client.next_snapshot()
        assert stream.open_streams == 1
        breaker.force_open()
        second = await client.next_snapshot()
        while second["breakers"][0]["state"] != "forced_open":
            second = await client.next_snapshot()
        client.disconnect()
        await asyncio.wait_for(task, timeout=2)
        assert stream.open_streams == 0
        start = client.messages[0]
        assert start["status"] == 200
        assert (b"content-type", b"text/event-stream; charset=utf-8") in start["headers"]
        assert client.messages[1]["body"].startswith(b"retry: ")
        return [first, second]

    first, second = run(scenario())
    assert first["breakers"][0]["state"] == "closed"
    assert second["breakers"][0]["state"] == "forced_open"


def test_close_ends_open_streams_and_refuses_new_ones() -> None:
    registry = seawall.Registry()
    stream = SnapshotStream(registry, interval=30)  # only close() can end it early

    async def scenario() -> Client:
        client = Client()
        task = asyncio.create_task(stream(SCOPE, client.receive, client.send))
        await client.next_snapshot()
        close_all_streams()
        await asyncio.wait_for(task, timeout=2)
        late = Client()
        await asyncio.wait_for(stream(SCOPE, late.receive, late.send), timeout=2)
        assert late.messages[0]["status"] == 503
        return client

    client = run(scenario())
    last = client.messages[-1]
    assert last["body"].startswith(b"event: bye")
    assert last["more_body"] is False


def test_stream_ends_after_max_seconds() -> None:
    stream = SnapshotStream(seawall.Registry(), interval=0.05, max_seconds=0.01)

    async def scenario() -> Client:
        client = Client()
        await asyncio.wait_for(stream(SCOPE, client.receive, client.send), timeout=2)
        return client

    client = run(scenario())
    assert client.messages[-1]["more_body"] is False


def test_one_snapshot_is_shared_within_an_interval(fake_clock: Any) -> None:
    registry = seawall.Registry()
    stream = SnapshotStream(registry, interval=1.0, clock=fake_clock)
    first = stream._frame()
    CircuitBreaker("late", registry=registry)
    assert stream._frame() is first  # same interval: served from the cache
    fake_clock.advance(1.0)
    assert b'"late"' in stream._frame()


@pytest.mark.parametrize("interval", [0, 0.01, 61, True, "1"])
def test_interval_is_validated(interval: Any) -> None:
    with pytest.raises(ValueError, match="stream_interval"):
        SnapshotStream(seawall.Registry(), interval=interval)


def test_streams_are_bounded() -> None:
    stream = SnapshotStream(seawall.Registry(), interval=30, max_streams=1)

    async def scenario() -> dict[str, Any]:
        first = Client()
        task = asyncio.create_task(stream(SCOPE, first.receive, first.send))
        await first.next_snapshot()
        second = Client()
        await asyncio.wait_for(stream(SCOPE, second.receive, second.send), timeout=2)
        first.disconnect()
        await asyncio.wait_for(task, timeout=2)
        assert second.messages[0]["status"] == 503
        return dict(json.loads(second.messages[1]["body"]))

    body = run(scenario())
    assert body["error_code"] == "too_many_streams"
    assert set(body) >= {"error", "error_code", "error_id", "message"}
    with pytest.raises(ValueError, match="stream_max_clients"):
        SnapshotStream(seawall.Registry(), max_streams=0)


def test_uvicorn_shutdown_hook_closes_streams(monkeypatch: pytest.MonkeyPatch) -> None:
    import signal

    import uvicorn

    from seawall.starlette import install_uvicorn_shutdown_hook

    calls: list[int] = []
    monkeypatch.setattr(uvicorn.Server, "handle_exit", lambda self, sig, frame: calls.append(sig))
    install_uvicorn_shutdown_hook()
    install_uvicorn_shutdown_hook()  # idempotent: wrapped once
    stream = SnapshotStream(seawall.Registry())
    server = uvicorn.Server(uvicorn.Config(app=lambda scope, receive, send: None))
    server.handle_exit(signal.SIGTERM, None)
    assert calls == [signal.SIGTERM]
    assert stream._closed_flag is True
