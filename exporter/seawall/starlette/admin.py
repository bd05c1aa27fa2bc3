"""Admin actions on breakers and features, behind a bearer token.

Off unless a token is configured (argument, env SEAWALL_ADMIN_TOKEN, or the file named by
SEAWALL_ADMIN_TOKEN_FILE): then every admin route answers 403 `admin_disabled`. With a token: no
`Authorization: Bearer ...` is 401, a wrong one 403 (compared with `hmac.compare_digest`), an unknown
name 404. Every attempt is logged and counted in `seawall_admin_actions_total{action,result}`.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
import weakref
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from seawall.core.logsafe import log_value
from seawall.core.registry import Registry

from ._json import JSONResponse
from ._problems import ApiError, api_error_response

__all__ = ["AdminActions", "resolve_admin_token"]

log = logging.getLogger("seawall.web")

MIN_TOKEN_LENGTH = 8
# URL verb -> the primitive's method it calls.
BREAKER_ACTIONS = {"reset": "reset", "open": "force_open", "disable": "disable"}
FEATURE_ACTIONS = {"enable": "enable", "disable": "disable"}


def resolve_admin_token(token: str | None) -> str | None:
    """The token: the argument, else SEAWALL_ADMIN_TOKEN, else SEAWALL_ADMIN_TOKEN_FILE's content."""
    source = "admin_token"
    if token is None:
        token = os.environ.get("SEAWALL_ADMIN_TOKEN") or None
        source = "SEAWALL_ADMIN_TOKEN"
    if token is None:
        path = os.environ.get("SEAWALL_ADMIN_TOKEN_FILE") or None
        if path is None:
            return None
        try:
            token = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(
                f"SEAWALL_ADMIN_TOKEN_FILE must name a readable file, got {path!r} ({type(exc).__name__})"
            ) from None
        source = "SEAWALL_ADMIN_TOKEN_FILE"
    if not isinstance(token, str):
        raise TypeError(f"admin_token must be a str or None, got {type(token).__name__}")
    token = token.strip()
    if len(token) < MIN_TOKEN_LENGTH:
        # Never echo the token itself, only its length.
        raise ValueError(f"{source} must be at least {MIN_TOKEN_LENGTH} characters, got {len(token)}")
    return token


# One counter per prometheus registry: create_app may be called many times (tests, several apps).
_counters: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_counters_lock = threading.Lock()


def _admin_counter(prometheus_registry: Any) -> Any:
    if prometheus_registry is None:
        return None
    try:
        from prometheus_client import Counter
    except ImportError:  # pragma: no cover - the starlette extra without prometheus
        return None
    with _counters_lock:
        counter = _counters.get(prometheus_registry)
        if counter is None:
            counter = Counter(
                "seawall_admin_actions",
                "Admin actions on breakers and features, by action and result.",
                ["action", "result"],
                registry=prometheus_registry,
            )
            _counters[prometheus_registry] = counter
        return counter


class AdminActions:
    """The handlers of the admin routes, bound to one registry and token."""

    def __init__(self, registry: Registry, token: str | None, prometheus_registry: Any = None) -> None:
        self.registry = registry
        self._token = None if token is None else token.encode("utf-8")
        self._counter = _admin_counter(prometheus_registry)
        self._lock = threading.Lock()
        self.counts: dict[tuple[str, str], int] = {}

    @property
    def enabled(self) -> bool:
        return self._token is not None

    def _count(self, action: str, result: str, request: Request, target: str) -> None:
        with self._lock:
            self.counts[(action, result)] = self.counts.get((action, result), 0) + 1
        if self._counter is not None:
            self._counter.labels(action=action, result=result).inc()
        client = request.client.host if request.client else "unknown"
        level = logging.INFO if result == "ok" else logging.WARNING
        # The target comes from the URL before authorization: escaped, so it cannot forge a line.
        log.log(
            level,
            "seawall admin action=%s target=%s result=%s client=%s",
            action,
            log_value(target),
            result,
            log_value(client),
        )

    def authorized(self, request: Request) -> bool:
        """Whether `request` carries the admin token (for reads that show details; not counted)."""
        if self._token is None:
            return False
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(credentials.strip().encode("utf-8", "replace"), self._token)

    def _authorize(self, request: Request, action: str, target: str) -> None:
        if self._token is None:
            self._count(action, "disabled", request, target)
            raise ApiError(
                403,
                "admin_disabled",
                "admin endpoints are off: configure an admin token (admin_token=, SEAWALL_ADMIN_TOKEN "
                "or SEAWALL_ADMIN_TOKEN_FILE) to enable them",
            )
        header = request.headers.get("authorization", "")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            self._count(action, "unauthorized", request, target)
            raise ApiError(
                401,
                "unauthorized",
                "admin endpoints need an 'Authorization: Bearer <token>' header",
                headers={"www-authenticate": 'Bearer realm="seawall"'},
            )
        if not hmac.compare_digest(credentials.strip().encode("utf-8"), self._token):
            self._count(action, "forbidden", request, target)
            raise ApiError(403, "forbidden", "the admin token is not valid")

    async def breaker_action(self, request: Request) -> Response:
        return self._act(request, "breaker", BREAKER_ACTIONS)

    async def feature_action(self, request: Request) -> Response:
        return self._act(request, "feature", FEATURE_ACTIONS)

    def _act(self, request: Request, kind: str, actions: dict[str, str]) -> Response:
        """Authorize, find the named primitive of `kind`, call the method the verb names."""
        name = request.path_params["name"]
        verb = request.path_params["action"]
        action = f"{kind}_{verb}" if verb in actions else f"{kind}_unknown"
        try:
            self._authorize(request, action, name)
            if verb not in actions:
                self._count(action, "not_found", request, name)
                raise ApiError(
                    404, "unknown_action", f"{kind} actions are {', '.join(actions)}", field="action"
                )
            target = self.registry.get(kind, name)
            if target is None:
                self._count(action, "not_found", request, name)
                raise ApiError(404, f"unknown_{kind}", f"no {kind} with this name", field="name")
            method = getattr(target, actions[verb], None)
            if not callable(method):  # e.g. an adapter's stand-in for a pybreaker breaker cannot disable
                self._count(action, "unsupported", request, name)
                raise ApiError(
                    409,
                    "unsupported_action",
                    f"this {kind} cannot {verb}: {type(target).__name__} has no such control",
                )
            method()
        except ApiError as exc:
            return api_error_response(exc)
        self._count(action, "ok", request, name)
        return JSONResponse({"name": name, "action": verb, kind: target.snapshot().to_dict()})
