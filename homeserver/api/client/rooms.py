"""Rooms: createRoom, sending events, room state and redaction (reading: room_history.py)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.api.http import ClientRoutes, get_hs, json_response, read_json, requester
from homeserver.errors import MatrixError, not_found
from homeserver.media.ids import parse_mxc
from homeserver.records.rooms import RoomRecord
from homeserver.rooms.persist import ClientTxn

MAX_TYPE_BYTES = 255


def _check_type(event_type: str) -> None:
    if not event_type or len(event_type.encode()) > MAX_TYPE_BYTES:
        raise MatrixError(400, "M_INVALID_PARAM", "Event type must be 1 to 255 bytes")


async def member_room(request: web.Request, user_id: str) -> RoomRecord:
    """The room in the path; M_FORBIDDEN unless the user is joined (no existence leak for others)."""
    hs = get_hs(request)
    room = await hs.room_service.find_room(request.match_info["room_id"])
    if room is not None and user_id in await hs.room_service.joined_local_users(room):
        return room
    raise MatrixError(403, "M_FORBIDDEN", "You are not joined to this room")


async def post_create_room(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request)
    hs.ratelimiter.check_user("create_room", req.user_id)  # a room is several events and a state
    body = await read_json(request, allow_empty=True)
    room_id = await hs.room_creator.create(req.user_id, body)
    return json_response({"room_id": room_id})


async def put_send(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request, allow_guest=True)
    event_type = request.match_info["event_type"]
    _check_type(event_type)
    content = await read_json(request, allow_empty=True)
    hs.ratelimiter.check("message", req.user_id, exempt=hs.is_ratelimit_exempt(req.user_id))
    room = await member_room(request, req.user_id)
    # Threads off relations and duplicate annotations are refused (the relations modules).
    await hs.relations.check_send(room, req.user_id, req.device_id, request.match_info["txn_id"], event_type, content)
    stored = await hs.room_service.create_event(
        room, req.user_id, event_type, content,
        txn=ClientTxn(
            req.user_id, req.device_id, f"send {room.room_id} {event_type}", request.match_info["txn_id"]
        ),
    )
    return json_response({"event_id": stored.event_id})


async def put_redact(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request)
    body = await read_json(request, allow_empty=True)
    room = await member_room(request, req.user_id)
    target_id = request.match_info["event_id"]
    target = await hs.room_service.get_event(target_id)
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
        txn=ClientTxn(
            req.user_id, req.device_id, f"redact {room.room_id} {target_id}", request.match_info["txn_id"]
        ),
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
    if event_type == "m.room.member" and not isinstance(content.get("membership"), str):
        # Clients set per-room nicknames this way; the auth rules judge the change itself.
        raise MatrixError(400, "M_BAD_JSON", "m.room.member content needs a string 'membership'")
    if event_type == "m.room.avatar" and content.get("url") not in (None, "") and parse_mxc(content["url"]) is None:
        raise MatrixError(400, "M_BAD_JSON", "m.room.avatar url must be an mxc:// URI")
    if event_type == "m.room.canonical_alias":
        await hs.aliases.check_canonical_alias(room, content)
    current = await hs.room_service.current_state_event(room, (event_type, state_key))
    if current is not None and current.sender == req.user_id and current.event["content"] == content:
        return json_response({"event_id": current.event_id})  # no-op change: no new event
    stored = await hs.room_service.create_event(room, req.user_id, event_type, content, state_key=state_key)
    if event_type == "m.room.guest_access" and state_key == "":
        await hs.membership.enforce_guest_access(room)
    return json_response({"event_id": stored.event_id})


async def get_joined_rooms(request: web.Request) -> web.Response:
    hs = get_hs(request)
    req = await requester(request, allow_guest=True)
    return json_response({"joined_rooms": await hs.room_service.rooms_for_user(req.user_id, ("join",))})


def register(routes: ClientRoutes) -> None:
    routes.add("POST", "/createRoom", post_create_room)
    routes.add("PUT", "/rooms/{room_id}/send/{event_type}/{txn_id}", put_send)
    routes.add("PUT", "/rooms/{room_id}/redact/{event_id}/{txn_id}", put_redact)
    routes.add("PUT", "/rooms/{room_id}/state/{event_type}", put_state)
    # An empty state key makes the path end in "/".
    routes.add("PUT", "/rooms/{room_id}/state/{event_type}/", put_state)
    routes.add("PUT", "/rooms/{room_id}/state/{event_type}/{state_key}", put_state)
    routes.add("GET", "/joined_rooms", get_joined_rooms)
