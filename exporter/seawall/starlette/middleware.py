"""Pure ASGI middleware: unhandled exceptions and 5xx answers go into the error aggregator.

A 5xx seawall answered on purpose (readiness unhealthy, too many streams or scrapes, shutting
down: `REFUSED` in the scope) is a refusal, not a service error, and is not recorded.

Pure ASGI (not BaseHTTPMiddleware) so streaming responses pass through untouched and the per-request
cost is one wrapped `send`. The error's source is the matched route's template (`/orders/{id}`),
never the raw path, so the `source` label stays bounded; requests no route matched are `unmatched`.
"""

from __future__ import annotations

import logging

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from seawall.core.registry import Registry, default_registry

from ._problems import REFUSED, disconnected_response, internal_error_response, log_unhandled

__all__ = ["HTTPServerError", "ResilienceMiddleware", "ResponseAborted", "route_template"]

log = logging.getLogger("seawall.web")


class HTTPServerError(Exception):
    """Stands for a 5xx answer that no exception explains, so it can be recorded like one."""

    def __init__(self, status_code: int) -> None:
        super().__init__(f"response status {status_code}")
        self.status_code = status_code


class ResponseAborted(Exception):
    """Raised to the server when a response failed after it started; the cause is logged apart."""


def route_template(scope: Scope, unmatched: str = "unmatched") -> str:
    """The template of the route that handled the request (`/orders/{id}`), or `unmatched`."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str) and path:
        return path
    return unmatched


class ResilienceMiddleware:
    """Records errors of the wrapped app into `registry.errors` and answers crashes with the JSON body."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        registry: Registry | None = None,
        record: bool = True,
        unmatched: str = "unmatched",
    ) -> None:
        self.app = app
        self.registry = default_registry() if registry is None else registry
        self.record = record
        self.unmatched = unmatched

    def _record(self, exc: Exception, scope: Scope) -> None:
        if not self.record:
            return
        try:
            self.registry.errors.record(exc, source=route_template(scope, self.unmatched))
        except Exception as broken:
            self.registry.bus.report_error("web.middleware", broken)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0

        async def send_watching(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_watching)
        except ClientDisconnect:
            # The client left mid-body: not the service's error, so not recorded nor re-raised
            # (the server would log it with a traceback). Nobody reads what follows.
            if not status:
                await disconnected_response(route_template(scope, self.unmatched))(scope, receive, send)
            return
        except Exception as exc:
            self._record(exc, scope)
            where = route_template(scope, self.unmatched)
            if status:
                # Headers are out: no error body can follow, so the server must drop the connection.
                # It logs what reaches it verbatim: log safely here and hand it only our own text.
                error_id = log_unhandled(exc, where)
                raise ResponseAborted(f"response aborted in {where} (error_id={error_id})") from None
            response = internal_error_response(exc, where)
            await response(scope, receive, send)
            return
        if status >= 500 and not scope.get(REFUSED):
            self._record(HTTPServerError(status), scope)
