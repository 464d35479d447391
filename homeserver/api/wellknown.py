"""Server discovery: /.well-known/matrix/client and /.well-known/matrix/server."""

from __future__ import annotations

from aiohttp import web

from homeserver.api.http import get_hs, json_response
from homeserver.errors import not_found


async def client_wellknown(request: web.Request) -> web.Response:
    base = get_hs(request).config.well_known.client_base_url
    if not base:
        raise not_found("No .well-known/matrix/client configured")
    return json_response({"m.homeserver": {"base_url": base}})


async def server_wellknown(request: web.Request) -> web.Response:
    delegation = get_hs(request).config.well_known.server_delegation
    if not delegation:
        raise not_found("No .well-known/matrix/server configured")
    return json_response({"m.server": delegation})


def register_routes(app: web.Application) -> None:
    app.router.add_get("/.well-known/matrix/client", client_wellknown)
    app.router.add_get("/.well-known/matrix/server", server_wellknown)
