"""Querying for information (query.yaml): GET /query/profile and /query/directory.

Both answer only for this server's own users and aliases: the spec tells
requesters to ask the server named in the ID, and answering for others would
let a peer launder another server's data through us. Rate limited per origin
server (``federation_query``).
"""

from __future__ import annotations

from aiohttp import web

from homeserver.api.federation.auth import origin_of
from homeserver.api.federation.events import V1, required_query
from homeserver.api.http import get_hs, json_response
from homeserver.errors import invalid_param, not_found
from homeserver.identifiers import parse_user_id
from homeserver.rooms.aliases import parse_alias


async def get_profile(request: web.Request) -> web.Response:
    hs = get_hs(request)
    hs.ratelimiter.check_server("federation_query", origin_of(request))
    user_id = required_query(request, "user_id")
    parsed = parse_user_id(user_id)
    if parsed is None:
        raise invalid_param("'user_id' is not a valid user ID")
    if parsed[1] != hs.config.server_name:
        raise not_found("User is not local to this server")
    profile = await hs.profiles.get(user_id)
    if profile is None:
        raise not_found("User does not exist")
    name = request.query.get("field")
    if name is None:
        return json_response(profile)
    if not name:
        raise invalid_param("'field' must not be empty")
    if name not in profile:
        raise not_found("Profile field not found")
    return json_response({name: profile[name]})


async def get_directory(request: web.Request) -> web.Response:
    hs = get_hs(request)
    hs.ratelimiter.check_server("federation_query", origin_of(request))
    alias = required_query(request, "room_alias")
    _, server = parse_alias(alias)  # M_INVALID_PARAM for a malformed alias
    if server != hs.config.server_name:
        raise not_found("Room alias is not local to this server")
    return json_response(await hs.aliases.resolve_alias(alias))


def register(app: web.Application) -> None:
    app.router.add_get(V1 + "/query/profile", get_profile)
    app.router.add_get(V1 + "/query/directory", get_directory)
