"""Presence: PUT and GET /presence/{userId}/status.

Only users themselves set their presence (403). Reading needs a local user to
exist (404) and any user to share a room with the reader (403), as presence is
only published to those who share a room (the spec's Security considerations);
users of other servers are known through the m.presence EDUs their server sends.
"""

from __future__ import annotations

from aiohttp import web

from homeserver.api.http import ClientRoutes, field, get_hs, json_response, read_json, requester
from homeserver.errors import forbidden, not_found


async def put_presence(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request)
    if request.match_info["user_id"] != req.user_id:
        raise forbidden("You cannot set the presence of another user")
    hs.ratelimiter.check_user("presence", req.user_id)  # each change goes to every contact's server
    body = await read_json(request)
    state: str = field(body, "presence", str, required=True)
    status_msg: str | None = field(body, "status_msg", str)
    await hs.presence.set_presence(req.user_id, state, status_msg)
    return json_response({})


async def get_presence(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request)
    user_id = request.match_info["user_id"]
    if user_id != req.user_id:
        # Users of other servers are known here only through the rooms they share.
        local = hs.local_server.is_mine(user_id)
        if local and not await hs.accounts.exists(user_id):
            raise not_found("Unknown user")
        if not await hs.presence.shares_room(req.user_id, user_id):
            raise forbidden("You are not allowed to see their presence")
    return json_response(await hs.presence.get_presence(user_id))


def register(routes: ClientRoutes) -> None:
    routes.add("PUT", "/presence/{user_id}/status", put_presence)
    routes.add("GET", "/presence/{user_id}/status", get_presence)
