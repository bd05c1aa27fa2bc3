"""The demo's dependencies as a real HTTP service: one ASGI app, one route per dependency, served
by uvicorn on a free loopback port inside the demo's process and event loop.

The demo calls it through `seawall.httpx`, so its breakers, retries and timeouts meet what a real
service meets: error statuses with Retry-After, slow heads, hung requests and reset connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from collections.abc import Iterator, Mapping
from typing import Any

import uvicorn
from starlette.types import Scope

from .dependencies import Answer, SimulatedDependency

__all__ = ["Upstream"]

_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: closing sends RST instead of FIN
START_SECONDS = 10.0  # bounded waits for the server to start and to stop
STOP_SECONDS = 5.0


class _Embedded(uvicorn.Server):
    """A uvicorn server that leaves the process's signals alone: it lives inside the demo, whose
    own server (or test) owns SIGINT and SIGTERM and stops it from the demo's lifespan."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _reset(send: Any) -> bool:
    """Reset the connection under an ASGI `send` of uvicorn's HTTP protocols (their bound
    `send` holds the transport); False when the server is not uvicorn."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        return False
    if transport.is_closing():
        return True  # the client hung up already: nothing left to reset
    sock = transport.get_extra_info("socket")
    with contextlib.suppress(OSError):  # closed under us: the connection is gone either way
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
    transport.abort()
    return True


class UpstreamApp:
    """ASGI: `/<dependency>` (any method) answers what that dependency decides; other paths 404."""

    def __init__(self, dependencies: Mapping[str, SimulatedDependency]) -> None:
        self.dependencies = dependencies
        self.closing: asyncio.Event | None = None  # set when the server stops: hung requests end
        self.active = 0  # requests being answered (a hung one counts until it ends)

    async def _wait(self, dependency: SimulatedDependency, receive: Any) -> Answer | None:
        """The dependency's answer after its latency, or None when the client hangs up or the
        server stops first (so a hang holds nothing once its caller has given up)."""
        if self.closing is None:
            self.closing = asyncio.Event()
        answering = asyncio.ensure_future(dependency.answer())
        others = [asyncio.ensure_future(self.closing.wait()), asyncio.ensure_future(_disconnect(receive))]
        try:
            await asyncio.wait([answering, *others], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (answering, *others):
                task.cancel()
        return answering.result() if answering.done() and not answering.cancelled() else None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return  # lifespan is off; nothing else is served
        dependency = self.dependencies.get(scope["path"].strip("/"))
        if dependency is None:
            await _send(send, 404, {"error": "no such dependency"}, None)
            return
        self.active += 1
        try:
            answer = await self._wait(dependency, receive)
            if answer is None or answer.fault is not None:  # a reset, or a hang that ended: no answer
                if _reset(send):
                    await asyncio.sleep(0)  # let uvicorn see the connection lost (no "no response" log)
                    return
                raise ConnectionResetError(f"{dependency.name}: cannot reset under this server")
            await _send(send, answer.status, answer.body or {}, answer.retry_after)
        finally:
            self.active -= 1


async def _disconnect(receive: Any) -> None:
    """Returns when the client has gone (the request's body, if any, is read and dropped)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def _send(send: Any, status: int, body: Mapping[str, Any], retry_after: int | None) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class Upstream:
    """`UpstreamApp` under uvicorn on 127.0.0.1; `await start()` and `await stop()` (both bounded)
    run it in the current event loop; `port` is set while it runs."""

    def __init__(self, dependencies: Mapping[str, SimulatedDependency]) -> None:
        self.app = UpstreamApp(dependencies)
        self.port: int | None = None
        self._server: _Embedded | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> int:
        if self._server is not None and self.port is not None:
            return self.port
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=0,
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        server = self._server = _Embedded(config)
        self._task = asyncio.create_task(server.serve(), name="seawall-demo-upstream")
        # bounded by polls, not by the loop's clock (a test's loop may run on fake time)
        for _ in range(int(START_SECONDS / 0.01)):
            if server.started or self._task.done():
                break
            await asyncio.sleep(0.01)
        if not server.started:
            await self.stop()
            raise RuntimeError("the demo's upstream did not start")
        self.port = int(server.servers[0].sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        server, task = self._server, self._task
        self._server = self._task = None
        self.port = None
        if server is None or task is None:
            return
        if self.app.closing is not None:
            self.app.closing.set()
        server.should_exit = server.force_exit = True
        done, _ = await asyncio.wait([task], timeout=STOP_SECONDS)
        if not done:
            task.cancel()
            await asyncio.wait([task], timeout=STOP_SECONDS)
