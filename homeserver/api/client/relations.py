"""Event relationships: GET /rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]
and GET /rooms/{roomId}/threads (client-server API v1).

Both pass the room-wide gate (`VisibilityService.room_access`) and return only
events the user may see; a parent event they may not see is M_NOT_FOUND, like one
that does not exist.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.api.http import ClientRoutes, get_hs, json_response, query_bool, requester
from homeserver.errors import MatrixError, not_found
from homeserver.params import query_int
from homeserver.rooms.tokens import parse_stream_position, room_token

DEFAULT_LIMIT = 5
MAX_LIMIT = 100
_V1 = ("/_matrix/client/v1",)


def _limit(request: web.Request, default: int) -> int:
    limit = query_int(request.query, "limit", default, minimum=0)
    assert limit is not None
    return min(limit, MAX_LIMIT)


def _pos(request: web.Request, name: str) -> int | None:
    value = request.query.get(name)
    return None if value is None else parse_stream_position(value)


async def get_relations(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request, allow_guest=True)
    room = await hs.room_service.find_room(request.match_info["room_id"])
    access = await hs.visibility.room_access(req.user_id, room)
    assert room is not None
    direction = request.query.get("dir", "b")
    if direction not in ("b", "f"):
        raise MatrixError(400, "M_INVALID_PARAM", "Query parameter 'dir' must be 'b' or 'f'")
    recurse_given = "recurse" in request.query
    recurse = query_bool(request, "recurse")
    viewer = hs.visibility.viewer(req.user_id, room)
    if any("\x00" in v for v in request.match_info.values()):  # in no event ID or type
        raise not_found("Event not found")
    parent = await hs.room_service.get_event(request.match_info["event_id"])
    if (
        parent is None or parent.room_nid != room.room_nid or parent.stream_ordering is None
        or not await viewer.can_see(parent)
    ):
        raise not_found("Event not found")
    page = await hs.relations.children(
        room, viewer, access, parent,
        rel_type=request.match_info.get("rel_type"), event_type=request.match_info.get("event_type"),
        from_pos=_pos(request, "from"), to_pos=_pos(request, "to"), backwards=direction == "b",
        limit=_limit(request, DEFAULT_LIMIT), recurse=recurse, current=hs.room_service.stream.current,
    )
    out: dict[str, Any] = {
        "chunk": await hs.room_history.format_client_events(room, page.events, req.device_id, user_id=req.user_id),
    }
    if page.next_pos is not None:
        out["next_batch"] = room_token(page.next_pos)
    if "from" in request.query:
        out["prev_batch"] = request.query["from"]
    if recurse_given:
        out["recursion_depth"] = page.depth if recurse else 1
    return json_response(out)


async def get_threads(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request, allow_guest=True)
    room = await hs.room_service.find_room(request.match_info["room_id"])
    await hs.visibility.room_access(req.user_id, room)
    assert room is not None
    include = request.query.get("include", "all")
    if include not in ("all", "participated"):
        raise MatrixError(400, "M_INVALID_PARAM", "Query parameter 'include' must be 'all' or 'participated'")
    page = await hs.relations.threads(
        room, hs.visibility.viewer(req.user_id, room), req.user_id, participated=include == "participated",
        before=_pos(request, "from"), limit=_limit(request, DEFAULT_LIMIT),
    )
    out: dict[str, Any] = {
        "chunk": await hs.room_history.format_client_events(room, page.roots, req.device_id, user_id=req.user_id),
    }
    if page.next_pos is not None:
        out["next_batch"] = room_token(page.next_pos)
    return json_response(out)


def register(routes: ClientRoutes) -> None:
    base = "/rooms/{room_id}/relations/{event_id}"
    routes.add("GET", base, get_relations, prefixes=_V1)
    routes.add("GET", base + "/{rel_type}", get_relations, prefixes=_V1)
    routes.add("GET", base + "/{rel_type}/{event_type}", get_relations, prefixes=_V1)
    routes.add("GET", "/rooms/{room_id}/threads", get_threads, prefixes=_V1)
