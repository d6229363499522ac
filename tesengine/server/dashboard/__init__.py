"""The task dashboard of ``tesengine serve``: ``GET /`` and ``/ui/...``.

A static page (HTML, CSS, script from package data; nothing from a CDN)
whose script reads only this server's own TES API, so it can never show
what the API would not. The page itself holds no data and is the same for
every server, so it is served without credentials; every task it shows
comes from ``/ga4gh/tes/v1/...`` under the API's authentication (the page
asks for credentials when the API answers 401).
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from aiohttp import web

__all__ = ["add_routes", "shell_exempt"]

_ROUTE = "dashboard-"
DASHBOARD_HEADER = "X-Tesengine-Dashboard"
"""Sent by the dashboard's script with every API call."""
_ASSETS = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self';"
        " img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _read(name: str) -> bytes:
    return resources.files(__package__).joinpath(name).read_bytes()


def add_routes(app: web.Application) -> None:
    """Mount the dashboard on ``app``."""
    page = _read("index.html")
    assets = {name: _read(name) for name in _ASSETS}

    async def root(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/ui/")

    async def shell(request: web.Request) -> web.StreamResponse:
        return web.Response(body=page, content_type="text/html", charset="utf-8", headers=_HEADERS)

    async def asset(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in assets:
            raise web.HTTPNotFound(reason=f"no dashboard file {name[:100]!r}")
        return web.Response(
            body=assets[name], content_type=_ASSETS[name], charset="utf-8", headers=_HEADERS
        )

    app.router.add_get("/", root, name=f"{_ROUTE}root")
    app.router.add_get("/ui", root, name=f"{_ROUTE}ui")
    app.router.add_get("/ui/", shell, name=f"{_ROUTE}list")
    app.router.add_get("/ui/tasks/{id}", shell, name=f"{_ROUTE}task")
    app.router.add_get("/ui/assets/{name}", asset, name=f"{_ROUTE}asset")


def _is_shell(request: web.Request) -> bool:
    # Decided by the route the request matched, never by parsing the path again.
    name = request.match_info.route.name or ""
    return name.startswith(_ROUTE) and request.method in ("GET", "HEAD")


def shell_exempt(auth: Any) -> Any:
    """``auth`` middleware for everything but the dashboard's static page and assets."""

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        if _is_shell(request):
            return await handler(request)  # type: ignore[no-any-return]
        response: web.StreamResponse = await auth(request, handler)
        if response.status == 401 and request.headers.get(DASHBOARD_HEADER):
            # No challenge for the page's own calls: a browser would hold the
            # request behind its password dialog; the page asks instead.
            response.headers.pop("WWW-Authenticate", None)
        return response

    return middleware
