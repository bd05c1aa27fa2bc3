"""One JSON error body for every error the web layer answers, and the handlers that produce it.

Clients (and the status page) parse a single shape: `error` (the HTTP reason), `error_code` (a
stable snake_case code), `error_id` (a random id that is also logged, so a report can be matched to
the server log) and `message` (written by seawall, never an exception's text, which may carry a
downstream's URL, credentials or stack). Validation errors add `field`.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from http import HTTPStatus
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from seawall.core.logsafe import exception_text, log_value

from ._json import JSONResponse

__all__ = [
    "REFUSED",
    "ApiError",
    "disconnected_response",
    "error_response",
    "exception_handlers",
    "guarded",
    "mark_refused",
]

log = logging.getLogger("seawall.web")

# Messages for the statuses Starlette raises itself (404 unmatched, 405 wrong method).
_DEFAULT_CODES: dict[int, tuple[str, str]] = {
    400: ("bad_request", "the request could not be read"),
    401: ("unauthorized", "authentication is required"),
    403: ("forbidden", "this action is not allowed"),
    404: ("not_found", "no such resource"),
    405: ("method_not_allowed", "this method is not allowed on this resource"),
    413: ("payload_too_large", "the request body is too large"),
    415: ("unsupported_media_type", "the request body must be JSON (Content-Type: application/json)"),
    422: ("invalid_parameter", "a parameter is invalid"),
    500: ("internal_error", "the server failed to answer this request"),
    503: ("unavailable", "the service is unavailable"),
}


# Set in a request's scope when seawall answered a 5xx on purpose (a refusal: readiness says
# unhealthy, too many streams or scrapes, shutting down): ResilienceMiddleware then does not record
# it as a service error. A probe answered 503 once a second used to fire ErrorRateHigh.
REFUSED = "seawall.refused"


def mark_refused(scope: MutableMapping[str, Any]) -> None:
    """This request's 5xx, if any, is a deliberate refusal, not a failure of the service."""
    scope[REFUSED] = True


class ApiError(Exception):
    """Raised by handlers to answer with the standard error body; `message` must be safe to show."""

    def __init__(
        self,
        status_code: int,
        error_code: str,
        message: str,
        *,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.error_code = error_code
        self.message = message
        self.field = field
        self.headers = dict(headers or {})


def _reason(status_code: int) -> str:
    try:
        return HTTPStatus(status_code).phrase
    except ValueError:
        return "Error"


def error_body(
    status_code: int, error_code: str, message: str, *, field: str | None = None, error_id: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "error": _reason(status_code),
        "error_code": error_code,
        "error_id": error_id or uuid.uuid4().hex,
        "message": message,
    }
    if field is not None:
        body["field"] = field
    return body


def error_response(
    status_code: int,
    error_code: str | None = None,
    message: str | None = None,
    *,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
    error_id: str | None = None,
) -> JSONResponse:
    """The standard error response; code and message default from the status."""
    default_code, default_message = _DEFAULT_CODES.get(status_code, ("error", _reason(status_code).lower()))
    body = error_body(
        status_code, error_code or default_code, message or default_message, field=field, error_id=error_id
    )
    response = JSONResponse(body, status_code=status_code, headers=dict(headers or {}))
    response.headers["cache-control"] = "no-store"
    return response


def api_error_response(exc: ApiError) -> JSONResponse:
    return error_response(exc.status_code, exc.error_code, exc.message, field=exc.field, headers=exc.headers)


def log_unhandled(exc: BaseException, where: str) -> str:
    """Log an unhandled exception under a fresh error id, which is returned.

    The traceback is logged as text with its messages redacted and escaped (`exception_text`), not
    as `exc_info`: a downstream's message may carry credentials or forge log lines.
    """
    error_id = uuid.uuid4().hex
    log.error(
        "unhandled %s in %s (error_id=%s)\n%s",
        type(exc).__name__,
        log_value(where),
        error_id,
        exception_text(exc),
    )
    return error_id


def internal_error_response(exc: BaseException, where: str) -> JSONResponse:
    """Log the exception and answer a 500 that carries only the error id."""
    return error_response(500, error_id=log_unhandled(exc, where))


def disconnected_response(where: str) -> Response:
    """A client left before its request body was read: its mistake, not ours, so no error is
    counted and nothing above INFO is logged. The 400 answers nobody; it only completes the cycle."""
    log.info("client disconnected before %s read its request body", log_value(where))
    return error_response(400, "client_disconnected", "the client disconnected before the body was read")


Endpoint = Callable[[Request], Awaitable[Response]]


def guarded(endpoint: Endpoint) -> Endpoint:
    """Wrap a handler so ApiError and unexpected exceptions become standard bodies wherever mounted."""

    @functools.wraps(endpoint)
    async def wrapper(request: Request) -> Response:
        try:
            return await endpoint(request)
        except ApiError as exc:
            mark_refused(request.scope)  # an answer seawall chose (a 4xx, or a 503 refusal)
            return api_error_response(exc)
        except HTTPException as exc:
            return error_response(exc.status_code, headers=exc.headers)
        except ClientDisconnect:
            return disconnected_response(_route_name(request))
        except Exception as exc:
            return internal_error_response(exc, _route_name(request))

    return wrapper


def _route_name(request: Request) -> str:
    route = request.scope.get("route")
    return str(getattr(route, "path", None) or "unmatched")


async def _http_exception(request: Request, exc: Exception) -> Response:
    if isinstance(exc, ApiError):
        return api_error_response(exc)
    status = getattr(exc, "status_code", 500)
    headers = getattr(exc, "headers", None)
    return error_response(status if isinstance(status, int) else 500, headers=headers)


async def _disconnected(request: Request, exc: Exception) -> Response:
    return disconnected_response(_route_name(request))


async def _unhandled(request: Request, exc: Exception) -> Response:
    return internal_error_response(exc, _route_name(request))


def exception_handlers() -> dict[Any, Callable[[Request, Exception], Awaitable[Response]]]:
    """Handlers for `Starlette(exception_handlers=...)` so 404/405/500 use the standard body too."""
    return {
        HTTPException: _http_exception,
        ApiError: _http_exception,
        ClientDisconnect: _disconnected,
        Exception: _unhandled,
    }
