"""PUT /rooms/{roomId}/typing/{userId}: users say they are (or stopped) typing.

Only for oneself (403 otherwise) and only in rooms one is joined to (403, the
same answer whether or not the room exists).
"""

from __future__ import annotations

from aiohttp import web

from homeserver.api.client.rooms import member_room
from homeserver.api.http import ClientRoutes, field, get_hs, json_response, read_json, requester
from homeserver.errors import forbidden, invalid_param
from homeserver.typing import DEFAULT_TIMEOUT_MS


async def put_typing(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request)
    if request.match_info["user_id"] != req.user_id:
        raise forbidden("You cannot set the typing state of another user")
    hs.ratelimiter.check_user("typing", req.user_id)  # each change goes to every member and server
    body = await read_json(request)
    typing: bool = field(body, "typing", bool, required=True)
    timeout: int = field(body, "timeout", int, default=DEFAULT_TIMEOUT_MS)
    if timeout < 0:
        raise invalid_param("Field 'timeout' must not be negative")
    room = await member_room(request, req.user_id)
    await hs.typing.set_typing(room, req.user_id, typing, timeout)
    return json_response({})


def register(routes: ClientRoutes) -> None:
    routes.add("PUT", "/rooms/{room_id}/typing/{user_id}", put_typing)
