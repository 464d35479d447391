"""Room aliases (/directory/room), local alias lists and the published room
directory (/directory/list/room, /publicRooms, ours or, with `?server=`, another
server's over federation). Behaviour lives in `homeserver.rooms.aliases` and
`homeserver.rooms.public_rooms`; this module only speaks HTTP."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.api.http import ClientRoutes, field, get_hs, json_response, read_json, requester
from homeserver.errors import MatrixError, bad_json, invalid_param
from homeserver.identifiers import is_valid_server_name
from homeserver.params import INT64_MAX, query_int


async def put_alias(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request)
    body = await read_json(request)
    room_id = field(body, "room_id", str, required=True)
    if not room_id.startswith("!"):
        raise invalid_param("'room_id' must be a room ID")
    await hs.aliases.create_alias(req.user_id, request.match_info["room_alias"], room_id)
    return json_response({})


async def get_alias(request: web.Request) -> web.Response:
    # No access token needed: the spec lists no security for alias lookups.
    hs = get_hs(request)
    return json_response(await hs.aliases.resolve_alias(request.match_info["room_alias"]))


async def delete_alias(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request)
    await hs.aliases.delete_alias(req.user_id, request.match_info["room_alias"])
    return json_response({})


async def get_room_aliases(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request)
    aliases = await hs.aliases.local_aliases(req.user_id, request.match_info["room_id"])
    return json_response({"aliases": aliases})


async def get_visibility(request: web.Request) -> web.Response:
    hs = get_hs(request)
    return json_response({"visibility": await hs.public_rooms.get_visibility(request.match_info["room_id"])})


async def put_visibility(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request)
    body = await read_json(request, allow_empty=True)
    visibility = field(body, "visibility", str, default="public")
    await hs.public_rooms.set_visibility(req.user_id, request.match_info["room_id"], visibility)
    return json_response({})


def _remote_server(request: web.Request) -> str | None:
    """The other server whose directory is asked for (`?server=`), None for our own."""
    hs = get_hs(request)
    server = request.query.get("server")
    if server is None or server == hs.config.server_name:
        return None
    if not is_valid_server_name(server):
        raise invalid_param("Query parameter 'server' is not a valid server name")
    return server


def _limit(value: Any) -> int | None:
    """A page size; absent or 0 means every room."""
    if value is None:
        return None
    if type(value) is not int or not 0 <= value <= INT64_MAX:
        raise invalid_param("'limit' must be a non-negative integer")
    return value or None


async def get_public_rooms(request: web.Request) -> web.Response:
    hs = get_hs(request)
    if request.headers.get("Authorization") or "access_token" in request.query:
        await requester(request, allow_guest=True)  # optional, but a bad token is still refused
    server = _remote_server(request)
    limit = _limit(query_int(request.query, "limit", minimum=0))
    since = request.query.get("since")
    if server is not None:
        return json_response(await hs.public_rooms.remote_public_rooms(server, limit=limit, since=since))
    return json_response(await hs.public_rooms.public_rooms(limit=limit, since=since))


async def post_public_rooms(request: web.Request) -> web.Response:
    hs = get_hs(request)
    await requester(request)
    server = _remote_server(request)
    body = await read_json(request, allow_empty=True)
    limit = _limit(body.get("limit"))
    since = field(body, "since", str)
    flt = field(body, "filter", dict, default={})
    term = field(flt, "generic_search_term", str)
    room_types = field(flt, "room_types", list)
    if room_types is not None and not all(t is None or isinstance(t, str) for t in room_types):
        raise bad_json("'room_types' must list strings or null")
    include_all = field(body, "include_all_networks", bool, default=False)
    instance = field(body, "third_party_instance_id", str)
    if include_all and instance is not None:
        raise MatrixError(
            400, "M_INVALID_PARAM", "'third_party_instance_id' cannot be used with 'include_all_networks'"
        )
    if server is not None:
        return json_response(
            await hs.public_rooms.remote_public_rooms(
                server, limit=limit, since=since, search_term=term, room_types=room_types,
                include_all_networks=include_all, third_party_instance_id=instance,
            )
        )
    return json_response(
        await hs.public_rooms.public_rooms(
            limit=limit, since=since, search_term=term, room_types=room_types,
            third_party_instance_id=instance,
        )
    )


def register(routes: ClientRoutes) -> None:
    routes.add("PUT", "/directory/room/{room_alias}", put_alias)
    routes.add("GET", "/directory/room/{room_alias}", get_alias)
    routes.add("DELETE", "/directory/room/{room_alias}", delete_alias)
    routes.add("GET", "/rooms/{room_id}/aliases", get_room_aliases)
    routes.add("GET", "/directory/list/room/{room_id}", get_visibility)
    routes.add("PUT", "/directory/list/room/{room_id}", put_visibility)
    routes.add("GET", "/publicRooms", get_public_rooms)
    routes.add("POST", "/publicRooms", post_public_rooms)
