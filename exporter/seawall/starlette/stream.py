"""Server-Sent Events: the registry's snapshot about once a second, for the live status page.

A pure ASGI app rather than a StreamingResponse so that both ends are explicit and bounded: it
watches `receive()` for the client's disconnect, stops when the hub is closed (server shutdown; see
`seawall.starlette.serve`, which closes hubs when uvicorn is asked to exit, because uvicorn waits
for open responses before it runs the lifespan shutdown), and ends every stream after
`max_seconds` (the page reconnects by itself, so a bounded stream costs it nothing).
One snapshot is built per interval and shared by every client.

Every stream starts with `event: hello` naming the longest gap between two frames (`heartbeat`);
between snapshots the server sends `event: heartbeat`, so the page can tell a dead connection from
a quiet one. No send may hold a slot past its deadline: a client that stops reading (its TCP
window full, so the server's `send()` blocks) is dropped after `send_timeout` seconds, or at the
stream's end or the hub's close, whichever comes first. HEAD answers the headers at once.

A send timeout alone does not find a client that stopped reading: kernel buffers on both ends
absorb minutes of small frames. So each stream has an id (in `hello`) and the reader acknowledges
it (`GET /api/resilience/stream/ack?stream=ID`, the page does it every `ack_every` seconds); a
stream unacknowledged for `idle_timeout` seconds is dropped as idle. And one client address may
hold at most `max_per_client` streams, so a hundred readers from one place cannot fill the slots.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
import weakref
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread
from starlette.types import Receive, Scope, Send

from seawall.core.registry import Registry

from ._json import dumps
from ._problems import error_response, mark_refused
from .views import registry_payload

__all__ = ["SnapshotStream", "close_all_streams"]


_hubs: weakref.WeakSet[SnapshotStream] = weakref.WeakSet()
_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"x-accel-buffering", b"no"),
]
log = logging.getLogger("seawall.web")
# Per kind in one frame (breakers not closed first): 100k breakers made a 46 MB frame that took
# the event loop 2.4 s to build; the page draws a tile per breaker and cannot show more anyway.
FRAME_ITEMS = 500


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
        send_timeout: float = 10.0,
        heartbeat: float = 5.0,
        details: bool = False,
        idle_timeout: float = 15.0,
        max_per_client: int = 10,
    ) -> None:
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not 0.05 <= interval <= 60:
            raise ValueError(f"stream_interval must be between 0.05 and 60 seconds, got {interval!r}")
        if isinstance(max_seconds, bool) or not isinstance(max_seconds, (int, float)) or max_seconds <= 0:
            raise ValueError(f"stream_max_seconds must be > 0, got {max_seconds!r}")
        self.registry = registry
        # One frame is shared by every client, and EventSource cannot send a token: the stream
        # carries error details only when the operator opted in for everyone.
        self.details = details
        self.interval = float(interval)
        self.max_seconds = float(max_seconds)
        if isinstance(max_streams, bool) or not isinstance(max_streams, int) or max_streams < 1:
            raise ValueError(f"stream_max_clients must be an int >= 1, got {max_streams!r}")
        self.max_streams = max_streams
        for pname, value in (("stream_send_timeout", send_timeout), ("stream_heartbeat", heartbeat)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.05 <= value <= 300:
                raise ValueError(f"{pname} must be between 0.05 and 300 seconds, got {value!r}")
        self.send_timeout = float(send_timeout)
        if (
            isinstance(idle_timeout, bool)
            or not isinstance(idle_timeout, (int, float))
            or not 0.3 <= idle_timeout <= 3600
        ):
            raise ValueError(
                f"stream_idle_timeout must be between 0.3 and 3600 seconds, got {idle_timeout!r}"
            )
        if isinstance(max_per_client, bool) or not isinstance(max_per_client, int) or max_per_client < 1:
            raise ValueError(f"stream_max_clients_per_address must be an int >= 1, got {max_per_client!r}")
        self.idle_timeout = float(idle_timeout)
        self.ack_every = self.idle_timeout / 3  # two acks may be lost before the stream is dropped
        self.max_per_client = max_per_client
        self.dropped_idle_clients = 0
        self._acked: dict[str, float] = {}  # stream id -> when its reader last acknowledged
        self._per_client: dict[str, int] = {}
        # The longest silence between two frames: snapshots every `interval`, heartbeats between.
        self.heartbeat = min(self.interval, float(heartbeat))
        self.dropped_slow_clients = 0
        self.retry_ms = int(retry_ms)
        self._clock = clock
        self._cached: tuple[float, bytes] | None = None
        self._builder = anyio.CapacityLimiter(1)
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
        payload = registry_payload(self.registry, details=self.details, cap=FRAME_ITEMS)
        frame = b"event: snapshot\ndata: " + dumps(payload) + b"\n\n"
        self._cached = (now, frame)
        return frame

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, code: str, message: str) -> None:
        mark_refused(scope)
        response = error_response(503, code, message, headers={"retry-after": "2"})
        await response(scope, receive, send)

    def _safe_frame(self) -> bytes:
        """A snapshot frame, or an `error` event when building one failed (the stream goes on)."""
        try:
            return self._frame()
        except Exception as exc:
            self.registry.bus.report_error("web.stream", exc)
            return b'event: error\ndata: {"error_code":"snapshot_failed"}\n\n'

    async def _deliver(self, send: Send, message: dict[str, Any], stop: asyncio.Event, until: float) -> bool:
        """Send one message unless the client stops reading: False when the send did not finish
        within `send_timeout`, by `until` (monotonic), or before `stop` was set."""
        limit = max(0.05, min(self.send_timeout, until - time.monotonic()))  # a moment even at the end
        sending = asyncio.ensure_future(send(message))
        stopping = asyncio.ensure_future(stop.wait())
        try:
            done, _ = await asyncio.wait(
                {sending, stopping}, timeout=limit, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopping.cancel()
        if sending in done:
            sending.result()  # an OSError from the transport reaches the caller
            return True
        sending.cancel()
        await asyncio.gather(sending, return_exceptions=True)
        return False

    def ack(self, stream_id: str) -> bool:
        """The reader of stream `stream_id` is alive; False when no such stream is open."""
        if stream_id not in self._acked:
            return False
        self._acked[stream_id] = time.monotonic()
        return True

    async def _head(self, send: Send) -> None:
        """HEAD: the stream's headers and no body, at once (it must not hold a slot)."""
        await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("method") == "HEAD":
            await self._head(send)
            return
        if self._closed_flag:
            await self._refuse(scope, receive, send, "shutting_down", "the server is shutting down")
            return
        if self.open_streams >= self.max_streams:
            await self._refuse(
                scope, receive, send, "too_many_streams", "too many open status streams; retry later"
            )
            return
        client = scope.get("client")
        address = str(client[0]) if client else "unknown"
        if self._per_client.get(address, 0) >= self.max_per_client:
            await self._refuse(
                scope,
                receive,
                send,
                "too_many_streams_from_client",
                "too many open status streams from this address",
            )
            return
        stream_id = uuid.uuid4().hex
        self._acked[stream_id] = time.monotonic()
        self._per_client[address] = self._per_client.get(address, 0) + 1
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
        deadline = time.monotonic() + self.max_seconds
        hello = dumps(
            {
                "interval": self.interval,
                "heartbeat": self.heartbeat,
                "stream": stream_id,
                "ack_every": self.ack_every,
            }
        )
        opening = f"retry: {self.retry_ms}\n\nevent: hello\ndata: ".encode() + hello + b"\n\n"
        delivered = True
        try:
            delivered = await self._deliver(
                send,
                {"type": "http.response.start", "status": 200, "headers": _HEADERS},
                disconnected,
                deadline,
            ) and await self._deliver(
                send,
                {"type": "http.response.body", "body": opening, "more_body": True},
                disconnected,
                deadline,
            )
            last_snapshot = -math.inf
            idle = False
            while delivered and not disconnected.is_set() and not self._closed_flag:
                now = time.monotonic()
                if now >= deadline:
                    break
                if now - self._acked[stream_id] > self.idle_timeout:
                    idle = True
                    break
                if now - last_snapshot >= self.interval * 0.999:
                    # Built in a thread (one at a time: the others then find it cached).
                    frame = await anyio.to_thread.run_sync(self._safe_frame, limiter=self._builder)
                    last_snapshot = now
                else:
                    frame = b"event: heartbeat\ndata: {}\n\n"
                body = {"type": "http.response.body", "body": frame, "more_body": True}
                delivered = await self._deliver(send, body, disconnected, deadline)
                remaining = deadline - time.monotonic()
                if not delivered or remaining <= 0:
                    break
                wait = min(self.heartbeat, self.interval - (time.monotonic() - last_snapshot), remaining)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(disconnected.wait(), timeout=max(wait, 0.0))
            if idle:
                end = {"type": "http.response.body", "body": b"", "more_body": False}
                await self._deliver(send, end, disconnected, time.monotonic())  # a moment, no more
                self.dropped_idle_clients += 1
                log.warning(
                    "seawall status stream: dropped a client that acknowledged nothing for %.1fs",
                    self.idle_timeout,
                )
            elif delivered and (self._closed_flag or not watcher.done()):
                end = {"type": "http.response.body", "body": b"event: bye\ndata: {}\n\n", "more_body": False}
                # A bounded last send: at most send_timeout, even past the deadline.
                await self._deliver(send, end, asyncio.Event(), time.monotonic() + self.send_timeout)
            elif not delivered and not watcher.done():
                self.dropped_slow_clients += 1
                log.warning(
                    "seawall status stream: dropped a client that stopped reading for %.1fs",
                    self.send_timeout,
                )
        except OSError:
            pass  # the client went away between two frames
        finally:
            self.open_streams -= 1
            self._acked.pop(stream_id, None)
            left = self._per_client.get(address, 1) - 1
            if left > 0:
                self._per_client[address] = left
            else:
                self._per_client.pop(address, None)
            self._waiters.discard(waiter)
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
