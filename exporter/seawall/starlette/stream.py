"""Server-Sent Events: the registry's snapshot about once a second, for the live status page.

A pure ASGI app rather than a StreamingResponse so that both ends are explicit and bounded: it
watches `receive()` for the client's disconnect, stops when the hub is closed (server shutdown; see
`seawall.starlette.serve`, which closes hubs when uvicorn is asked to exit, because uvicorn waits
for open responses before it runs the lifespan shutdown), and ends every stream after
`max_seconds` (EventSource reconnects by itself, so a bounded stream costs the page nothing).
One snapshot is built per interval and shared by every client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import weakref
from collections.abc import Callable
from typing import Any

from .._registry import Registry
from ._problems import error_body
from .views import registry_payload

__all__ = ["SnapshotStream", "close_all_streams"]

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]

_hubs: weakref.WeakSet[SnapshotStream] = weakref.WeakSet()


def close_all_streams() -> None:
    """End every open stream of every hub in this process (called on server shutdown)."""
    for hub in list(_hubs):
        hub.close()


class SnapshotStream:
    """The `/api/resilience/stream` endpoint."""

    def __init__(
        self,
        registry: Registry,
        *,
        interval: float = 1.0,
        max_seconds: float = 300.0,
        max_streams: int = 100,
        retry_ms: int = 2000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not 0.05 <= interval <= 60:
            raise ValueError(f"stream_interval must be between 0.05 and 60 seconds, got {interval!r}")
        if isinstance(max_seconds, bool) or not isinstance(max_seconds, (int, float)) or max_seconds <= 0:
            raise ValueError(f"stream_max_seconds must be > 0, got {max_seconds!r}")
        self.registry = registry
        self.interval = float(interval)
        self.max_seconds = float(max_seconds)
        if isinstance(max_streams, bool) or not isinstance(max_streams, int) or max_streams < 1:
            raise ValueError(f"stream_max_clients must be an int >= 1, got {max_streams!r}")
        self.max_streams = max_streams
        self.retry_ms = int(retry_ms)
        self._clock = clock
        self._cached: tuple[float, bytes] | None = None
        self._closed_flag = False
        # Each open stream's wake-up event with its loop, so close() can be called from any thread.
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self.open_streams = 0
        _hubs.add(self)

    def close(self) -> None:
        """End open streams now and refuse new ones (they get 503)."""
        self._closed_flag = True
        for loop, event in list(self._waiters):
            with contextlib.suppress(RuntimeError):  # that loop is already closed
                loop.call_soon_threadsafe(event.set)

    def _frame(self) -> bytes:
        now = self._clock()
        cached = self._cached
        if cached is not None and now - cached[0] < self.interval * 0.5:
            return cached[1]
        payload = registry_payload(self.registry)
        data = json.dumps(payload, separators=(",", ":"), allow_nan=False)
        frame = f"event: snapshot\ndata: {data}\n\n".encode()
        self._cached = (now, frame)
        return frame

    async def _refuse(self, send: Send, code: str, message: str) -> None:
        body = error_body(503, code, message)
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [(b"content-type", b"application/json"), (b"retry-after", b"2")],
            }
        )
        await send({"type": "http.response.body", "body": json.dumps(body).encode()})

    def _safe_frame(self) -> bytes:
        """A snapshot frame, or an `error` event when building one failed (the stream goes on)."""
        try:
            return self._frame()
        except Exception as exc:
            self.registry.bus.report_error("web.stream", exc)
            return b'event: error\ndata: {"error_code":"snapshot_failed"}\n\n'

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._closed_flag:
            await self._refuse(send, "shutting_down", "the server is shutting down")
            return
        if self.open_streams >= self.max_streams:
            await self._refuse(send, "too_many_streams", "too many open status streams; retry later")
            return
        disconnected = asyncio.Event()  # set by the client's disconnect or by close()
        waiter = (asyncio.get_running_loop(), disconnected)
        self._waiters.add(waiter)

        async def watch() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    disconnected.set()
                    return

        watcher = asyncio.create_task(watch())
        self.open_streams += 1
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"text/event-stream; charset=utf-8"),
                        (b"cache-control", b"no-store"),
                        (b"x-accel-buffering", b"no"),
                    ],
                }
            )
            await send(
                {
                    "type": "http.response.body",
                    "body": f"retry: {self.retry_ms}\n\n".encode(),
                    "more_body": True,
                }
            )
            deadline = time.monotonic() + self.max_seconds
            while not disconnected.is_set() and not self._closed_flag:
                await send({"type": "http.response.body", "body": self._safe_frame(), "more_body": True})
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(disconnected.wait(), timeout=min(self.interval, remaining))
            if self._closed_flag or not watcher.done():
                await send(
                    {"type": "http.response.body", "body": b"event: bye\ndata: {}\n\n", "more_body": False}
                )
        except OSError:
            pass  # the client went away between two frames
        finally:
            self.open_streams -= 1
            self._waiters.discard(waiter)
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
