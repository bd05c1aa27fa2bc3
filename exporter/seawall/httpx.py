"""Resilient httpx clients: `ResilientTransport` / `AsyncResilientTransport` and `client()` /
`async_client()` for the common case.

    client = seawall.httpx.client("payments", base_url="https://payments.internal")

Every request goes through bulkhead > total timeout > retry > breaker per upstream > attempt
timeout (`seawall.clients.policy.HttpPolicy` has the stages and their defaults). The transport
wraps any httpx transport (the standard one by default). Sync attempts get their I/O timeouts cut
to the time their deadlines leave, so a sync attempt timeout bounds each connect, read and write;
async attempts are cancelled at the deadline. The timeouts cover sending the request and reading
the response head: the body is read by the client after the transport returns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

import httpx

from seawall.clients.classify import Target
from seawall.clients.pipeline import Pipeline, inject
from seawall.clients.policy import HttpPolicy
from seawall.core.registry import Registry
from seawall.limits.timeout import remaining

__all__ = [
    "TRANSIENT_ERRORS",
    "AsyncResilientTransport",
    "HttpPolicy",
    "ResilientTransport",
    "async_client",
    "client",
]

# Failures of the exchange itself that another attempt may not repeat: timeouts, connection and
# network errors, the server hanging up mid-answer. Not LocalProtocolError, UnsupportedProtocol,
# ProxyError or DecodingError: those are the caller's own or the same again next time.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)
_TIMEOUT_KEYS = ("connect", "read", "write", "pool")
T = TypeVar("T", httpx.BaseTransport, httpx.AsyncBaseTransport)


def _plan(request: httpx.Request, pipeline: Pipeline) -> tuple[Target, bool]:
    url, method = request.url, request.method
    replayable = isinstance(request.stream, httpx.ByteStream)  # bytes in memory, not an iterator
    target = pipeline.target(method, url.scheme, url.host, url.port)
    idempotent = target.method in pipeline.policy.retry_methods
    retryable = pipeline.may_retry(method, idempotent or "idempotency-key" in request.headers, replayable)
    return target, retryable


def _within_deadline(request: httpx.Request, asked: Any) -> None:
    """Cut the request's I/O timeouts to the seconds the nearest deadline leaves (none: as asked)."""
    left = remaining()
    if left is None:
        return  # no deadline
    if isinstance(asked, dict):
        values = asked.values()
        if None not in values and max(values) <= left:
            return  # the client's own timeouts end first (httpx's 5 s in a 10 s attempt)
    else:
        asked = {}
    left = max(left, 1e-3)  # zero means "no timeout" to httpcore
    request.extensions = {
        **request.extensions,
        "timeout": {key: left if asked.get(key) is None else min(asked[key], left) for key in _TIMEOUT_KEYS},
    }


def _status(response: httpx.Response) -> int:
    return response.status_code


def _close(response: httpx.Response) -> None:
    response.close()


async def _aclose(response: httpx.Response) -> None:
    await response.aclose()


class _Wrapping(Generic[T]):
    """What both transports share: the pipeline, built from `policy` or stage keywords, and the
    wrapped transport (the standard one by default)."""

    _standard: Callable[[], T]

    def __init__(
        self,
        transport: T | None = None,
        *,
        name: str = "http",
        registry: Registry | None = None,
        policy: HttpPolicy | None = None,
        **stages: Any,
    ) -> None:
        asynchronous = issubclass(type(self), httpx.AsyncBaseTransport)
        self.pipeline = Pipeline.of(name, TRANSIENT_ERRORS, registry, policy, stages, asynchronous)
        self.inner: T = type(self)._standard() if transport is None else transport


class ResilientTransport(_Wrapping[httpx.BaseTransport], httpx.BaseTransport):
    """An httpx transport that sends through seawall's HTTP pipeline: `httpx.Client(transport=...)`.

    `policy` is an `HttpPolicy`; keywords change single stages (`retry={"attempts": 2}`,
    `bulkhead=None`). `name` names the primitives (`<name>`, `<name>.total`, `<name>.attempt`,
    breakers `<name>@<scheme>:<host>:<port>`); two transports with one name share them.
    """

    _standard = httpx.HTTPTransport

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        pipeline = self.pipeline
        target, retryable = _plan(request, pipeline)
        asked = request.extensions.get("timeout")
        inner = self.inner
        traced = pipeline.traced

        def attempt() -> httpx.Response:
            _within_deadline(request, asked)
            if traced:
                inject(request.headers)
            return inner.handle_request(request)

        return pipeline.send(target, retryable, attempt, _status, _close)

    def close(self) -> None:
        self.inner.close()


class AsyncResilientTransport(_Wrapping[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport):
    """`ResilientTransport` for `httpx.AsyncClient(transport=...)`."""

    _standard = httpx.AsyncHTTPTransport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        pipeline = self.pipeline
        target, retryable = _plan(request, pipeline)
        asked = request.extensions.get("timeout")
        inner = self.inner
        traced = pipeline.traced

        async def attempt() -> httpx.Response:
            _within_deadline(request, asked)
            if traced:
                inject(request.headers)
            return await inner.handle_async_request(request)

        return await pipeline.send_async(target, retryable, attempt, _status, _aclose)

    async def aclose(self) -> None:
        await self.inner.aclose()


def client(
    name: str = "http",
    *,
    registry: Registry | None = None,
    policy: HttpPolicy | None = None,
    transport: httpx.BaseTransport | None = None,
    **client_options: Any,
) -> httpx.Client:
    """An `httpx.Client` whose requests go through the pipeline named `name` (default policy)."""
    wrapped = ResilientTransport(transport, name=name, registry=registry, policy=policy)
    return httpx.Client(transport=wrapped, **client_options)


def async_client(
    name: str = "http",
    *,
    registry: Registry | None = None,
    policy: HttpPolicy | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    **client_options: Any,
) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` whose requests go through the pipeline named `name`."""
    wrapped = AsyncResilientTransport(transport, name=name, registry=registry, policy=policy)
    return httpx.AsyncClient(transport=wrapped, **client_options)
