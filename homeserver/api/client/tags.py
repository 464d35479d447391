"""Room tagging: GET /user/{userId}/rooms/{roomId}/tags, PUT and DELETE
/user/{userId}/rooms/{roomId}/tags/{tag}; only for the user themself."""

from __future__ import annotations

from aiohttp import web

from homeserver.api.client.account_data import is_valid_room_id
from homeserver.api.http import ClientRoutes, get_hs, json_response, read_json, requester
from homeserver.errors import MatrixError


async def _own(request: web.Request) -> tuple[str, str]:
    """(user ID, room ID) of the path, once the requester is that user."""
    req = await requester(request)
    user_id = request.match_info["user_id"]
    if user_id != req.user_id:
        raise MatrixError(403, "M_FORBIDDEN", "Cannot access tags of other users")
    room_id = request.match_info["room_id"]
    if not is_valid_room_id(room_id):
        raise MatrixError(400, "M_INVALID_PARAM", f"{room_id!r} is not a valid room ID")
    return user_id, room_id


async def get_tags(request: web.Request) -> web.Response:
    user_id, room_id = await _own(request)
    return json_response({"tags": await get_hs(request).tags.get_tags(user_id, room_id)})


async def put_tag(request: web.Request) -> web.Response:
    user_id, room_id = await _own(request)
    content = await read_json(request)
    await get_hs(request).tags.add_tag(user_id, room_id, request.match_info["tag"], content)
    return json_response({})


async def delete_tag(request: web.Request) -> web.Response:
    user_id, room_id = await _own(request)
    await get_hs(request).tags.remove_tag(user_id, room_id, request.match_info["tag"])
    return json_response({})


def register(routes: ClientRoutes) -> None:
    routes.add("GET", "/user/{user_id}/rooms/{room_id}/tags", get_tags)
    routes.add("PUT", "/user/{user_id}/rooms/{room_id}/tags/{tag}", put_tag)
    routes.add("DELETE", "/user/{user_id}/rooms/{room_id}/tags/{tag}", delete_tag)
