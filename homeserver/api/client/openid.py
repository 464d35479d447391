"""POST /_matrix/client/v3/user/{userId}/openid/request_token: an OpenID token for
the requester (homeserver/accounts/openid.py), only for themself."""

from __future__ import annotations

from aiohttp import web

from homeserver.api.http import ClientRoutes, get_hs, json_response, read_json, requester
from homeserver.errors import MatrixError


async def request_token(request: web.Request) -> web.Response:
    req = await requester(request)
    if request.match_info["user_id"] != req.user_id:
        raise MatrixError(403, "M_FORBIDDEN", "Cannot request OpenID tokens for other users")
    await read_json(request)  # the body is an empty object; anything else is refused as JSON
    return json_response(get_hs(request).openid.issue(req.user_id))


def register(routes: ClientRoutes) -> None:
    routes.add("POST", "/user/{user_id}/openid/request_token", request_token)
