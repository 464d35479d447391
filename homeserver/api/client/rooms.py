"""Rooms: createRoom, sending events, room state, redaction and reading events."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.api.http import ClientRoutes, get_hs, json_response, read_json, requester
from homeserver.errors import MatrixError, not_found
from homeserver.filtering import RoomEventFilter
from homeserver.rooms.client_format import client_event
from homeserver.rooms.creation import create_room
from homeserver.rooms.service import TxnInfo
from homeserver.rooms.tokens import parse_stream_position, room_token
from homeserver.storage.events import StoredEvent
from homeserver.storage.rooms import RoomRecord

MAX_TYPE_BYTES = 255


def _check_type(event_type: str) -> None:
    if not event_type or len(event_type.encode()) > MAX_TYPE_BYTES:
        raise MatrixError(400, "M_INVALID_PARAM", "Event type must be 1 to 255 bytes")


async def format_events(
    request: web.Request, room: RoomRecord, events: list[StoredEvent], device_id: str | None = None
) -> list[dict[str, Any]]:
    """Client JSON for events, with redactions attached."""
    hs = get_hs(request)
    redaction_ids = [ev.redacted_by for ev in events if ev.redacted_by]
    redactions = await hs.event_store.get_events(redaction_ids) if redaction_ids else {}
    now = hs.clock.time_ms()
    return [
        client_event(
            ev, room.room_id, room.room_version, now, device_id=device_id,
            redaction=redactions.get(ev.redacted_by) if ev.redacted_by else None,
        )
        for ev in events
    ]


async def member_room(request: web.Request, user_id: str) -> RoomRecord:
    """The room in the path; M_FORBIDDEN unless the user is joined (no existence leak for others)."""
    hs = get_hs(request)
    room = await hs.room_store.get_room(request.match_info["room_id"])
    if room is not None:
        m = await hs.room_store.membership_of(room.room_nid, user_id)
        if m is not None and m[0] == "join":
            return room
    raise MatrixError(403, "M_FORBIDDEN", "You are not joined to this room")


async def post_create_room(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request)
    body = await read_json(request, allow_empty=True)
    room_id = await create_room(hs, req.user_id, body)
    return json_response({"room_id": room_id})


async def put_send(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request, allow_guest=True)
    event_type = request.match_info["event_type"]
    _check_type(event_type)
    content = await read_json(request, allow_empty=True)
    hs.ratelimiter.check("message", req.user_id, exempt=hs.is_ratelimit_exempt(req.user_id))
    room = await member_room(request, req.user_id)
    stored = await hs.room_service.create_event(
        room, req.user_id, event_type, content,
        txn=TxnInfo(req.user_id, req.device_id, request.match_info["txn_id"]),
    )
    return json_response({"event_id": stored.event_id})


async def put_redact(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request)
    body = await read_json(request, allow_empty=True)
    room = await member_room(request, req.user_id)
    target_id = request.match_info["event_id"]
    target = await hs.event_store.get_event(target_id)
    if target is None or target.room_nid != room.room_nid:
        raise not_found("Event not found")
    content: dict[str, Any] = {}
    reason = body.get("reason")
    if reason is not None:
        if not isinstance(reason, str):
            raise MatrixError(400, "M_BAD_JSON", "Field 'reason' must be a string")
        content["reason"] = reason
    if target.sender != req.user_id:
        await hs.room_service.require_power(room, req.user_id, "redact")
    from federation.events import get_room_version

    rv = get_room_version(room.room_version)
    if rv.redacts_in_content:
        content["redacts"] = target_id
    stored = await hs.room_service.create_event(
        room, req.user_id, "m.room.redaction", content,
        redacts=None if rv.redacts_in_content else target_id,
        txn=TxnInfo(req.user_id, req.device_id, request.match_info["txn_id"]),
    )
    return json_response({"event_id": stored.event_id})


async def put_state(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request)
    event_type = request.match_info["event_type"]
    state_key = request.match_info.get("state_key", "")
    _check_type(event_type)
    if len(state_key.encode()) > MAX_TYPE_BYTES:
        raise MatrixError(400, "M_INVALID_PARAM", "State key must be at most 255 bytes")
    content = await read_json(request, allow_empty=True)
    room = await member_room(request, req.user_id)
    if event_type == "m.room.member":
        raise MatrixError(400, "M_INVALID_PARAM", "Use the membership endpoints to change membership")
    if event_type == "m.room.canonical_alias":
        await hs.directory.check_canonical_alias(room, content)
    current = await hs.room_service.current_state_event(room, (event_type, state_key))
    if current is not None and current.sender == req.user_id and current.event["content"] == content:
        return json_response({"event_id": current.event_id})  # no-op change: no new event
    stored = await hs.room_service.create_event(room, req.user_id, event_type, content, state_key=state_key)
    return json_response({"event_id": stored.event_id})


async def _readable_room(request: web.Request, user_id: str) -> RoomRecord:
    hs = get_hs(request)
    room = await hs.room_store.get_room(request.match_info["room_id"])
    if room is None:
        raise MatrixError(403, "M_FORBIDDEN", "You are not allowed to view this room")
    return room


async def get_state_event(request: web.Request) -> web.Response:
    req = await requester(request, allow_guest=True)
    room = await _readable_room(request, req.user_id)
    key = (request.match_info["event_type"], request.match_info.get("state_key", ""))
    event = await _state_visible_to(request, room, req.user_id, key)
    if event is None:
        raise not_found("State event not found")
    fmt = request.query.get("format", "content")
    if fmt == "event":
        return json_response((await format_events(request, room, [event]))[0])
    content = (await format_events(request, room, [event]))[0]["content"]
    return json_response(content)


async def _state_visible_to(request: web.Request, room: RoomRecord, user_id: str, key: tuple[str, str]) -> StoredEvent | None:
    """Current state for members (or world-readable rooms); for those who left,
    the state as it was when they left."""
    hs = get_hs(request)
    if await hs.visibility.can_see_current_state(user_id, room):
        return await hs.room_service.current_state_event(room, key)
    m = await hs.room_store.membership_of(room.room_nid, user_id)
    if m is None or m[0] not in ("leave", "ban"):
        raise MatrixError(403, "M_FORBIDDEN", "You are not allowed to view this room")
    leave = (await hs.event_store.get_events_by_nid([m[1]]))[m[1]]
    ids = await hs.room_service.state_ids_before(leave)
    found = await hs.room_service.state_events(ids, [key])
    return found.get(key)


async def get_state(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request, allow_guest=True)
    room = await _readable_room(request, req.user_id)
    if await hs.visibility.can_see_current_state(req.user_id, room):
        events = await hs.room_service.current_state_events(room)
    else:
        m = await hs.room_store.membership_of(room.room_nid, req.user_id)
        if m is None or m[0] not in ("leave", "ban"):
            raise MatrixError(403, "M_FORBIDDEN", "You are not allowed to view this room")
        leave = (await hs.event_store.get_events_by_nid([m[1]]))[m[1]]
        events = await hs.room_service.state_events(await hs.room_service.state_ids_before(leave))
    return json_response(await format_events(request, room, list(events.values())))


async def get_event(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request, allow_guest=True)
    room = await hs.room_store.get_room(request.match_info["room_id"])
    event = await hs.event_store.get_event(request.match_info["event_id"])
    if room is None or event is None or event.room_nid != room.room_nid or event.stream_ordering is None:
        raise not_found("Event not found")
    if not await hs.visibility.filter(req.user_id, room, [event]):
        raise not_found("Event not found")
    return json_response((await format_events(request, room, [event], req.device_id))[0])


async def get_messages(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request, allow_guest=True)
    room = await hs.room_store.get_room(request.match_info["room_id"])
    if room is None:
        raise MatrixError(403, "M_FORBIDDEN", "You are not allowed to view this room")
    m = await hs.room_store.membership_of(room.room_nid, req.user_id)
    if m is None and not await hs.visibility.can_see_current_state(req.user_id, room):
        raise MatrixError(403, "M_FORBIDDEN", "You are not allowed to view this room")
    direction = request.query.get("dir", "b")
    if direction not in ("b", "f"):
        raise MatrixError(400, "M_INVALID_PARAM", "Query parameter 'dir' must be 'b' or 'f'")
    backwards = direction == "b"
    try:
        limit = int(request.query.get("limit", "10"))
    except ValueError:
        raise MatrixError(400, "M_INVALID_PARAM", "Query parameter 'limit' must be an integer") from None
    if limit < 0:
        raise MatrixError(400, "M_INVALID_PARAM", "Query parameter 'limit' must not be negative")
    limit = min(limit, 1000)
    event_filter = RoomEventFilter.from_query(request.query.get("filter"))
    if event_filter.limit is not None:
        limit = min(limit, event_filter.limit)
    from_token = request.query.get("from")
    to_token = request.query.get("to")
    if from_token is not None:
        start = parse_stream_position(from_token)
    else:
        start = hs.room_service.stream.current if backwards else 0
    to_pos = parse_stream_position(to_token) if to_token is not None else None
    chunk: list[StoredEvent] = []
    pos = start
    exhausted = False
    # Filtered-out events do not count against the limit: keep reading until the
    # page is full or the room's history runs out.
    while len(chunk) < limit and not exhausted:
        batch = await hs.event_store.room_stream(
            room.room_nid, from_pos=pos, to_pos=to_pos, backwards=backwards, limit=max(limit, 20)
        )
        if len(batch) < max(limit, 20):
            exhausted = True
        if not batch:
            break
        pos = batch[-1].stream_ordering - 1 if backwards else batch[-1].stream_ordering  # type: ignore[operator]
        wanted = [ev for ev in batch if event_filter.matches(ev.event, room.room_id)]
        visible = await hs.visibility.filter(req.user_id, room, wanted)
        ignored = await hs.room_service.ignored_users(req.user_id)
        for ev in visible:
            if ev.sender in ignored:
                continue
            chunk.append(ev)
            if len(chunk) >= limit:
                pos = ev.stream_ordering - 1 if backwards else ev.stream_ordering  # type: ignore[operator]
                exhausted = False
                break
    out: dict[str, Any] = {
        "chunk": await format_events(request, room, chunk, req.device_id),
        "start": from_token if from_token is not None else room_token(start),
    }
    if not exhausted or len(chunk) >= limit:
        out["end"] = room_token(pos)
    if event_filter.lazy_load_members and chunk:
        senders = {ev.sender for ev in chunk}
        state_ids = await hs.room_service.current_state_ids(room)
        members = await hs.room_service.state_events(state_ids, [("m.room.member", s) for s in senders])
        out["state"] = await format_events(request, room, list(members.values()))
    return json_response(out)


async def get_joined_rooms(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request, allow_guest=True)
    rooms = await hs.room_store.rooms_for_user(req.user_id, ("join",))
    return json_response({"joined_rooms": [r for r, _ in rooms]})


def register(routes: ClientRoutes) -> None:
    routes.add("POST", "/createRoom", post_create_room)
    routes.add("PUT", "/rooms/{room_id}/send/{event_type}/{txn_id}", put_send)
    routes.add("PUT", "/rooms/{room_id}/redact/{event_id}/{txn_id}", put_redact)
    routes.add("PUT", "/rooms/{room_id}/state/{event_type}", put_state)
    routes.add("PUT", "/rooms/{room_id}/state/{event_type}/{state_key}", put_state)
    routes.add("GET", "/rooms/{room_id}/state/{event_type}", get_state_event)
    routes.add("GET", "/rooms/{room_id}/state/{event_type}/{state_key}", get_state_event)
    routes.add("GET", "/rooms/{room_id}/state", get_state)
    routes.add("GET", "/rooms/{room_id}/event/{event_id}", get_event)
    routes.add("GET", "/rooms/{room_id}/messages", get_messages)
    routes.add("GET", "/joined_rooms", get_joined_rooms)
