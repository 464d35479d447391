"""GET /_matrix/client/v1/mutual_rooms?user_id=...&from=... (Matrix v1.19)."""

from __future__ import annotations

from aiohttp import web

from homeserver.api.http import ClientRoutes, get_hs, json_response, requester
from homeserver.errors import MatrixError

CLIENT_V1 = ("/_matrix/client/v1",)


async def get_mutual_rooms(request: web.Request) -> web.Response:
    req = await requester(request)
    other = request.query.get("user_id")
    if other is None:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing required query parameter 'user_id'")
    result = await get_hs(request).mutual_rooms.mutual_rooms(req.user_id, other, request.query.get("from"))
    return json_response(result)


def register(routes: ClientRoutes) -> None:
    routes.add("GET", "/mutual_rooms", get_mutual_rooms, prefixes=CLIENT_V1)
