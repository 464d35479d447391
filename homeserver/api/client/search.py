"""POST /search (the spec's "Server Side Search"): the room_events category."""

from __future__ import annotations

from aiohttp import web

from homeserver.api.http import ClientRoutes, get_hs, json_response, read_json, requester
from homeserver.errors import MatrixError


async def post_search(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request)
    body = await read_json(request)
    categories = body.get("search_categories")
    if categories is None:
        raise MatrixError(400, "M_MISSING_PARAM", "Missing required field 'search_categories'")
    if not isinstance(categories, dict):
        raise MatrixError(400, "M_BAD_JSON", "Field 'search_categories' must be an object")
    unknown = sorted(k for k in categories if k != "room_events")
    if unknown:
        raise MatrixError(400, "M_UNKNOWN", f"Unknown search category: {unknown[0]}")
    out: dict[str, object] = {}
    if "room_events" in categories:
        # Imported with the service, at the first search (an idle server has neither).
        from homeserver.search.service import parse_room_events

        criteria = parse_room_events(categories["room_events"])
        out["room_events"] = await hs.search.search(
            req.user_id, req.device_id, criteria, request.query.get("next_batch")
        )
    return json_response({"search_categories": out})


def register(routes: ClientRoutes) -> None:
    routes.add("POST", "/search", post_search)
