"""The deprecated snapshot endpoints, GET /rooms/{roomId}/initialSync and
GET /initialSync, and the event stream that follows them, GET /events.

Still specified (the room one is also how a client previews a world-readable
room it is not in) and still used by older clients and tools. Both are read
through the same checks as /messages and /state: the room-wide gate (members,
users who left, anyone for a world-readable room) and per-event history
visibility; a user who left sees the room as it was when they left.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.api.client.room_history import format_events, page_limit, room_and_access
from homeserver.api.http import ClientRoutes, get_hs, json_response, requester
from homeserver.errors import MatrixError
from homeserver.params import query_int
from homeserver.records.rooms import RoomRecord
from homeserver.rooms.tokens import parse_stream_position, room_token
from homeserver.rooms.visibility import RoomAccess


async def room_info(
    request: web.Request, room: RoomRecord, access: RoomAccess, user_id: str, device_id: str | None, limit: int
) -> dict[str, Any]:
    """One room's RoomInfo: membership, recent messages (oldest first) with
    tokens for /messages, the state the user may read, directory visibility and
    the user's room account data."""
    hs = get_hs(request)
    now = access.stream_bound(hs.room_service.stream.current)
    page = await hs.room_history.paginate(
        room, hs.visibility.viewer(user_id, room), access, from_pos=now, backwards=True, limit=limit,
        ignored=await hs.room_history.ignored_senders(user_id),
    )
    messages: dict[str, Any] = {
        "chunk": await format_events(request, room, list(reversed(page.events)), device_id, user_id=user_id),
        "end": room_token(now),
    }
    if page.more:
        messages["start"] = room_token(page.next_pos)
    state = await hs.room_service.state_events(await hs.room_history.readable_state_ids(room, access))
    info: dict[str, Any] = {
        "room_id": room.room_id,
        "messages": messages,
        "state": await format_events(request, room, list(state.values()), timeline=False),
        "visibility": await hs.public_rooms.get_visibility(room.room_id),
        "account_data": await hs.account_data.room_changes_since(user_id, room.room_id, 0),
    }
    if access.membership in ("invite", "join", "leave", "ban"):
        info["membership"] = access.membership
    return info


async def get_room_initial_sync(request: web.Request) -> web.Response:
    req = await requester(request, allow_guest=True)
    room, access = await room_and_access(request, req.user_id)
    return json_response(await room_info(request, room, access, req.user_id, req.device_id, page_limit(request)))


#: Memberships a user's GET /initialSync lists; `archived=true` adds the rooms they left.
CURRENT = ("join", "invite")
ARCHIVED = ("leave", "ban")


def _archived(request: web.Request) -> bool:
    value = request.query.get("archived", "false")
    if value not in ("true", "false"):
        raise MatrixError(400, "M_INVALID_PARAM", "Query parameter 'archived' must be 'true' or 'false'")
    return value == "true"


async def get_initial_sync(request: web.Request) -> web.Response:
    """Every room the user is in or invited to (and, with `archived`, has left), with
    its RoomInfo; presence of the people they share rooms with; their global account
    data; and `end`, the token GET /events continues from."""
    hs = get_hs(request)
    req = await requester(request)
    limit = page_limit(request)
    memberships = CURRENT + ARCHIVED if _archived(request) else CURRENT
    end = room_token(hs.room_service.stream.current)
    rooms: list[dict[str, Any]] = []
    for room_id in await hs.room_service.rooms_for_user(req.user_id, memberships):
        room = await hs.room_service.find_room(room_id)
        if room is None:
            continue
        membership = await hs.room_service.membership_of(room, req.user_id)
        if membership == "invite":
            rooms.append(await _invite_info(request, room, req.user_id))
            continue
        try:
            access = await hs.visibility.room_access(req.user_id, room)
        except MatrixError:
            continue  # a room never held here (a remote room left before any join)
        rooms.append(await room_info(request, room, access, req.user_id, req.device_id, limit))
    return json_response({
        "end": end,
        "rooms": rooms,
        "presence": await hs.presence.presence_since(req.user_id, 0),
        "account_data": await hs.account_data.global_changes_since(req.user_id, 0),
    })


async def _invite_info(request: web.Request, room: RoomRecord, user_id: str) -> dict[str, Any]:
    """An invited room: the invite event, nothing of the room's history."""
    hs = get_hs(request)
    info: dict[str, Any] = {"room_id": room.room_id, "membership": "invite"}
    invite = await hs.room_service.membership_event(room, user_id)
    if invite is not None:
        info["invite"] = (await format_events(request, room, [invite], timeline=False))[0]
    return info


#: The longest a GET /events request waits for something to happen.
MAX_TIMEOUT_MS = 300_000


async def get_events(request: web.Request) -> web.Response:
    """GET /events: the user's rooms' events after `from`, or, with `room_id`, one
    room's (a world-readable room may be followed without joining it)."""
    hs = get_hs(request)
    req = await requester(request, allow_guest=True)
    raw_from = request.query.get("from")
    from_pos = None if raw_from is None else parse_stream_position(raw_from)
    timeout = query_int(request.query, "timeout", 0, minimum=0)
    assert timeout is not None
    peeked = None
    room_id = request.query.get("room_id")
    if room_id is not None:
        peeked = await hs.room_service.find_room(room_id)
        await hs.visibility.room_access(req.user_id, peeked)  # M_FORBIDDEN unless readable
    found, start, end = await hs.legacy_events.events(
        req.user_id, from_pos=from_pos, timeout_ms=min(timeout, MAX_TIMEOUT_MS), peeked=peeked
    )
    chunk: list[dict[str, Any]] = []
    for room, event in found:
        chunk.extend(await format_events(request, room, [event], req.device_id, user_id=req.user_id))
    return json_response({"chunk": chunk, "start": room_token(start), "end": room_token(end)})


def register(routes: ClientRoutes) -> None:
    routes.add("GET", "/events", get_events)
    routes.add("GET", "/rooms/{room_id}/initialSync", get_room_initial_sync)
    routes.add("GET", "/initialSync", get_initial_sync)


