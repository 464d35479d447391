"""Client config: GET/PUT /user/{userId}/account_data/{type} and the per-room
/user/{userId}/rooms/{roomId}/account_data/{type} (the spec's "Client Config")."""

from __future__ import annotations

from aiohttp import web

from homeserver.account_data import SERVER_MANAGED_TYPES
from homeserver.api.http import ClientRoutes, get_hs, json_response, read_json, requester
from homeserver.errors import MatrixError, not_found
from homeserver.identifiers import is_valid_server_name

MAX_ROOM_ID_BYTES = 255


def is_valid_room_id(room_id: str) -> bool:
    """'!' and an opaque part, with ':server' in room versions before 12 (from v12
    on the room ID is the create event's hash and names no server)."""
    if not room_id.startswith("!") or len(room_id.encode("utf-8")) > MAX_ROOM_ID_BYTES:
        return False
    opaque, sep, server = room_id[1:].partition(":")
    if not opaque or not opaque.isprintable() or any(c.isspace() for c in opaque):
        return False
    return not sep or is_valid_server_name(server)


async def _own(request: web.Request) -> tuple[str, str]:
    """(user ID, type) of the path, once the requester is that user."""
    req = await requester(request)
    user_id = request.match_info["user_id"]
    if user_id != req.user_id:
        raise MatrixError(403, "M_FORBIDDEN", "Cannot access account data of other users")
    return user_id, request.match_info["type"]


def _room_id(request: web.Request) -> str:
    room_id = request.match_info["room_id"]
    if not is_valid_room_id(room_id):
        raise MatrixError(400, "M_INVALID_PARAM", f"{room_id!r} is not a valid room ID")
    return room_id


def _check_settable(data_type: str) -> None:
    if data_type in SERVER_MANAGED_TYPES:
        # The spec's status for these is 405, with M_BAD_JSON as the errcode.
        raise MatrixError(405, "M_BAD_JSON", f"Cannot set {data_type} through this API")


async def put_global(request: web.Request) -> web.Response:
    user_id, data_type = await _own(request)
    _check_settable(data_type)
    content = await read_json(request)
    await get_hs(request).account_data.set_global(user_id, data_type, content)
    return json_response({})


async def get_global(request: web.Request) -> web.Response:
    user_id, data_type = await _own(request)
    content = await get_hs(request).account_data.get_global(user_id, data_type)
    if content is None:
        raise not_found("Account data not found")
    return json_response(content)


async def put_room(request: web.Request) -> web.Response:
    user_id, data_type = await _own(request)
    room_id = _room_id(request)
    _check_settable(data_type)
    content = await read_json(request)
    await get_hs(request).account_data.set_room(user_id, room_id, data_type, content)
    return json_response({})


async def get_room(request: web.Request) -> web.Response:
    user_id, data_type = await _own(request)
    room_id = _room_id(request)
    content = await get_hs(request).account_data.get_room(user_id, room_id, data_type)
    if content is None:
        raise not_found("Room account data not found")
    return json_response(content)


def register(routes: ClientRoutes) -> None:
    routes.add("PUT", "/user/{user_id}/account_data/{type}", put_global)
    routes.add("GET", "/user/{user_id}/account_data/{type}", get_global)
    routes.add("PUT", "/user/{user_id}/rooms/{room_id}/account_data/{type}", put_room)
    routes.add("GET", "/user/{user_id}/rooms/{room_id}/account_data/{type}", get_room)
