"""Host and Origin checked on state-changing requests: the defence against DNS rebinding.

A page on `evil.example` can make its name resolve to 127.0.0.1 and then send requests to a local
service as its *own* origin: CORS and the JSON-only body rule no longer apply, and only the `Host`
header tells the truth (`evil.example:8000`). So every request whose method changes state (not
GET, HEAD, OPTIONS) must name a trusted host, and an `Origin` header, when the browser sends one,
must name a trusted host too. Reads stay open: Prometheus and probes use whatever name they know
the service by. Starlette's TrustedHostMiddleware checks every method and not Origin, hence this.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Scope

from ._problems import error_response

__all__ = ["DEFAULT_TRUSTED_HOSTS", "HostGuard", "resolve_trusted_hosts"]


DEFAULT_TRUSTED_HOSTS = ("localhost", "127.0.0.1", "::1")
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def resolve_trusted_hosts(hosts: Sequence[str] | None) -> tuple[str, ...]:
    """The argument, else env SEAWALL_TRUSTED_HOSTS (comma-separated), else the loopback names.
    Patterns as fnmatch (`*.example.com`); `*` trusts every host (the check is then off)."""
    if hosts is None:
        env = os.environ.get("SEAWALL_TRUSTED_HOSTS", "")
        hosts = [item.strip() for item in env.split(",") if item.strip()] or list(DEFAULT_TRUSTED_HOSTS)
    if isinstance(hosts, str) or not all(isinstance(host, str) and host for host in hosts):
        raise TypeError(f"trusted_hosts must be a list of non-empty host names, got {hosts!r}")
    return tuple(host.lower() for host in hosts)


def _hostname(text: str) -> str:
    """The host name of a `Host` header or an `Origin` URL, without the port (`[::1]:8000` ->
    `::1`); empty when it cannot be read."""
    try:
        return (urlsplit(text if "//" in text else f"//{text}").hostname or "").lower()
    except ValueError:
        return ""


class HostGuard:
    """Pure ASGI middleware: 403 `untrusted_host` / `untrusted_origin` on state-changing requests."""

    def __init__(self, app: ASGIApp, *, trusted_hosts: Sequence[str] | None = None) -> None:
        self.app = app
        self.trusted = resolve_trusted_hosts(trusted_hosts)
        self.everyone = "*" in self.trusted

    def trusts(self, hostname: str) -> bool:
        return bool(hostname) and any(fnmatch.fnmatchcase(hostname, pattern) for pattern in self.trusted)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or self.everyone or scope.get("method") in _SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        headers = {key: value for key, value in scope.get("headers", []) if key in (b"host", b"origin")}
        host = _hostname(headers.get(b"host", b"").decode("latin-1"))
        origin = headers.get(b"origin")
        if not self.trusts(host):
            response = error_response(
                403,
                "untrusted_host",
                "the Host header names no trusted host (see trusted_hosts)",
                field="host",
            )
        elif (
            origin is not None and origin != b"null" and not self.trusts(_hostname(origin.decode("latin-1")))
        ):
            response = error_response(
                403, "untrusted_origin", "the Origin header names no trusted host", field="origin"
            )
        else:
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)
