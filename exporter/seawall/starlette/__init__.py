"""seawall for Starlette: health, status and admin routes, /metrics, the error middleware and the
live status page (`/resilience`). Needs the `starlette` extra (and `prometheus` for /metrics).
"""

from __future__ import annotations

from ._problems import ApiError, error_response, exception_handlers
from .health import Check
from .middleware import HTTPServerError, ResilienceMiddleware
from .routes import MAX_RECENT_LIMIT, create_app, resilience_routes
from .serve import install_uvicorn_shutdown_hook, serve
from .stream import SnapshotStream, close_all_streams

__all__ = [
    "MAX_RECENT_LIMIT",
    "ApiError",
    "Check",
    "HTTPServerError",
    "ResilienceMiddleware",
    "SnapshotStream",
    "close_all_streams",
    "create_app",
    "error_response",
    "exception_handlers",
    "install_uvicorn_shutdown_hook",
    "resilience_routes",
    "serve",
]
