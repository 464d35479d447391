"""GET /_matrix/federation/v1/version: which implementation this is."""

from __future__ import annotations

from aiohttp import web

from homeserver.api.http import json_response


async def get_version(request: web.Request) -> web.Response:
    from homeserver.server import SERVER_VERSION

    return json_response({"server": {"name": "Accord", "version": SERVER_VERSION}})


def register(app: web.Application) -> None:
    app.router.add_get("/_matrix/federation/v1/version", get_version)
