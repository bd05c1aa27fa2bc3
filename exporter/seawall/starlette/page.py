"""The live status page: three static files shipped in the package, served from memory."""

from __future__ import annotations

from importlib.resources import files

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ._problems import ApiError, guarded

__all__ = ["page_routes"]

_ASSETS = {
    "status.css": "text/css; charset=utf-8",
    "status.js": "text/javascript; charset=utf-8",
}
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; frame-ancestors 'none'"
)


def _read(name: str) -> bytes:
    return files("seawall.starlette").joinpath("static").joinpath(name).read_bytes()


def page_routes() -> list[BaseRoute]:
    page = _read("status.html")
    assets = {name: (_read(name), content_type) for name, content_type in _ASSETS.items()}

    async def status_page(request: Request) -> Response:
        return Response(
            page,
            headers={
                "content-type": "text/html; charset=utf-8",
                "cache-control": "no-cache",
                "content-security-policy": _CSP,
                "x-content-type-options": "nosniff",
            },
        )

    async def slash(request: Request) -> Response:
        return RedirectResponse(request.url.path.rstrip("/"), status_code=308)

    async def asset(request: Request) -> Response:
        found = assets.get(request.path_params["file"])
        if found is None:
            raise ApiError(404, "not_found", "no such asset", field="file")
        body, content_type = found
        return Response(
            body,
            headers={
                "content-type": content_type,
                "cache-control": "no-cache",
                "x-content-type-options": "nosniff",
            },
        )

    return [
        Route("/resilience", guarded(status_page), methods=["GET"], name="seawall_status_page"),
        Route("/resilience/", guarded(slash), methods=["GET"], name="seawall_status_page_slash"),
        Route("/resilience/static/{file}", guarded(asset), methods=["GET"], name="seawall_status_asset"),
    ]
