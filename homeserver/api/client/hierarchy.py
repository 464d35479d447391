"""Spaces (space_hierarchy.yaml): GET /_matrix/client/v1/rooms/{roomId}/hierarchy.

The walk, the access rules and the paging tokens are `homeserver.rooms.hierarchy`'s;
this module parses the query and shapes the answer."""

from __future__ import annotations

from aiohttp import web

from homeserver.api.http import ClientRoutes, get_hs, json_response, query_bool, requester
from homeserver.params import INT64_MAX, query_int

CLIENT_V1 = ("/_matrix/client/v1",)


async def get_hierarchy(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request)
    limit = query_int(request.query, "limit", minimum=1, maximum=INT64_MAX)
    max_depth = query_int(request.query, "max_depth", minimum=0, maximum=INT64_MAX)
    return json_response(
        await hs.space_hierarchy.hierarchy(
            req.user_id,
            request.match_info["room_id"],
            suggested_only=query_bool(request, "suggested_only"),
            max_depth=max_depth,
            limit=limit,
            from_token=request.query.get("from"),
        )
    )


def register(routes: ClientRoutes) -> None:
    routes.add("GET", "/rooms/{room_id}/hierarchy", get_hierarchy, prefixes=CLIENT_V1)
