"""Server discovery: /.well-known/matrix/client and /.well-known/matrix/server, and the
administrators' contacts in /.well-known/matrix/support (v1.10)."""

from __future__ import annotations

from typing import Any

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


async def support_wellknown(request: web.Request) -> web.Response:
    """404 when nothing is configured: the spec's answer for "no support information"."""
    wk = get_hs(request).config.well_known
    if not wk.support_contacts and not wk.support_page:
        raise not_found("No support information is configured")
    out: dict[str, Any] = {}
    if wk.support_contacts:
        out["contacts"] = [
            {k: v for k, v in (("matrix_id", c.matrix_id), ("email_address", c.email_address), ("role", c.role))
             if v is not None}
            for c in wk.support_contacts
        ]
    if wk.support_page:
        out["support_page"] = wk.support_page
    return json_response(out)


def register_routes(app: web.Application) -> None:
    app.router.add_get("/.well-known/matrix/client", client_wellknown)
    app.router.add_get("/.well-known/matrix/server", server_wellknown)
    app.router.add_get("/.well-known/matrix/support", support_wellknown)
