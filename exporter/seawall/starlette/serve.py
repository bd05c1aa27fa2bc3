"""Run an app under uvicorn so that open event streams end when the server is asked to stop.

uvicorn's shutdown waits for in-flight responses before it runs the app's lifespan shutdown, so a
status page left open would hold the process up to `timeout_graceful_shutdown`. `serve` closes
every `SnapshotStream` as soon as uvicorn receives SIGINT/SIGTERM, and bounds the rest of the
graceful shutdown.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from .stream import close_all_streams

__all__ = ["install_uvicorn_shutdown_hook", "serve"]


def _server_class() -> Any:
    import uvicorn

    class _Server(uvicorn.Server):
        on_started: Callable[[str, int], None] | None = None

        def handle_exit(self, sig: int, frame: Any) -> None:
            close_all_streams()
            super().handle_exit(sig, frame)

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            callback = self.on_started
            if callback is not None and self.servers:
                for server in self.servers:
                    for sock in server.sockets:
                        host, port = sock.getsockname()[:2]
                        callback(str(host), int(port))
                        return

    return _Server


def serve(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
    graceful_timeout: int = 5,
    on_started: Callable[[str, int], None] | None = None,
    **config: Any,
) -> None:
    """Serve `app` with uvicorn until SIGINT/SIGTERM; `on_started(host, port)` runs once bound."""
    import uvicorn

    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an int in 0..65535, got {port!r}")
    uv_config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=max(1, graceful_timeout),
        **config,
    )
    server = _server_class()(uv_config)
    server.on_started = on_started
    server.run()


_HOOKED = "_seawall_closes_streams"


def install_uvicorn_shutdown_hook() -> None:
    """For services started by `uvicorn app:app` (not `serve`): close SSE streams on SIGINT/SIGTERM.

    Wraps `uvicorn.Server.handle_exit` once per process (idempotent). Call it at import time of
    your app module. Without it, open status pages hold a shutdown until `stream_max_seconds` or
    uvicorn's `--timeout-graceful-shutdown`.
    """
    import uvicorn

    original = uvicorn.Server.handle_exit
    if getattr(original, _HOOKED, False):
        return

    def handle_exit(self: Any, sig: int, frame: Any) -> None:
        close_all_streams()
        original(self, sig, frame)

    setattr(handle_exit, _HOOKED, True)
    uvicorn.Server.handle_exit = handle_exit  # type: ignore[method-assign]
