"""Filters: POST /user/{userId}/filter and GET /user/{userId}/filter/{filterId}.

Filters are private to their owner: acting for anyone else is 403 (before any
lookup, so other users' filter IDs cannot be probed); an unknown filter is 404.
"""

from __future__ import annotations

from aiohttp import web

from homeserver.api.http import ClientRoutes, get_hs, json_response, read_json, requester
from homeserver.errors import forbidden


async def post_filter(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request)
    if request.match_info["user_id"] != req.user_id:
        raise forbidden("You cannot create filters for other users")
    body = await read_json(request)
    filter_id = await hs.filters.create(req.user_id, body)
    return json_response({"filter_id": filter_id})


async def get_filter(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request)
    if request.match_info["user_id"] != req.user_id:
        raise forbidden("You cannot read other users' filters")
    return json_response(await hs.filters.get(req.user_id, request.match_info["filter_id"]))


def register(routes: ClientRoutes) -> None:
    routes.add("POST", "/user/{user_id}/filter", post_filter)
    routes.add("GET", "/user/{user_id}/filter/{filter_id}", get_filter)
