"""The resilience routes a service mounts, and a ready-made app around them.

Handlers are thin: they read snapshots (views.py), check parameters and serialize. Every error,
including unknown names and bad parameters, uses the standard body from `_problems`.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from seawall.core.kinds import Kind
from seawall.core.logsafe import log_value
from seawall.core.registry import Registry, default_registry
from seawall.limits.bulkhead import BulkheadFullError, bulkhead

from . import views
from ._json import JSONResponse, dumps
from ._problems import ApiError, Endpoint, exception_handlers, guarded, mark_refused
from .admin import AdminActions, resolve_admin_token
from .cache import (
    BodyCache,
    breakers_fingerprint,
    features_fingerprint,
    retries_fingerprint,
    snapshot_fingerprint,
)
from .health import Check, CheckFn, HealthChecker, normalize_checks
from .hosts import HostGuard
from .middleware import ResilienceMiddleware
from .page import page_routes
from .stream import SnapshotStream

__all__ = ["MAX_RECENT_LIMIT", "create_app", "resilience_routes"]

log = logging.getLogger("seawall.web")

MAX_RECENT_LIMIT = 100
DEFAULT_RECENT_LIMIT = 20


def _json(data: Any, status_code: int = 200) -> JSONResponse:
    response = JSONResponse(data, status_code=status_code)
    response.headers["cache-control"] = "no-store"
    return response


def _body(body: bytes) -> Response:
    return Response(body, media_type="application/json", headers={"cache-control": "no-store"})


_INTEGER = re.compile(r"-?[0-9]{1,18}")  # ASCII: int() also takes other digits, "1_000"


def parse_limit(
    request: Request, default: int = DEFAULT_RECENT_LIMIT, maximum: int = MAX_RECENT_LIMIT
) -> int:
    """`?limit=` as an int clamped to [1, maximum]; anything else is a 422 naming field and value."""
    raw = request.query_params.get("limit")
    if raw is None or raw == "":
        return default
    if _INTEGER.fullmatch(raw) is None:
        raise ApiError(
            422,
            "invalid_parameter",
            f"limit must be an integer written with the digits 0-9, got '{log_value(raw, 64)}'",
            field="limit",
        )
    return max(1, min(int(raw), maximum))


# Monitoring must never take the service out. /metrics and the status bodies render in threads
# under capacity limiters of their own (anyio's shared 40 tokens stay for the application and
# readiness has its own), at most METRICS_RENDERS renders at once; more scrapes queue up to
# METRICS_QUEUE_SECONDS in a seawall bulkhead (so refused ones are counted and exported like any
# bulkhead's), then get 503 `metrics_busy`.
METRICS_RENDERS = 2
METRICS_QUEUE_SECONDS = 5.0
METRICS_BULKHEAD = "seawall.metrics"
STATUS_RENDERS = 2


def _metrics_endpoint(prometheus_registry: Any, registry: Registry) -> Any:
    from prometheus_client import CollectorRegistry

    from ..prometheus import refresh_all, render

    def respond(accept: str | None, accept_encoding: str | None) -> tuple[bytes, dict[str, str]]:
        registry = prometheus_registry
        if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
            from prometheus_client import multiprocess

            refresh_all()  # bring this worker's gauges into its files first
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return render(registry, accept, accept_encoding)

    gate = bulkhead(METRICS_BULKHEAD, METRICS_RENDERS, METRICS_QUEUE_SECONDS, registry=registry)
    limiter = anyio.CapacityLimiter(METRICS_RENDERS)

    async def metrics(request: Request) -> Response:
        # Rendering a large registry takes milliseconds: keep it off the event loop.
        accept, accept_encoding = request.headers.get("accept"), request.headers.get("accept-encoding")
        try:
            await gate.acquire_async()
        except BulkheadFullError:
            raise ApiError(
                503,
                "metrics_busy",
                "too many /metrics requests at once; retry later",
                headers={"retry-after": "1"},
            ) from None
        try:
            body, headers = await anyio.to_thread.run_sync(respond, accept, accept_encoding, limiter=limiter)
        finally:
            gate.release()
        return Response(body, headers={**headers, "cache-control": "no-store"})

    return metrics


def _instrument(prometheus_registry: Any, registry: Registry) -> None:
    """Make sure /metrics carries the metric contract for `registry` (idempotent)."""
    try:
        from ..prometheus import instrument
    except ImportError:  # pragma: no cover - prometheus-client missing
        return
    try:
        instrument(prometheus_registry, seawall_registry=registry)
    except ValueError as exc:
        # Already instrumented with other settings (buckets, label caps): that instrumentation serves.
        log.warning("seawall.starlette: /metrics keeps the existing prometheus instrumentation (%s)", exc)


def resilience_routes(
    *,
    registry: Registry | None = None,
    prometheus_registry: Any = None,
    admin_token: str | None = None,
    checks: Mapping[str, CheckFn] | Sequence[Check] | None = None,
    critical_breakers: Sequence[str] = (),
    metrics: bool = True,
    instrument_prometheus: bool = True,
    status_page: bool = True,
    stream_interval: float = 1.0,
    stream_max_seconds: float = 300.0,
    stream_max_clients: int = 100,
    stream_send_timeout: float = 10.0,
    stream_heartbeat: float = 5.0,
    stream_idle_timeout: float = 15.0,
    stream_max_clients_per_address: int = 10,
    include_error_messages: bool = False,
    status_cache_seconds: float = 0.5,
) -> list[BaseRoute]:
    """The routes of docs/web.md; mount them in your app (`routes=[*resilience_routes(), ...]`).

    `registry` defaults to seawall's default registry, `prometheus_registry` to prometheus_client's
    default REGISTRY. The admin token comes from `admin_token`, else SEAWALL_ADMIN_TOKEN, else the
    file named by SEAWALL_ADMIN_TOKEN_FILE; without one the admin routes answer 403.
    """
    reg = default_registry() if registry is None else registry
    if not isinstance(reg, Registry):
        raise TypeError(f"registry must be a seawall.Registry, got {registry!r}")
    if isinstance(critical_breakers, str):
        raise TypeError(f"critical_breakers must be a list of breaker names, got {critical_breakers!r}")
    token = resolve_admin_token(admin_token)
    if metrics or prometheus_registry is not None:
        try:
            from prometheus_client import REGISTRY, CollectorRegistry
        except ImportError:
            if prometheus_registry is not None:
                raise
            metrics = False
        else:
            if prometheus_registry is None:
                prometheus_registry = REGISTRY
            elif not isinstance(prometheus_registry, CollectorRegistry):
                raise TypeError(
                    "prometheus_registry must be a prometheus_client CollectorRegistry, "
                    f"got {prometheus_registry!r}"
                )
            if metrics and instrument_prometheus:
                _instrument(prometheus_registry, reg)
    checker = HealthChecker(reg, normalize_checks(checks), critical_breakers)
    admin = AdminActions(reg, token, prometheus_registry)
    stream = SnapshotStream(
        reg,
        details=include_error_messages,
        idle_timeout=stream_idle_timeout,
        max_per_client=stream_max_clients_per_address,
        interval=stream_interval,
        max_seconds=stream_max_seconds,
        max_streams=stream_max_clients,
        send_timeout=stream_send_timeout,
        heartbeat=stream_heartbeat,
    )
    # Validated per request by a fingerprint of states (cache.py), never by a bus subscription:
    # a listener would make every breaker call build and deliver events.
    cache = BodyCache(reg, status_cache_seconds)

    def clearing(action: Endpoint) -> Endpoint:
        """An admin action, after which status bodies are rebuilt (a reset clears counters too)."""

        async def run(request: Request) -> Response:
            try:
                return await action(request)
            finally:
                cache.clear()

        return run

    def cached_list(
        key: str, payload: Callable[[Registry], Any], fingerprint: Callable[[Registry], Any]
    ) -> Endpoint:
        """GET of one kind's snapshots, `{key: [...]}`, reused while the kind's fingerprint holds."""

        async def endpoint(request: Request) -> Response:
            return _body(cache.get(key, lambda: dumps({key: payload(reg)}), lambda: fingerprint(reg)))

        return endpoint

    breakers = cached_list("breakers", views.breakers_payload, breakers_fingerprint)
    features = cached_list("features", views.features_payload, features_fingerprint)
    retries = cached_list("retries", views.retries_payload, retries_fingerprint)

    async def live(request: Request) -> Response:
        return _json({"status": "alive"})

    async def ready(request: Request) -> Response:
        report = await checker.evaluate()
        if report["status"] == "unhealthy":
            mark_refused(request.scope)  # the verdict is the answer, not a failure to give one
            return _json(report, 503)
        return _json(report)

    async def breaker(request: Request) -> Response:
        found = reg.get(Kind.BREAKER, request.path_params["name"])
        if found is None:
            raise ApiError(404, "unknown_breaker", "no breaker with this name", field="name")
        return _json(views.snapshot_dict(found.snapshot()))

    async def errors(request: Request) -> Response:
        return _body(cache.get("errors", lambda: dumps(views.error_stats(reg))))  # counters only: age

    def details(request: Request) -> bool:
        """Messages and context: for the admin token's holder, or anyone if the operator opted in."""
        return include_error_messages or admin.authorized(request)

    async def recent(request: Request) -> Response:
        limit = parse_limit(request)
        shown = details(request)
        items = views.recent_errors(reg, limit, shown)
        return _json({"limit": limit, "details": shown, "errors": items})

    async def tasks(request: Request) -> Response:
        return _json({"tasks": views.tasks_payload(reg, details(request))})

    status_limiter = anyio.CapacityLimiter(STATUS_RENDERS)

    async def snapshot(request: Request) -> Response:
        # Cached like the lists (one body per level of detail) and built in a thread: with
        # thousands of breakers a build takes tens of milliseconds the event loop must not wait.
        shown = details(request)

        def build() -> bytes:
            return cache.get(
                f"snapshot:{shown}",
                lambda: dumps(views.registry_payload(reg, details=shown)),
                lambda: snapshot_fingerprint(reg),
            )

        return _body(await anyio.to_thread.run_sync(build, limiter=status_limiter))

    async def ack(request: Request) -> Response:
        # The live page's "still reading" signal; an unknown id (the stream ended) is a 404.
        if not stream.ack(request.query_params.get("stream", "")):
            raise ApiError(404, "unknown_stream", "no open status stream with this id", field="stream")
        return Response(status_code=204, headers={"cache-control": "no-store"})

    routes: list[BaseRoute] = [
        Route("/health", guarded(live), methods=["GET"], name="seawall_health"),
        Route("/health/ready", guarded(ready), methods=["GET"], name="seawall_ready"),
        Route("/api/resilience/breakers", guarded(breakers), methods=["GET"], name="seawall_breakers"),
        Route("/api/resilience/breakers/{name}", guarded(breaker), methods=["GET"], name="seawall_breaker"),
        Route(
            "/api/resilience/breakers/{name}/{action}",
            guarded(clearing(admin.breaker_action)),
            methods=["POST"],
            name="seawall_breaker_action",
        ),
        Route("/api/resilience/errors", guarded(errors), methods=["GET"], name="seawall_errors"),
        Route(
            "/api/resilience/errors/recent", guarded(recent), methods=["GET"], name="seawall_errors_recent"
        ),
        Route("/api/resilience/features", guarded(features), methods=["GET"], name="seawall_features"),
        Route(
            "/api/resilience/features/{name}/{action}",
            guarded(clearing(admin.feature_action)),
            methods=["POST"],
            name="seawall_feature_action",
        ),
        Route("/api/resilience/retries", guarded(retries), methods=["GET"], name="seawall_retries"),
        Route("/api/resilience/tasks", guarded(tasks), methods=["GET"], name="seawall_tasks"),
        Route("/api/resilience/snapshot", guarded(snapshot), methods=["GET"], name="seawall_snapshot"),
        Route("/api/resilience/stream", stream, methods=["GET"], name="seawall_stream"),
        Route("/api/resilience/stream/ack", guarded(ack), methods=["GET"], name="seawall_stream_ack"),
    ]
    if metrics:
        routes.insert(
            0,
            Route(
                "/metrics",
                guarded(_metrics_endpoint(prometheus_registry, reg)),
                methods=["GET"],
                name="seawall_metrics",
            ),
        )
    if status_page:
        routes.extend(page_routes())
    return routes


def create_app(
    *,
    registry: Registry | None = None,
    prometheus_registry: Any = None,
    admin_token: str | None = None,
    checks: Mapping[str, CheckFn] | Sequence[Check] | None = None,
    routes: Sequence[BaseRoute] = (),
    record_errors: bool = True,
    debug: bool = False,
    trusted_hosts: Sequence[str] | None = None,
    **options: Any,
) -> Starlette:
    """A Starlette app serving the resilience routes (plus `routes`), with the error middleware.

    `options` go to `resilience_routes` (critical_breakers, stream_interval, status_page, ...).
    State-changing requests must name a trusted host (`trusted_hosts`, else env
    SEAWALL_TRUSTED_HOSTS, else the loopback names): `HostGuard` in hosts.py.
    """
    reg = default_registry() if registry is None else registry
    all_routes = [
        *routes,
        *resilience_routes(
            registry=reg,
            prometheus_registry=prometheus_registry,
            admin_token=admin_token,
            checks=checks,
            **options,
        ),
    ]
    middleware = [
        Middleware(ResilienceMiddleware, registry=reg, record=record_errors),
        Middleware(HostGuard, trusted_hosts=trusted_hosts),
    ]
    app = Starlette(
        debug=debug, routes=all_routes, middleware=middleware, exception_handlers=exception_handlers()
    )
    # The router's trailing-slash redirect builds an absolute URL from the Host header, so
    # `Host: evil.example` would get a redirect there: a trailing slash is a 404 instead.
    app.router.redirect_slashes = False
    return app
