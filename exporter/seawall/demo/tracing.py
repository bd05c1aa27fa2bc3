"""The demo's traces: a server span per inbound request and a root span per generated call, so
one request's attempts, retries, timeouts and fallback share one trace (and its span events, the
retry that gave up and the fallback used, have a span to be exported on).

Both exist only once `lifespan` has configured OTLP (`OTEL_EXPORTER_OTLP_ENDPOINT`); until then
the middleware passes requests straight through. Server spans are opentelemetry-instrumentation-asgi's
own (the field's conventions); scrapes, health checks and the status page's stream are left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.routing import BaseRoute, Match
from starlette.types import Scope

__all__ = ["UNTRACED_PATHS", "ServerSpans"]

# Polled by machines every few seconds, or open for minutes: a span each would bury the requests.
UNTRACED_PATHS = "/metrics,/health,/api/resilience/stream,/resilience/static"


def route_of(routes: Sequence[BaseRoute], scope: Scope) -> str | None:
    """The path template of the route that answers `scope` (`/inventory/{sku}`), or None."""
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return getattr(route, "path", None)
    return None


class ServerSpans:
    """ASGI middleware: `state.tracer_provider`, once set, wraps every HTTP request in a server span
    named `METHOD /route/{template}` (never the raw path: its ids would make every name unique)."""

    def __init__(self, app: Any, state: Any, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.state = state
        self.routes = routes
        self._traced: Any = None
        self._provider: Any = None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        provider = getattr(self.state, "tracer_provider", None)
        if provider is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._provider is not provider:
            from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

            self._traced = OpenTelemetryMiddleware(
                self.app,
                excluded_urls=UNTRACED_PATHS,
                tracer_provider=provider,
                exclude_spans=["receive", "send"],
                default_span_details=self._details,
            )
            self._provider = provider
        await self._traced(scope, receive, send)

    def _details(self, scope: Scope) -> tuple[str, dict[str, Any]]:
        route = route_of(self.routes, scope)
        method = str(scope.get("method", "GET"))
        if route is None:
            return method, {}
        return f"{method} {route}", {"http.route": route}
