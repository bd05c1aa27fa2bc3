"""The demo service: three dependencies, each a real HTTP upstream on loopback called through
`seawall.httpx` (bulkhead > total timeout > retry > breaker per upstream > attempt timeout) behind
a feature (payments also behind a rate limiter, like a partner API's quota).

A background traffic generator calls them a few times a second so every metric moves; `POST
/chaos/{dependency}` makes the upstream misbehave on demand (error statuses with Retry-After,
latency, resets, hangs). The resilience routes are mounted, so `/metrics`, `/health/ready`,
`/resilience` and the admin API are all there. Slowing a dependency with `{"latency_ms": 1500}`
makes its attempts time out (1 s) and fills its bulkhead (4 slots) live.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.datastructures import State
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from seawall.breakers.breaker import CircuitBreaker
from seawall.clients.classify import Target
from seawall.core.logsafe import log_value
from seawall.core.registry import Registry
from seawall.degrade.features import Feature, Features
from seawall.httpx import AsyncResilientTransport, HttpPolicy
from seawall.limits.ratelimit import RateLimiter
from seawall.limits.timeout import Timeout
from seawall.starlette._json import JSONResponse

from ..starlette import ApiError, ResilienceMiddleware, exception_handlers, resilience_routes
from ..starlette._problems import guarded
from ..starlette.hosts import HostGuard
from .dependencies import ChaosError, SimulatedDependency, Sleep
from .tracing import ServerSpans
from .upstream import Upstream
from .worker import DemoWorker

__all__ = ["BREAKERS", "DEPENDENCIES", "Demo", "DependencyError", "create_demo_app"]

log = logging.getLogger("seawall.demo")

MAX_CHAOS_BODY = 4096
TIMEOUT_SECONDS = 1.0  # per attempt; under the upstream's own 2 s give-up, so slowness shows as timeouts
TOTAL_SECONDS = 3.0  # per request, retries included
BULKHEAD_SLOTS = 4  # 4 requests/s x 1 s calls fill it when a dependency is slowed down
PAYMENTS_RATE = 10.0  # calls/s: the payments provider's quota

# name -> (base latency ms, fallback answer)
DEPENDENCIES: dict[str, tuple[float, Any]] = {
    "payments": (40.0, {"status": "queued", "note": "payment accepted for later processing"}),
    "inventory": (15.0, {"available": None, "note": "stock level unknown"}),
    "recommendations": (25.0, {"items": ["bestseller-1", "bestseller-2", "bestseller-3"], "note": "popular"}),
}
# Each dependency is an upstream host named like it (`http://payments`, as a service name in a
# cluster's DNS); the loopback transport below resolves every name to the demo's upstream server.
UPSTREAMS = {name: Target.of("GET", "http", name, None) for name in DEPENDENCIES}
# dependency -> the name of its breaker: the transport names breakers `<client>@<scheme>:<host>:<port>`
BREAKERS = {name: f"{name}@{target.authority}" for name, target in UPSTREAMS.items()}


class DependencyError(Exception):
    """The dependency's last answer, retries over, was an error status (the feature falls back)."""

    def __init__(self, name: str, status: int) -> None:
        super().__init__(f"{name} answered {status}")
        self.status_code = status


class _Loopback(httpx.AsyncBaseTransport):
    """Sends every request to the demo's upstream server on 127.0.0.1, whatever its URL's host
    (the Host header keeps that name): what /etc/hosts or a mesh sidecar does for a real service."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        port = self.upstream.port
        if port is None:
            raise httpx.ConnectError("the demo's upstream server is not running", request=request)
        request.url = request.url.copy_with(host="127.0.0.1", port=port)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass
class Guarded:
    """One dependency, the HTTP client that calls it, and the primitives in front of it."""

    dependency: SimulatedDependency
    client: httpx.AsyncClient
    breaker: CircuitBreaker
    feature: Feature
    limiter: RateLimiter | None = None
    inflight: int = 0
    answered: dict[str, int] = field(default_factory=lambda: {"primary": 0, "fallback": 0, "stale": 0})

    async def _fetch(self) -> dict[str, Any]:
        name = self.dependency.name
        if name == "payments":  # a charge: POST, made safe to retry by its Idempotency-Key
            headers = {"idempotency-key": uuid.uuid4().hex}
            response = await self.client.post(f"/{name}", json={"amount": 100}, headers=headers)
        else:
            response = await self.client.get(f"/{name}")
        if not response.is_success:
            raise DependencyError(name, response.status_code)
        result: dict[str, Any] = response.json()
        return result

    async def call(self) -> dict[str, Any]:
        """feature( limiter( http client( bulkhead > total timeout > retry > breaker > attempt
        timeout ) ) ): one request's path through the primitives."""
        limiter = self.limiter

        async def primary() -> dict[str, Any]:
            return await (self._fetch() if limiter is None else limiter.call_async(self._fetch))

        self.inflight += 1
        try:
            result = await self.feature.call_result_async(primary)
        finally:
            self.inflight -= 1
        self.answered[result.source] = self.answered.get(result.source, 0) + 1
        return {
            "dependency": self.dependency.name,
            "source": result.source,
            "reason": None if result.reason is None else result.reason.value,
            "result": result.value,
        }


def _client_policy(
    registry: Registry, clock: Callable[[], float], sleep: Sleep, breaker_reset_timeout: float
) -> HttpPolicy:
    """The demo's HTTP pipeline, tighter than the defaults so a demo outage shows in seconds.

    Two attempts 50 ms apart within 2 s (or as far apart as a Retry-After up to 1 s asks; a
    longer one, like an open breaker's hint, gives up at once); a breaker opening after 5
    consecutive failures or a 50% failure ratio over 20 calls; 4 concurrent calls per
    dependency, 1 s per attempt, 3 s per request.
    """
    return HttpPolicy.of(
        bulkhead={"max_concurrent": BULKHEAD_SLOTS, "max_wait": 0.0, "clock": clock},
        total_timeout=TOTAL_SECONDS,
        retry={
            "attempts": 2,
            "initial": 0.05,
            "max_delay": 1.0,  # a longer Retry-After gives up at once
            "deadline": 2.0,
            "async_sleep": sleep,
            "clock": clock,
        },
        breaker={
            "failure_threshold": 5,
            # a sliding window too, so the dashboards' "failure rate vs threshold" has a ratio
            # to plot (a breaker without one exports none)
            "failure_rate_threshold": 0.5,
            "minimum_calls": 20,
            "reset_timeout": breaker_reset_timeout,
            "errors": registry.errors,
            "clock": clock,
        },
        attempt_timeout=TIMEOUT_SECONDS,
    )


class Demo:
    """The demo's state: registry, dependencies, their upstream server, and the traffic generator."""

    def __init__(
        self,
        *,
        registry: Registry,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        seed: int | None = None,
        breaker_reset_timeout: float = 5.0,
        feature_reset_timeout: float = 2.0,
        traffic_rate: float = 4.0,
        traffic_sleep: Sleep = asyncio.sleep,
    ) -> None:
        if isinstance(traffic_rate, bool) or not isinstance(traffic_rate, (int, float)) or traffic_rate < 0:
            raise ValueError(
                f"traffic_rate must be a number >= 0 (requests/s per dependency), got {traffic_rate!r}"
            )
        self.registry = registry
        self.traffic_rate = float(traffic_rate)
        self._sleep = sleep
        self._traffic_sleep = traffic_sleep  # paces the generator (real time, unlike `sleep`)
        rng = random.Random(seed)
        self.guarded: dict[str, Guarded] = {}
        self.features = Features(registry=registry)
        dependencies = {
            name: SimulatedDependency(
                name, base_latency_ms=latency, sleep=sleep, rng=random.Random(rng.random())
            )
            for name, (latency, _) in DEPENDENCIES.items()
        }
        self.upstream = Upstream(dependencies)
        policy = _client_policy(registry, clock, sleep, breaker_reset_timeout)
        for name, (_, fallback) in DEPENDENCIES.items():
            for stage, seconds in ((f"{name}.total", TOTAL_SECONDS), (f"{name}.attempt", TIMEOUT_SECONDS)):
                Timeout(stage, seconds, clock=clock, registry=registry)  # the transport finds these
            transport = AsyncResilientTransport(
                _Loopback(self.upstream), name=name, registry=registry, policy=policy
            )
            breaker = transport.pipeline.breaker_for(UPSTREAMS[name].authority)
            if breaker is None:  # pragma: no cover - _client_policy always has a breaker stage
                raise RuntimeError(f"the demo's client {name!r} has no breaker")
            feature = self.features.register(
                name,
                fallback=fallback,
                failure_threshold=10,
                reset_timeout=feature_reset_timeout,
                clock=clock,
            )
            self.guarded[name] = Guarded(
                dependencies[name],
                httpx.AsyncClient(transport=transport, base_url=f"http://{name}"),
                breaker,
                feature,
                limiter=RateLimiter(name, PAYMENTS_RATE, clock=clock, registry=registry)
                if name == "payments"
                else None,
            )
        self._task: asyncio.Task[None] | None = None
        self._calls: set[asyncio.Task[Any]] = set()
        self.tracer: Any = None  # set by the app's lifespan when traces are exported

    async def call(self, name: str) -> dict[str, Any]:
        return await self.guarded[name].call()

    async def tick(self) -> None:
        """One round of traffic: one call per dependency, concurrently (what the generator repeats)."""
        await asyncio.gather(*(item.call() for item in self.guarded.values()), return_exceptions=True)

    async def _traffic(self) -> None:
        interval = 1.0 / self.traffic_rate
        while True:
            for item in self.guarded.values():
                if item.inflight < 50:  # bounded: a slow dependency cannot pile up calls
                    task = asyncio.create_task(self._one(item))
                    self._calls.add(task)
                    task.add_done_callback(self._calls.discard)
            await self._traffic_sleep(interval)

    async def _one(self, item: Guarded) -> None:
        tracer = self.tracer
        try:
            if tracer is None:
                await item.call()
            else:  # a root span per generated call: its attempts and fallback share one trace
                with tracer.start_as_current_span(f"demo traffic {item.dependency.name}"):
                    await item.call()
        except Exception as exc:  # a fallback-less failure in the generator must not kill it
            log.debug("demo traffic: %s failed with %s", item.dependency.name, type(exc).__name__)

    async def start(self) -> None:
        """Start the upstream server, then the traffic generator (unless its rate is 0)."""
        await self.upstream.start()
        if self.traffic_rate > 0 and self._task is None:
            self._task = asyncio.create_task(self._traffic(), name="seawall-demo-traffic")

    async def stop(self) -> None:
        tasks = [task for task in (self._task, *self._calls) if task is not None]
        self._task = None
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        for item in self.guarded.values():
            await item.client.aclose()
        await self.upstream.stop()

    def chaos(self) -> dict[str, Any]:
        return {name: item.dependency.chaos.to_dict() for name, item in self.guarded.items()}


def require_json(request: Request) -> None:
    """State-changing demo routes take JSON only: a cross-site "simple" request (a form or a
    text/plain fetch from any web page) cannot carry it without a CORS preflight, which the demo
    never grants, so no page can start an outage in a demo running on the visitor's machine."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json":
        raise ApiError(
            415,
            "unsupported_media_type",
            f"the body must be JSON with Content-Type: application/json, got '{log_value(media_type, 64)}'",
            field="content-type",
        )


async def chaos_body(request: Request) -> Any:
    """A chaos request's JSON body: JSON only (`require_json`), at most 4 KiB, parsed."""
    require_json(request)
    raw = b""
    async for chunk in request.stream():  # never buffer more than the limit
        raw += chunk
        if len(raw) > MAX_CHAOS_BODY:
            raise ApiError(413, "payload_too_large", "the chaos body must be under 4 KiB", field="body")
    try:
        return json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise ApiError(422, "invalid_json", "the body is not valid JSON", field="body") from None
    except RecursionError:  # "[[[[...]]]]" 2,000 deep fits in 4 KiB
        raise ApiError(422, "invalid_json", "the body is nested too deeply", field="body") from None


def _setup_tracing(registry: Registry) -> Any | None:
    """OTLP traces when OTEL_EXPORTER_OTLP_ENDPOINT is set (and OTEL_TRACES_EXPORTER is not
    `none`); returns the provider to shut down."""
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") and not os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    ):
        return None
    from .. import otel
    from ..otel._otlp import traces_exporter_off

    if traces_exporter_off():
        return None
    provider = otel.configure_otlp(service_name=demo_service_name(), seawall_registry=registry)
    otel.instrument(provider, seawall_registry=registry)
    return provider


def demo_service_name() -> str | None:
    """ "seawall-demo" unless the environment names the service (OTEL_SERVICE_NAME, or service.name
    in OTEL_RESOURCE_ATTRIBUTES), which the SDK then reads itself."""
    if os.environ.get("OTEL_SERVICE_NAME"):
        return None
    for item in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip() == "service.name" and value.strip():
            return None
    return "seawall-demo"


def create_demo_app(
    *,
    registry: Registry | None = None,
    prometheus_registry: Any = None,
    traffic_rate: float = 4.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Sleep = asyncio.sleep,
    seed: int | None = None,
    breaker_reset_timeout: float = 5.0,
    feature_reset_timeout: float = 2.0,
    tracing: bool = True,
    stream_interval: float = 1.0,
    worker_settings: dict[str, Any] | None = None,
) -> Starlette:
    """The demo app; `traffic_rate=0` turns the generator off (tests drive `app.state.demo` instead).

    Each call makes its own seawall and Prometheus registries unless given, so several demo apps
    can live in one process. The admin token comes from SEAWALL_ADMIN_TOKEN(_FILE) only.
    """
    reg = Registry() if registry is None else registry
    if prometheus_registry is None:
        from prometheus_client import CollectorRegistry

        prometheus_registry = CollectorRegistry()
    demo = Demo(
        registry=reg,
        clock=clock,
        sleep=sleep,
        seed=seed,
        breaker_reset_timeout=breaker_reset_timeout,
        feature_reset_timeout=feature_reset_timeout,
        traffic_rate=traffic_rate,
    )
    worker = DemoWorker(reg, **(worker_settings or {}))  # the supervised background task

    def guarded_call(name: str) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return JSONResponse(await demo.call(name))

        return endpoint

    async def index(request: Request) -> Response:
        return JSONResponse(
            {
                "service": "seawall demo",
                "status_page": "/resilience",
                "metrics": "/metrics",
                "health": "/health/ready",
                "chaos": "/chaos",
                "endpoints": ["/checkout", "/inventory/{sku}", "/recommendations"],
                "worker": "/chaos/worker",
            }
        )

    async def get_chaos(request: Request) -> Response:
        return JSONResponse(demo.chaos())

    async def set_chaos(request: Request) -> Response:
        name = request.path_params["dependency"]
        item = demo.guarded.get(name)
        if item is None:
            raise ApiError(
                404, "unknown_dependency", f"dependencies are {', '.join(DEPENDENCIES)}", field="dependency"
            )
        body = await chaos_body(request)
        try:
            chaos = item.dependency.update(body)
        except ChaosError as exc:
            raise ApiError(422, "invalid_parameter", exc.message, field=exc.field) from None
        log.warning("chaos: %s is now %s", name, chaos.to_dict())
        return JSONResponse({name: chaos.to_dict()})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        provider = _setup_tracing(reg) if tracing else None
        if provider is not None:
            app.state.tracer_provider = provider  # ServerSpans starts tracing inbound requests
            demo.tracer = provider.get_tracer("seawall.demo")
        await demo.start()
        worker.start()
        try:
            yield
        finally:
            await worker.stop()
            await demo.stop()
            if provider is not None:
                app.state.tracer_provider = demo.tracer = None
                await asyncio.to_thread(provider.shutdown)

    routes = [
        Route("/", guarded(index), methods=["GET"]),
        Route("/checkout", guarded(guarded_call("payments")), methods=["GET", "POST"]),
        Route("/inventory/{sku}", guarded(guarded_call("inventory")), methods=["GET"]),
        Route("/recommendations", guarded(guarded_call("recommendations")), methods=["GET"]),
        Route("/chaos", guarded(get_chaos), methods=["GET"]),
        Route("/chaos/worker", guarded(worker.endpoint), methods=["GET", "POST"]),
        Route("/chaos/{dependency}", guarded(set_chaos), methods=["POST"]),
        *resilience_routes(
            registry=reg, prometheus_registry=prometheus_registry, stream_interval=stream_interval
        ),
    ]
    state = State()
    app = Starlette(
        routes=routes,
        # Chaos switches change state with no token: only for requests that name a trusted host
        # (DNS rebinding would otherwise make an attacker's page same-origin with the demo).
        middleware=[
            Middleware(ServerSpans, state=state, routes=routes),
            Middleware(ResilienceMiddleware, registry=reg),
            Middleware(HostGuard),
        ],
        exception_handlers=exception_handlers(),
        lifespan=lifespan,
    )
    app.state = state
    app.router.redirect_slashes = False  # its redirect trusts the Host header (see create_app)
    app.state.demo = demo
    app.state.worker = worker
    app.state.registry = reg
    app.state.prometheus_registry = prometheus_registry
    return app
