"""A resilient `requests` session: `ResilientAdapter` to mount, `session()` for the common case.

    session = seawall.requests.session("payments")

The same pipeline as `seawall.httpx` (`seawall.clients.policy.HttpPolicy`), as an `HTTPAdapter`
subclass: urllib3's own retries are off (the pipeline retries), and each attempt's timeout is cut
to what its deadlines leave, so a sync attempt timeout bounds each connect and read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from seawall.clients.pipeline import Pipeline, inject
from seawall.clients.policy import HttpPolicy
from seawall.core.registry import Registry
from seawall.limits.timeout import remaining

__all__ = ["TRANSIENT_ERRORS", "HttpPolicy", "ResilientAdapter", "session"]

# Connection errors (refused, reset, DNS) and timeouts; requests' ConnectTimeout is both.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (requests.ConnectionError, requests.Timeout)


def _cut(asked: Any, left: float | None) -> Any:
    """`asked` (None, seconds, or a (connect, read) pair) with no part longer than `left`."""
    if left is None:
        return asked
    left = max(left, 1e-3)
    if isinstance(asked, tuple) and len(asked) == 2:
        return tuple(left if part is None else min(part, left) for part in asked)
    if isinstance(asked, (int, float)) and not isinstance(asked, bool):
        return min(asked, left)
    return left if asked is None else asked  # a urllib3 Timeout object: the caller's own


def _status(response: requests.Response) -> int:
    return response.status_code


def _close(response: requests.Response) -> None:
    response.close()


class ResilientAdapter(HTTPAdapter):
    """An `HTTPAdapter` that sends through seawall's HTTP pipeline: `session.mount("https://", ...)`.

    `policy` or stage keywords as for `seawall.httpx.ResilientTransport`; `adapter_options` go to
    `HTTPAdapter` (`pool_connections`, `pool_maxsize`, `pool_block`).
    """

    def __init__(
        self,
        *,
        name: str = "http",
        registry: Registry | None = None,
        policy: HttpPolicy | None = None,
        adapter_options: Mapping[str, Any] | None = None,
        **stages: Any,
    ) -> None:
        self.pipeline = Pipeline.of(name, TRANSIENT_ERRORS, registry, policy, stages)
        super().__init__(**{**(adapter_options or {}), "max_retries": 0})

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: dict[str, str] | None = None,
    ) -> requests.Response:
        url = urlsplit(request.url or "")
        body = request.body
        replayable = body is None or isinstance(body, (bytes, str))  # not a file or a generator
        method = request.method or "GET"
        retryable = self.pipeline.may_retry(method, "Idempotency-Key" in request.headers, replayable)
        target = self.pipeline.target(method, url.scheme, url.hostname or "", url.port)
        send = super().send
        traced = self.pipeline.traced

        def attempt() -> requests.Response:
            cut = _cut(timeout, remaining())
            if traced:
                inject(request.headers)
            return send(request, stream=stream, timeout=cut, verify=verify, cert=cert, proxies=proxies)

        return self.pipeline.send(target, retryable, attempt, _status, _close)


def session(
    name: str = "http",
    *,
    registry: Registry | None = None,
    policy: HttpPolicy | None = None,
) -> requests.Session:
    """A `requests.Session` with `ResilientAdapter` mounted for http:// and https://."""
    adapter = ResilientAdapter(name=name, registry=registry, policy=policy)
    made = requests.Session()
    made.mount("http://", adapter)
    made.mount("https://", adapter)
    return made
