"""GET /_synapse/admin/v1/server_version: which server and version answers, for tools
that cannot see the Server header behind a proxy."""

from __future__ import annotations

from aiohttp import web

from homeserver.api.admin.common import ADMIN_V1
from homeserver.api.http import json_response


async def get_server_version(request: web.Request) -> web.Response:
    # Synapse answers this without authentication; so does Accord (it names no user).
    from homeserver.server import SERVER_VERSION

    return json_response({"server_version": f"Accord {SERVER_VERSION}"})


def register(app: web.Application) -> None:
    app.router.add_get(ADMIN_V1 + "/server_version", get_server_version)
