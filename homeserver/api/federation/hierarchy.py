"""Spaces (server-server space_hierarchy.yaml): GET /_matrix/federation/v1/hierarchy/{roomId}.

What the requesting server may see of the space and its children is decided by
`SpaceHierarchy.federation_hierarchy`; this module only speaks HTTP."""

from __future__ import annotations

from aiohttp import web

from homeserver.api.federation.auth import origin_of
from homeserver.api.federation.events import V1
from homeserver.api.http import get_hs, json_response, query_bool


async def get_hierarchy(request: web.Request) -> web.Response:
    origin = origin_of(request)
    hs = get_hs(request)
    hs.ratelimiter.check_server("federation_query", origin)  # a query of our rooms, like /query/*
    return json_response(
        await hs.space_hierarchy.federation_hierarchy(
            origin, request.match_info["room_id"], suggested_only=query_bool(request, "suggested_only")
        )
    )


def register(app: web.Application) -> None:
    app.router.add_get(V1 + "/hierarchy/{room_id}", get_hierarchy)
