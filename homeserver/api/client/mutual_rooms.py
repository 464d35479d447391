"""GET /_matrix/client/v1/mutual_rooms?user_id=...&from=... (Matrix v1.19), and MSC2666's
last unstable form (`/_matrix/client/unstable/uk.half-shot.msc2666/user/mutual_rooms`, whose
token is `batch_token` in and `next_batch_token` out), which matrix-js-sdk calls."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.api.http import ClientRoutes, get_hs, json_response, requester
from homeserver.errors import MatrixError

CLIENT_V1 = ("/_matrix/client/v1",)
UNSTABLE = ("/_matrix/client/unstable/uk.half-shot.msc2666",)


async def _mutual_rooms(request: web.Request, token_param: str) -> dict[str, Any]:
    req = await requester(request)
    other = request.query.get("user_id")
    if other is None:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing required query parameter 'user_id'")
    return await get_hs(request).mutual_rooms.mutual_rooms(req.user_id, other, request.query.get(token_param))


async def get_mutual_rooms(request: web.Request) -> web.Response:
    return json_response(await _mutual_rooms(request, "from"))


async def get_unstable_mutual_rooms(request: web.Request) -> web.Response:
    result = await _mutual_rooms(request, "batch_token")
    out: dict[str, Any] = {"joined": result["joined"]}
    if "next_batch" in result:
        out["next_batch_token"] = result["next_batch"]
    return json_response(out)


def register(routes: ClientRoutes) -> None:
    routes.add("GET", "/mutual_rooms", get_mutual_rooms, prefixes=CLIENT_V1)
    routes.add("GET", "/user/mutual_rooms", get_unstable_mutual_rooms, prefixes=UNSTABLE)
