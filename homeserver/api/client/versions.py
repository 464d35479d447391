"""GET /_matrix/client/versions."""

from __future__ import annotations

from aiohttp import web

from homeserver.api.http import json_response

SUPPORTED_VERSIONS = [f"v1.{n}" for n in range(1, 17)]


async def get_versions(request: web.Request) -> web.Response:
    return json_response({"versions": SUPPORTED_VERSIONS, "unstable_features": {}})


def register(app: web.Application) -> None:
    app.router.add_get("/_matrix/client/versions", get_versions)
