"""Reading rooms: /messages, /context, /event, /state, /members, /joined_members
and /timestamp_to_event, and the deprecated GET /events/{eventId}.

Each handler passes the same two checks before reading: the room-wide gate
(`VisibilityService.room_access`: members, users who left, or anyone for a
world-readable room; M_FORBIDDEN otherwise, also for rooms that do not exist),
and per-event history visibility. Single events the user may not see are
M_NOT_FOUND, exactly like events that do not exist.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.api.http import ClientRoutes, get_hs, json_response, requester, timestamp_query
from homeserver.errors import MatrixError, not_found
from homeserver.filters.event_filter import RoomEventFilter
from homeserver.params import query_int
from homeserver.records.events import StoredEvent
from homeserver.records.rooms import RoomRecord
from homeserver.rooms.tokens import parse_stream_position, room_token
from homeserver.rooms.visibility import RoomAccess

DEFAULT_LIMIT = 10
MAX_LIMIT = 1000
MEMBERSHIPS = ("join", "invite", "knock", "leave", "ban")


def page_limit(request: web.Request) -> int:
    limit = query_int(request.query, "limit", DEFAULT_LIMIT, minimum=0)
    assert limit is not None
    return min(limit, MAX_LIMIT)


def _token(request: web.Request, name: str) -> int | None:
    value = request.query.get(name)
    return None if value is None else parse_stream_position(value)


async def room_and_access(request: web.Request, user_id: str) -> tuple[RoomRecord, RoomAccess]:
    hs = get_hs(request)
    room = await hs.room_service.find_room(request.match_info["room_id"])
    access = await hs.visibility.room_access(user_id, room)
    assert room is not None
    return room, access


async def format_events(
    request: web.Request, room: RoomRecord, events: list[StoredEvent], device_id: str | None = None,
    *, timeline: bool = True, user_id: str | None = None,
) -> list[dict[str, Any]]:
    # With the reading user_id, timeline events carry their bundled aggregations.
    return await get_hs(request).room_history.format_client_events(
        room, events, device_id, with_prev_content=timeline, user_id=user_id
    )


async def get_messages(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request, allow_guest=True)
    room, access = await room_and_access(request, req.user_id)
    direction = request.query.get("dir", "b")
    if direction not in ("b", "f"):
        raise MatrixError(400, "M_INVALID_PARAM", "Query parameter 'dir' must be 'b' or 'f'")
    backwards = direction == "b"
    limit = page_limit(request)
    event_filter = RoomEventFilter.from_query(request.query.get("filter"))
    if event_filter.limit:  # the spec requires a filter's limit to be positive; 0 is no limit
        limit = min(limit, event_filter.limit)
    from_token = request.query.get("from")
    from_pos = _token(request, "from")
    to_pos = _token(request, "to")
    if from_pos is None:
        # No token: from the newest (or the first) event the user may see; backfilled
        # history sits below zero.
        if backwards:
            from_pos = access.stream_bound(hs.room_service.stream.current)
        else:
            from_pos = await hs.room_history.oldest_position()
    page = await hs.room_history.paginate(
        room, hs.visibility.viewer(req.user_id, room), access,
        from_pos=from_pos, backwards=backwards, limit=limit, to_pos=to_pos,
        event_filter=event_filter, ignored=await hs.room_history.ignored_senders(req.user_id),
    )
    out: dict[str, Any] = {
        "chunk": await format_events(request, room, page.events, req.device_id, user_id=req.user_id),
        "start": from_token if from_token is not None else room_token(from_pos),
    }
    # `end` whenever more may follow: older events going back, and going forward
    # (to the present, by a reader whose view of the room has not ended) the events
    # still to come, which a client reads by passing this token again.
    live = not backwards and to_pos is None and access.until is None
    if page.more or (live and page.events):
        out["end"] = room_token(page.next_pos)
    if event_filter.lazy_load_members and page.events:
        members = await hs.room_history.member_events_for(page.events, (ev.sender for ev in page.events))
        out["state"] = await format_events(request, room, members, timeline=False)
    return json_response(out)


async def _event_in_room(request: web.Request, room: RoomRecord | None) -> StoredEvent:
    hs = get_hs(request)
    event = await hs.room_service.get_event(request.match_info["event_id"])
    if room is None or event is None or event.room_nid != room.room_nid or event.stream_ordering is None:
        raise not_found("Event not found")
    return event


async def get_event(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request, allow_guest=True)
    room = await hs.room_service.find_room(request.match_info["room_id"])
    event = await _event_in_room(request, room)
    assert room is not None
    if not await hs.visibility.viewer(req.user_id, room).can_see(event):
        raise not_found("Event not found")
    return json_response((await format_events(request, room, [event], req.device_id, user_id=req.user_id))[0])


async def get_event_by_id(request: web.Request) -> web.Response:
    """GET /events/{eventId} (deprecated since r0, still used by older clients and
    tools): the same answer as /rooms/{roomId}/event/{eventId}, the room read from
    the event; 404 alike for unknown events and events the user may not see."""
    hs = get_hs(request)
    req = await requester(request, allow_guest=True)
    event = await hs.room_service.get_event(request.match_info["event_id"])
    if event is None or event.stream_ordering is None:
        raise not_found("Event not found")
    room_id = event.event.get("room_id")
    if not isinstance(room_id, str):  # a v12 create event names its room by its own ID
        room_id = "!" + event.event_id[1:]
    room = await hs.room_service.find_room(room_id)
    if room is None or room.room_nid != event.room_nid:
        raise not_found("Event not found")
    if not await hs.visibility.viewer(req.user_id, room).can_see(event):
        raise not_found("Event not found")
    return json_response((await format_events(request, room, [event], req.device_id, user_id=req.user_id))[0])


async def get_context(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request, allow_guest=True)
    room, access = await room_and_access(request, req.user_id)
    limit = page_limit(request)
    event_filter = RoomEventFilter.from_query(request.query.get("filter"))
    event = await _event_in_room(request, room)
    viewer = hs.visibility.viewer(req.user_id, room)
    ignored = await hs.room_history.ignored_senders(req.user_id)
    if not await viewer.can_see(event) or (event.sender in ignored and event.state_key is None):
        raise not_found("Event not found")
    ctx = await hs.room_history.context(
        room, viewer, access, event, limit=limit, event_filter=event_filter, ignored=ignored
    )
    return json_response({
        "event": (await format_events(request, room, [event], req.device_id, user_id=req.user_id))[0],
        "events_before": await format_events(request, room, ctx.before.events, req.device_id, user_id=req.user_id),
        "events_after": await format_events(request, room, ctx.after.events, req.device_id, user_id=req.user_id),
        "state": await format_events(request, room, ctx.state, timeline=False),
        "start": room_token(ctx.before.next_pos),
        "end": room_token(ctx.after.next_pos),
    })


async def get_state(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request, allow_guest=True)
    room, access = await room_and_access(request, req.user_id)
    state = await hs.room_service.state_events(await hs.room_history.readable_state_ids(room, access))
    return json_response(await format_events(request, room, list(state.values()), timeline=False))


async def get_state_event(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request, allow_guest=True)
    room, access = await room_and_access(request, req.user_id)
    key = (request.match_info["event_type"], request.match_info.get("state_key", ""))
    ids = await hs.room_history.readable_state_ids(room, access)
    event = (await hs.room_service.state_events(ids, [key])).get(key)
    if event is None:
        raise not_found("State event not found")
    formatted = (await format_events(request, room, [event], timeline=False))[0]
    if request.query.get("format", "content") == "event":
        return json_response(formatted)
    return json_response(formatted["content"])


def _membership_param(request: web.Request, name: str) -> str | None:
    value = request.query.get(name)
    if value is not None and value not in MEMBERSHIPS:
        raise MatrixError(400, "M_INVALID_PARAM", f"Query parameter '{name}' must be one of {', '.join(MEMBERSHIPS)}")
    return value


async def get_members(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request, allow_guest=True)
    room, access = await room_and_access(request, req.user_id)
    membership = _membership_param(request, "membership")
    not_membership = _membership_param(request, "not_membership")
    at = _token(request, "at")
    if at is None:
        ids = await hs.room_history.readable_state_ids(room, access)
    else:
        # Members as of a point in time, never later than the user may read,
        # and only at a point of history they may see.
        last, ids = await hs.room_history.state_at_position(
            room, min(at, access.stream_bound(hs.room_service.stream.current))
        )
        if last is not None and not await hs.visibility.viewer(req.user_id, room).can_see(last):
            raise MatrixError(403, "M_FORBIDDEN", "You may not see the room at that point")
    state = await hs.room_service.state_events(ids, [k for k in ids if k[0] == "m.room.member"])
    chunk = []
    for ev in state.values():
        m = ev.event["content"].get("membership")
        if membership is None and not_membership is None:
            chunk.append(ev)
        # With both given the spec makes them an "or": either is enough.
        elif (membership is not None and m == membership) or (not_membership is not None and m != not_membership):
            chunk.append(ev)
    return json_response({"chunk": await format_events(request, room, chunk, timeline=False)})


async def get_joined_members(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request, allow_guest=True)
    room = await hs.room_service.find_room(request.match_info["room_id"])
    current = await hs.room_service.membership_of(room, req.user_id) if room else None
    if room is None or current != "join":
        raise MatrixError(403, "M_FORBIDDEN", "You are not joined to this room")
    ids = await hs.room_service.current_state_ids(room)
    state = await hs.room_service.state_events(ids, [k for k in ids if k[0] == "m.room.member"])
    joined: dict[str, dict[str, str]] = {}
    for (_, user_id), ev in state.items():
        content = ev.event["content"]
        if content.get("membership") != "join":
            continue
        profile = {}
        for src, dst in (("displayname", "display_name"), ("avatar_url", "avatar_url")):
            if isinstance(content.get(src), str):
                profile[dst] = content[src]
        joined[user_id] = profile
    return json_response({"joined": joined})


async def get_timestamp_to_event(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request, allow_guest=True)
    room, access = await room_and_access(request, req.user_id)
    ts, backwards = timestamp_query(request)
    viewer = hs.visibility.viewer(req.user_id, room)
    bound = access.stream_bound(hs.room_service.stream.current)
    found = await hs.timestamp_lookup.nearest(room, ts, backwards, viewer.can_see, bound)
    if found is None:
        word = "backward" if backwards else "forward"
        raise not_found(f"Unable to find event from {ts} in {word} direction")
    return json_response(found.answer())


def register(routes: ClientRoutes) -> None:
    routes.add("GET", "/rooms/{room_id}/messages", get_messages)
    routes.add("GET", "/rooms/{room_id}/context/{event_id}", get_context)
    routes.add("GET", "/rooms/{room_id}/event/{event_id}", get_event)
    routes.add("GET", "/events/{event_id}", get_event_by_id)
    routes.add("GET", "/rooms/{room_id}/state", get_state)
    routes.add("GET", "/rooms/{room_id}/state/{event_type}", get_state_event)
    routes.add("GET", "/rooms/{room_id}/state/{event_type}/", get_state_event)  # empty state key
    routes.add("GET", "/rooms/{room_id}/state/{event_type}/{state_key}", get_state_event)
    routes.add("GET", "/rooms/{room_id}/members", get_members)
    routes.add("GET", "/rooms/{room_id}/joined_members", get_joined_members)
    routes.add(
        "GET", "/rooms/{room_id}/timestamp_to_event", get_timestamp_to_event,
        prefixes=("/_matrix/client/v1",),
    )

