"""A real HTTP upstream for the client tests: uvicorn on 127.0.0.1 serving scripted faults, and a
raw socket server that resets connections. Both are started and stopped by the tests' fixtures.

Routes of `Upstream` (every request is counted per path in `hits`, with its method and body, and
its `traceparent` header in `traceparents`):
  /status/{code}?retry_after=..   that status, with Retry-After when asked
  /flaky/{key}?fail=N&status=S&delay=s  S (after s seconds) for the first N requests to key, then 200
  /slow?seconds=s                 the head after s seconds
  /drip?chunks=n&interval=s       200, then n chunks s seconds apart
  /hang                           never answers (until the server stops)
  /echo                           200 with the request body
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections import defaultdict
from typing import Any

from live_server import LiveServer

Scope = dict[str, Any]
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on with 0 s: close() sends RST


class UpstreamApp:
    """The ASGI app; `hits[path]` lists (method, body) per request received."""

    def __init__(self) -> None:
        self.hits: defaultdict[str, list[tuple[str, bytes]]] = defaultdict(list)
        self.traceparents: defaultdict[str, list[str | None]] = defaultdict(list)
        self.flaky: defaultdict[str, int] = defaultdict(int)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path: str = scope["path"]
        self.hits[path].append((scope["method"], body))
        headers_in = dict(scope["headers"])
        traceparent = headers_in.get(b"traceparent")
        self.traceparents[path].append(None if traceparent is None else traceparent.decode())
        query = dict(item.split("=", 1) for item in scope["query_string"].decode().split("&") if "=" in item)
        parts = path.strip("/").split("/")
        headers: list[tuple[bytes, bytes]] = []
        status, payload = 200, b"ok"
        if parts[0] == "status":
            status = int(parts[1])
            payload = f"status {status}".encode()
        elif parts[0] == "flaky":
            self.flaky[path] += 1
            if self.flaky[path] <= int(query.get("fail", "1")):
                status = int(query.get("status", "503"))
                await asyncio.sleep(float(query.get("delay", "0")))
        elif parts[0] == "slow":
            await asyncio.sleep(float(query.get("seconds", "1")))
        elif parts[0] == "hang":
            await asyncio.sleep(3600)
        elif parts[0] == "echo":
            payload = body
        if "retry_after" in query:
            headers.append((b"retry-after", query["retry_after"].replace("%20", " ").encode()))
        if parts[0] == "drip":
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            for _ in range(int(query.get("chunks", "3"))):
                await asyncio.sleep(float(query.get("interval", "0.1")))
                await send({"type": "http.response.body", "body": b"x", "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        headers.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


class Upstream(LiveServer):
    """`UpstreamApp` under uvicorn in a thread on a free loopback port; `stop()` ends it."""

    def __init__(self) -> None:
        self.app = UpstreamApp()
        super().__init__(self.app)

    def hits(self, path: str) -> list[tuple[str, bytes]]:
        return list(self.app.hits[path])


class Listener:
    """A TCP port on 127.0.0.1 whose connections, accepted on one thread, go to `handle` until
    `stop()`. Subclasses set their own state before calling `__init__` (it starts the thread)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = int(self.sock.getsockname()[1])
        self.base = f"http://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:  # the accept timeout, or the socket closed by stop()
                continue
            self.handle(conn)

    def handle(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=5)
        self.sock.close()


class ResetServer(Listener):
    """Accepts connections and resets the first `resets` of them (RST, no answer); later ones get
    a plain `200 ok`. Counts what it accepted."""

    def __init__(self, resets: int) -> None:
        self.resets = resets
        self.accepted = 0
        super().__init__()

    def handle(self, conn: socket.socket) -> None:
        self.accepted += 1
        with conn:
            conn.settimeout(2)
            try:
                conn.recv(65536)
                if self.accepted <= self.resets:
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
                    return
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            except OSError:
                return
