"""POST /rooms/{roomId}/upgrade. Behaviour lives in `homeserver.rooms.upgrade`."""

from __future__ import annotations

from aiohttp import web

from homeserver.api.http import ClientRoutes, field, get_hs, json_response, read_json, requester
from homeserver.errors import forbidden
from homeserver.rooms.upgrade import parse_additional_creators, parse_room_version


async def post_upgrade(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request)
    body = await read_json(request)
    rv = parse_room_version(field(body, "new_version", str, required=True))
    extra = parse_additional_creators(body.get("additional_creators"))
    # Unknown rooms and rooms the user is not in look alike: no existence leak.
    room = await hs.room_service.find_room(request.match_info["room_id"])
    if room is None or not await hs.directory_rights.is_joined(room, req.user_id):
        raise forbidden("You are not joined to this room")
    replacement = await hs.upgrades.upgrade(req.user_id, room, rv, extra)
    return json_response({"replacement_room": replacement})


def register(routes: ClientRoutes) -> None:
    routes.add("POST", "/rooms/{room_id}/upgrade", post_upgrade)
